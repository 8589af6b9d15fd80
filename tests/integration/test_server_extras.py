"""Small additions to the API that the web app reads: a turn's trace id, limits of a message
checked per field."""

from __future__ import annotations

import pytest
from test_server_support import API, app_client, quick, settings_for, until_finished, ws_url


@pytest.fixture
def client(tmp_path):
    with app_client(settings_for(None, tmp_path / "data")) as client:
        yield client


def _session(client) -> str:
    return client.post(f"{API}/sessions", json={"title": "extras"}).json()["id"]


def test_a_turn_shows_its_trace_id_when_it_has_one(client):
    session_id = _session(client)
    turns = client.app.state.svc.store.turns
    traced = client.portal.call(turns.start, session_id, "traced")
    client.portal.call(lambda: turns.finish(traced.id, "done", answer="a", trace_id="tr-123"))
    untraced = client.portal.call(turns.start, session_id, "untraced")
    client.portal.call(lambda: turns.finish(untraced.id, "done", answer="b"))

    listed = client.get(f"{API}/sessions/{session_id}/turns").json()
    assert [t["trace_id"] for t in listed] == ["tr-123", None]
    assert client.get(f"{API}/turns/{traced.id}").json()["trace_id"] == "tr-123"


def test_message_limits_are_checked_per_field_and_bind_the_turn(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi there"))
    with app_client(settings_for(server, tmp_path / "data")) as client:
        session_id = _session(client)
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "hello", "limits": {"max_lm_calls": 0}})
            zero = ws.receive_json()
            assert zero == {"type": "error", "code": "invalid", "message":
                            "bad limits: max_lm_calls: Input should be greater than 0"}
            ws.send_json({"type": "message", "text": "hello",
                          "limits": {"max_usd": "lots", "max_depth": -1}})
            both = ws.receive_json()["message"]
            assert "max_usd: Input should be a valid number" in both and "max_depth" in both
            assert client.get(f"{API}/sessions/{session_id}/turns").json() == []

            ws.send_json({"type": "message", "text": "hello", "limits": {"max_lm_calls": 1}})
            finished = until_finished(ws.receive_json)[-1]
        assert finished["status"] == "budget"
        assert finished["usage"]["calls"] == 1 and finished["usage"]["limits"]["max_calls"] == 1
