"""Who may change the server's settings, and where its API key may go: never anonymously, never
to unsafe-local through the API, and the stored key only to the endpoint it was saved for."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from test_server_support import API, app_client, quick, settings_for, until_finished, ws_url

KEY = "sk-stored-secret-0123456789"


@contextmanager
def listener() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A foreign HTTP endpoint on loopback that records the headers of every request it gets
    (and answers 401): its /v1 base URL and the records."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            seen.append(dict(self.headers))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'{"error": {"message": "who are you", "type": "auth"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def test_without_the_servers_token_nothing_changes(scripted_lm, tmp_path):
    server = scripted_lm([])
    with app_client(settings_for(server, tmp_path), Authorization="") as client:
        for method, path, body in [("PATCH", "/settings", {"sandbox": "unsafe-local"}),
                                   ("PATCH", "/settings", {"api_base": "http://evil/v1"}),
                                   ("POST", "/settings/test-model", None),
                                   ("GET", "/sessions", None)]:
            refused = client.request(method, API + path, json=body)
            assert refused.status_code == 401, (method, path)
            assert "token" in refused.json()["message"]
        wrong = client.get(f"{API}/settings", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
    with app_client(settings_for(server, tmp_path, auth="none")) as client:  # asked for
        refused = client.patch(f"{API}/settings", json={"api_base": "http://evil/v1"})
        assert refused.status_code == 403 and "admin" in refused.json()["message"]
        assert client.post(f"{API}/settings/test-sandbox").status_code == 403
        assert client.get(f"{API}/settings").json()["api_base"] == server.api_base


def test_unsafe_local_is_never_set_through_the_api(scripted_lm, tmp_path):
    server = scripted_lm([])
    with app_client(settings_for(server, tmp_path)) as client:  # the local admin
        for path, method in [("/settings", "PATCH"), ("/settings/test-sandbox", "POST")]:
            refused = client.request(method, API + path, json={"sandbox": "unsafe-local"})
            assert refused.status_code == 403
            assert refused.json()["message"].startswith("sandbox: unsafe-local")
        assert client.get(f"{API}/settings").json()["sandbox"] == "local"
        assert not (tmp_path / "settings.json").exists()
        assert client.patch(f"{API}/settings", json={"sandbox": "daytona"}).status_code == 200


def test_the_stored_key_goes_only_to_the_endpoint_it_was_saved_for(scripted_lm, tmp_path):
    server = scripted_lm([*quick("hello", "hi"), {"reply": "OK"}])
    with app_client(settings_for(server, tmp_path)) as client, listener() as (foreign, seen):
        saved = client.patch(f"{API}/settings", json={"api_key": KEY})
        assert saved.status_code == 200 and saved.json()["api_key_set"]
        assert client.post(f"{API}/settings/test-model").json()["ok"]  # its own endpoint

        # "Test model" pointed elsewhere: the request goes there, the stored key does not.
        tried = client.post(f"{API}/settings/test-model", json={"api_base": foreign}).json()
        assert tried["ok"] is False and len(seen) == 1
        assert KEY not in str(seen[0]) and seen[0]["Authorization"] == "Bearer none"
        # A key given along is the one used.
        client.post(f"{API}/settings/test-model", json={"api_base": foreign, "api_key": "sk-b"})
        assert seen[-1]["Authorization"] == "Bearer sk-b"

        # Saving a new endpoint without a key for it is refused, naming the field.
        moved = client.patch(f"{API}/settings", json={"api_base": foreign})
        assert moved.status_code == 422 and moved.json()["message"].startswith("api_base:")
        assert "api_key" in moved.json()["message"]
        assert client.get(f"{API}/settings").json()["api_base"] == server.api_base
        moved = client.patch(f"{API}/settings", json={"api_base": foreign, "api_key": ""})
        assert moved.status_code == 200 and not moved.json()["api_key_set"]
    assert all(KEY not in str(headers) for headers in seen)


def test_a_provider_that_echoes_the_key_leaves_no_trace_of_it(scripted_lm, tmp_path):
    key = "provider-key-0123456789abcdef"  # no known key shape: redacted as the configured key
    server = scripted_lm([{"status": 400, "reply": f"invalid api key {key} for this model"}])
    with app_client(settings_for(server, tmp_path, api_key=key)) as client:
        session_id = client.post(f"{API}/sessions", json={}).json()["id"]
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "hello"})
            frames = until_finished(ws.receive_json)
        turn_id = frames[-1]["turn_id"]
        turn = client.get(f"{API}/turns/{turn_id}").json()
        events = client.get(f"{API}/turns/{turn_id}/events").json()["events"]
    assert turn["status"] == "error" and "invalid api key *** for this model" in turn["error"]
    assert [e for e in events if e["type"] == "error"], events
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("fleet.db*"))
    for text in (json.dumps(frames), json.dumps(turn), json.dumps(events)):
        assert key not in text
    assert key.encode() not in stored and b"invalid api key ***" in stored
    assert server.stats()["calls"] >= 1


def test_the_logs_get_the_same_redaction():
    import logging

    from fleet_rlm.redaction import RedactSecrets, redact, remember

    remember("configured-key-9876543210")
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "%s %s %s",
                               ("GET /x?token=abcdef123456&a=1", "configured-key-9876543210",
                                "Authorization: Bearer fleet_abcdefghijklmnopqrstuvwxyz"), None)
    RedactSecrets().filter(record)
    logged = record.getMessage()
    assert logged == redact("GET /x?token=abcdef123456&a=1 configured-key-9876543210 "
                            "Authorization: Bearer fleet_abcdefghijklmnopqrstuvwxyz")
    assert logged == "GET /x?token=***&a=1 *** Authorization: Bearer ***"


def test_a_model_calls_previews_carry_no_key_or_bearer_token(scripted_lm, tmp_path):
    key = "provider-key-0123456789abcdef"
    token = "Bearer abcdefghijklmnopqrstuvwxyz012345"
    message = f"hello, my header is {token}"
    server = scripted_lm(quick(message, f"echoing {key}"))
    with app_client(settings_for(server, tmp_path, api_key=key)) as client:
        session_id = client.post(f"{API}/sessions", json={}).json()["id"]
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": message})
            frames = until_finished(ws.receive_json)
        events = client.get(f"{API}/turns/{frames[-1]['turn_id']}/events").json()["events"]
    calls = [e for e in events if e["type"] == "lm_call"]
    assert calls and any("***" in c["prompt_preview"] for c in calls)
    assert any("echoing ***" in c["response_preview"] for c in calls)
    for text in (json.dumps(calls), json.dumps([f for f in frames if f["type"] == "lm_call"])):
        assert key not in text and "abcdefghijklmnopqrstuvwxyz012345" not in text
