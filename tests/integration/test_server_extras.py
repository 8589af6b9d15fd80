"""Small additions to the API that the web app reads: a turn's trace id, limits of a message
checked per field, whether the model is ready, usage of unpriced models, the protected meta/."""

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
    client.portal.call(lambda: turns.finish(traced.id, "ok", answer="a", trace_id="tr-123"))
    untraced = client.portal.call(turns.start, session_id, "untraced")
    client.portal.call(lambda: turns.finish(untraced.id, "ok", answer="b"))

    listed = client.get(f"{API}/sessions/{session_id}/turns").json()
    assert [t["trace_id"] for t in listed] == ["tr-123", None]
    assert client.get(f"{API}/turns/{traced.id}").json()["trace_id"] == "tr-123"


def test_message_limits_are_checked_per_field_and_bind_the_turn(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi there"))
    with app_client(settings_for(server, tmp_path / "data")) as client:
        session_id = _session(client)
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "hello", "limits": {"max_calls": 0}})
            zero = ws.receive_json()
            assert zero == {"type": "socket_error", "code": "invalid", "message":
                            "bad limits: max_calls: Input should be greater than 0"}
            ws.send_json({"type": "message", "text": "hello",
                          "limits": {"max_usd": "lots", "max_depth": -1}})
            both = ws.receive_json()["message"]
            assert "max_usd: Input should be a valid number" in both and "max_depth" in both
            assert client.get(f"{API}/sessions/{session_id}/turns").json() == []

            # max_lm_calls, the deprecated name of max_calls, still binds the turn
            ws.send_json({"type": "message", "text": "hello", "limits": {"max_lm_calls": 1}})
            finished = until_finished(ws.receive_json)[-1]
        assert finished["status"] == "budget"
        assert finished["usage"]["calls"] == 1 and finished["usage"]["limits"]["max_calls"] == 1


PROVIDER_VARIABLES = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "FLEET_API_KEY",
                      "FLEET_API_BASE")


def test_model_ready_follows_the_key_the_endpoint_or_the_providers_variable(
        tmp_path, monkeypatch):
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with app_client(settings_for(None, tmp_path / "data", root_model="openai/gpt-4o-mini")
                    ) as client:
        def settings(**patch) -> dict:
            if patch:
                response = client.patch(f"{API}/settings", json=patch)
                assert response.status_code == 200, response.text
            return client.get(f"{API}/settings").json()

        bare = settings()
        assert (bare["model_ready"], bare["provider_keys"]) == (False, ["OPENAI_API_KEY"])
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
        assert settings()["model_ready"] is True
        monkeypatch.delenv("OPENAI_API_KEY")

        gemini = settings(root_model="gemini/gemini-2.5-pro")
        assert gemini["model_ready"] is False
        assert gemini["provider_keys"] == ["GEMINI_API_KEY", "GOOGLE_API_KEY"]
        monkeypatch.setenv("GOOGLE_API_KEY", "g-env")
        assert settings()["model_ready"] is True
        monkeypatch.delenv("GOOGLE_API_KEY")

        assert settings(api_base="http://127.0.0.1:9/v1")["model_ready"] is True
        assert settings(api_base=None)["model_ready"] is False
        assert settings(api_key="sk-saved")["model_ready"] is True
        assert settings(api_key=None)["model_ready"] is False
        # A provider with credentials of its own (cloud roles): the model test tells.
        other = settings(root_model="bedrock/anthropic.claude-v2")
        assert (other["model_ready"], other["provider_keys"]) == (True, [])


def test_usage_counts_calls_of_models_without_a_price(client):
    session_id = _session(client)
    turns = client.app.state.svc.store.turns
    for usd, unknown in ((0.0, 3), (0.25, 1), (0.5, 0)):
        turn = client.portal.call(turns.start, session_id, "q")
        usage = {"calls": 3, "prompt_tokens": 10, "completion_tokens": 5, "tokens": 15,
                 "usd": usd, "usd_unknown_calls": unknown}
        client.portal.call(lambda t=turn, u=usage: turns.finish(t.id, "ok", answer="a",
                                                                usage=u))
    for group in ("session", "day"):
        report = client.get(f"{API}/usage", params={"group": group}).json()
        [row] = report["items"]
        assert (row["usd"], row["usd_unknown_calls"], row["calls"]) == (0.75, 4, 9)
        assert report["total"]["usd_unknown_calls"] == 4


def test_meta_is_listed_as_protected_and_cannot_be_deleted(client):
    session_id = _session(client)
    root = client.app.state.svc.workspace(session_id)
    (root / "meta").mkdir(exist_ok=True)
    (root / "meta" / "namespace.pkl").write_bytes(b"state")
    (root / "notes.txt").write_text("mine")
    (root / "link").symlink_to("meta")
    files = f"{API}/sessions/{session_id}/workspace"

    listed = {e["path"]: e["protected"] for e in client.get(files).json()["entries"]}
    assert listed["meta"] is True and listed["notes.txt"] is False and listed["link"] is False
    inside = client.get(files, params={"path": "meta"}).json()["entries"]
    assert [(e["path"], e["protected"]) for e in inside] == [("meta/namespace.pkl", True)]

    for path in ("meta/namespace.pkl", "meta", "./meta/namespace.pkl", "link/namespace.pkl"):
        refused = client.delete(f"{files}/file", params={"path": path})
        assert refused.status_code == 403, path
        assert refused.json()["error"] == "protected" and "meta/" in refused.json()["message"]
    assert (root / "meta" / "namespace.pkl").read_bytes() == b"state"
    for path in ("notes.txt", "link"):  # the link itself, not what it points to
        assert client.delete(f"{files}/file", params={"path": path}).status_code == 204
    assert (root / "meta").is_dir()
