"""Small additions to the REST API that the web app reads: a turn's trace id."""

from __future__ import annotations

import pytest
from test_server_support import API, app_client, settings_for


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
