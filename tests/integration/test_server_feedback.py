"""POST /api/v1/turns/{id}/feedback: a thumbs up or down is stored on the turn and becomes an
assessment on the turn's MLflow trace (a local SQLite store); stored without tracing too; 409 for
a turn still running, 404 for another tenant."""

from __future__ import annotations

import os

import pytest
from test_server_support import (
    API,
    app_client,
    quick,
    settings_for,
    until_finished,
    user_token,
    ws_url,
)

from fleet_rlm.tracing import FEEDBACK_NAME

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _mlflow_uri_restored():
    """MLflow exports its tracking URI as MLFLOW_TRACKING_URI, which Settings would read later."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(before)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)


def test_feedback_lands_on_the_turns_trace_and_is_scoped_by_tenant(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi there"))
    data = tmp_path / "data"
    alice = {"Authorization": f"Bearer {user_token(data, 'alice', '--tenant', 'alpha')}"}
    bob = {"Authorization": f"Bearer {user_token(data, 'bob')}"}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = settings_for(server, data, auth="token", mlflow_tracking_uri=uri)
    with app_client(settings) as client:
        created = client.post(f"{API}/sessions", json={"title": "fb"}, headers=alice)
        session_id = created.json()["id"]
        url = ws_url(session_id, token=alice["Authorization"].split()[1])
        with client.websocket_connect(url) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "hello"})
            turn_id = until_finished(ws.receive_json)[-1]["turn_id"]
        turn = client.get(f"{API}/turns/{turn_id}", headers=alice).json()
        assert turn["status"] == "ok" and turn["answer"] == "hi there"

        feedback = f"{API}/turns/{turn_id}/feedback"
        down = client.post(feedback, json={"thumbs_up": False, "comment": "too short"},
                           headers=alice)
        assert down.status_code == 201, down.text
        up = client.post(feedback, json={"thumbs_up": True}, headers=alice)
        assert up.status_code == 201, up.text
        trace_id = down.json()["trace_id"]
        assert up.json()["trace_id"] == trace_id and down.json()["turn_id"] == turn_id

        # Another tenant's turn does not exist for bob; nor does an unknown one for anyone.
        foreign = client.post(feedback, json={"thumbs_up": True}, headers=bob)
        assert foreign.status_code == 404 and foreign.json()["kind"] == "turn"
        unknown = client.post(f"{API}/turns/nope/feedback", json={"thumbs_up": True},
                              headers=alice)
        assert unknown.status_code == 404
        bad = client.post(feedback, json={"thumbs_up": "maybe"}, headers=alice)
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "thumbs_up"
        assert client.post(feedback, json={"thumbs_up": True}).status_code == 401

        # A turn still running takes no feedback yet.
        svc = client.app.state.svc
        running = client.portal.call(svc.store.turns.start, session_id, "unfinished")
        refused = client.post(f"{API}/turns/{running.id}/feedback", json={"thumbs_up": True},
                              headers=alice)
        assert refused.status_code == 409 and refused.json()["error"] == "not_finished"
        assert "running" in refused.json()["message"]
        client.portal.call(lambda: svc.store.turns.finish(running.id, "cancelled"))

    trace = mlflow.MlflowClient(uri).get_trace(trace_id, flush=True)
    assert trace.info.tags["fleet.turn_id"] == turn_id
    assessments = {a.assessment_id: a for a in trace.info.assessments}
    first = assessments[down.json()["assessment_id"]]
    second = assessments[up.json()["assessment_id"]]
    assert first.name == second.name == FEEDBACK_NAME
    assert (first.value, first.rationale) == (False, "too short")
    assert (second.value, second.rationale) == (True, None)
    assert first.source.source_type == "HUMAN" and first.source.source_id == "alice"


def test_feedback_without_tracing_is_stored_with_its_corrected_answer(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi"))
    with app_client(settings_for(server, tmp_path, mlflow_tracking_uri=None)) as client:
        session_id = client.post(f"{API}/sessions", json={"title": "fb"}).json()["id"]
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "hello"})
            turn_id = until_finished(ws.receive_json)[-1]["turn_id"]
        response = client.post(f"{API}/turns/{turn_id}/feedback",
                               json={"thumbs_up": False, "comment": "wrong greeting",
                                     "corrected_answer": "hello"})
        svc = client.app.state.svc
        stored = client.portal.call(svc.store.feedback.with_turns, "local")
    assert response.status_code == 201, response.text
    assert response.json() == {"turn_id": turn_id, "trace_id": None, "assessment_id": None}
    [(feedback, turn)] = stored
    assert (feedback.thumbs_up, feedback.comment, feedback.corrected_answer, turn.id) == (
        False, "wrong greeting", "hello", turn_id)
