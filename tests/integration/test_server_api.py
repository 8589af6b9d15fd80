"""The REST API in process: sessions, turns and events, export, documents, workspace files,
settings and their checks, usage, health, the web app page and the no-login host checks."""

from __future__ import annotations

import json
import os
import stat

import pytest
from test_server_support import (
    API,
    app_client,
    quick,
    settings_for,
    until_finished,
    ws_url,
)

from fleet_rlm.server import app as app_module


@pytest.fixture
def client(tmp_path):
    with app_client(settings_for(None, tmp_path / "data", max_document_mb=1,
                                 max_workspace_file_mb=1)) as client:
        yield client


def _session(client, title: str = "Notes") -> str:
    response = client.post(f"{API}/sessions", json={"title": title})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_sessions_list_search_rename_archive_delete(client):
    ids = [_session(client, t) for t in ("Alpha notes", "beta", "Gamma NOTES")]
    listed = client.get(f"{API}/sessions").json()
    assert listed["total"] == 3 and [s["id"] for s in listed["items"]] == ids[::-1]
    found = client.get(f"{API}/sessions", params={"q": "notes"}).json()
    assert {s["title"] for s in found["items"]} == {"Alpha notes", "Gamma NOTES"}
    page = client.get(f"{API}/sessions", params={"limit": 1, "offset": 1}).json()
    assert [s["id"] for s in page["items"]] == [ids[1]] and page["total"] == 3

    renamed = client.patch(f"{API}/sessions/{ids[0]}", json={"title": "Renamed"}).json()
    assert renamed["title"] == "Renamed"
    client.patch(f"{API}/sessions/{ids[1]}", json={"archived": True})
    assert client.get(f"{API}/sessions").json()["total"] == 2
    archived = client.get(f"{API}/sessions", params={"include_archived": True}).json()
    assert archived["total"] == 3

    assert client.delete(f"{API}/sessions/{ids[2]}").status_code == 204
    gone = client.get(f"{API}/sessions/{ids[2]}")
    assert gone.status_code == 404
    assert gone.json() == {"error": "not_found", "message": f"no session with id '{ids[2]}'",
                           "kind": "session", "id": ids[2]}


def test_unknown_ids_and_bad_input_get_clear_json_errors(client):
    for path in ("/sessions/nope", "/sessions/nope/turns", "/turns/nope", "/turns/nope/events",
                 "/documents/nope", "/sessions/nope/documents", "/sessions/nope/workspace"):
        response = client.get(API + path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found" and "nope" in response.json()["message"]
    bad = client.get(f"{API}/sessions", params={"limit": 0})
    assert bad.status_code == 422
    assert bad.json()["message"] == "limit: Input should be greater than or equal to 1"
    extra = client.post(f"{API}/sessions", json={"title": "x", "colour": "red"})
    assert extra.status_code == 422 and "colour" in extra.json()["message"]
    assert client.get(f"{API}/no-such-route").status_code == 404


async def test_delete_is_refused_while_a_turn_is_in_flight(client):
    session_id = _session(client)
    svc = client.app.state.svc
    turn = client.portal.call(svc.store.turns.start, session_id, "still running")
    response = client.delete(f"{API}/sessions/{session_id}")
    assert response.status_code == 409 and response.json()["error"] == "busy"
    client.portal.call(lambda: svc.store.turns.finish(turn.id, "ok", answer="a"))
    assert client.delete(f"{API}/sessions/{session_id}").status_code == 204


def test_a_turn_its_events_export_and_usage(scripted_lm, tmp_path):
    server = scripted_lm(quick("What is up?", "All **good**."))
    with app_client(settings_for(server, tmp_path)) as client:
        session_id = _session(client, "Status check")
        with client.websocket_connect(ws_url(session_id)) as ws:
            assert ws.receive_json()["type"] == "session"
            ws.send_json({"type": "message", "text": "What is up?"})
            frames = until_finished(ws.receive_json)
        turn_id = frames[-1]["turn_id"]
        assert frames[-1]["status"] == "ok"

        (turn,) = client.get(f"{API}/sessions/{session_id}/turns").json()
        assert (turn["id"], turn["status"], turn["answer"]) == (turn_id, "ok", "All **good**.")
        events = client.get(f"{API}/turns/{turn_id}/events").json()
        assert events["events"] == frames and events["last_seq"] == frames[-1]["seq"]
        later = client.get(f"{API}/turns/{turn_id}/events", params={"after_seq": 2}).json()
        assert [e["seq"] for e in later["events"]] == [f["seq"] for f in frames[2:]]

        exported = client.get(f"{API}/sessions/{session_id}/export")
        assert "attachment" in exported.headers["content-disposition"]
        data = exported.json()
        assert data["session"]["title"] == "Status check"
        assert data["turns"][0]["answer"] == "All **good**."
        assert data["turns"][0]["events"] == frames
        markdown = client.get(f"{API}/sessions/{session_id}/export",
                              params={"format": "markdown"})
        assert markdown.headers["content-type"].startswith("text/markdown")
        assert "# Status check" in markdown.text and "> What is up?" in markdown.text
        assert "All **good**." in markdown.text and "finish" in markdown.text
        assert client.get(f"{API}/sessions/{session_id}/export",
                          params={"format": "pdf"}).status_code == 422

        usage = client.get(f"{API}/usage").json()
        (row,) = usage["items"]
        assert (row["key"], row["turns"], row["calls"]) == (session_id, 1, 2)
        assert row["tokens"] > 0 and usage["total"]["calls"] == 2
        by_day = client.get(f"{API}/usage", params={"group": "day"}).json()
        assert by_day["items"][0]["key"] == turn["created_at"][:10]
        assert server.stats()["calls"] == 2


def test_documents_upload_limits_preview_slice_and_delete(client):
    session_id = _session(client)
    url = f"{API}/sessions/{session_id}/documents"
    text = "0123456789" * 500
    created = client.post(url, files={"file": ("digits.txt", text.encode(), "text/plain")})
    assert created.status_code == 201, created.text
    doc = created.json()
    assert (doc["name"], doc["kind"], doc["chars"]) == ("digits.txt", "text", 5000)

    too_large = client.post(url, files={"file": ("big.txt", b"a" * (1024 * 1024 + 1))})
    assert too_large.status_code == 413 and too_large.json()["error"] == "too_large"
    binary = client.post(url, files={"file": ("blob.bin", bytes(range(256)) * 4)})
    assert binary.status_code == 415 and "binary" in binary.json()["message"]
    legacy = client.post(url, files={"file": ("menu.txt", "café crème\n".encode("latin-1"))})
    assert legacy.status_code == 201, legacy.text
    assert legacy.json()["encoding"] == "Windows-1252"
    assert client.get(f"{API}/documents/{legacy.json()['id']}").json()["text"] == "café crème\n"
    assert client.delete(f"{API}/documents/{legacy.json()['id']}").status_code == 204
    corrupt = client.post(url, files={"file": ("broken.pdf", b"%PDF-1.4 not really")})
    assert corrupt.status_code == 422 and corrupt.json()["error"] == "corrupt"
    again = client.post(url, files={"file": ("digits.txt", b"other")})
    assert again.status_code == 409
    # Detached: kept and listed, out of the agent's view; the same file again attaches it.
    detached = client.patch(f"{API}/documents/{doc['id']}", json={"attached": False})
    assert detached.status_code == 200 and detached.json()["attached"] is False
    assert [d["attached"] for d in client.get(url).json()] == [False]
    same = client.post(url, files={"file": ("digits.txt", text.encode(), "text/plain")})
    assert same.status_code == 201 and same.json()["id"] == doc["id"]
    assert same.json()["attached"] is True

    assert [d["id"] for d in client.get(url).json()] == [doc["id"]]
    detail = client.get(f"{API}/documents/{doc['id']}").json()
    assert detail["text"] == text[:2000] and detail["start"] == 0
    piece = client.get(f"{API}/documents/{doc['id']}", params={"start": 13, "length": 5})
    assert piece.json()["text"] == "34567"
    assert client.delete(f"{API}/documents/{doc['id']}").status_code == 204
    assert client.get(f"{API}/documents/{doc['id']}").status_code == 404


def test_workspace_files_and_every_way_out_is_refused(client, tmp_path):
    session_id = _session(client)
    base = f"{API}/sessions/{session_id}/workspace"
    put = client.put(f"{base}/file", params={"path": "artifacts/out/report.txt"}, content=b"hi")
    assert put.json() == {"path": "artifacts/out/report.txt", "size": 2}
    listing = client.get(base, params={"path": "artifacts/out"}).json()
    assert [(e["name"], e["type"], e["size"]) for e in listing["entries"]] == [
        ("report.txt", "file", 2)]
    assert {e["name"] for e in client.get(base).json()["entries"]} >= {"artifacts", "memory"}
    read = client.get(f"{base}/file", params={"path": "artifacts/out/report.txt"})
    assert read.content == b"hi" and read.headers["x-content-type-options"] == "nosniff"

    # Pages the sandbox wrote are shown as text, never run in this origin.
    client.put(f"{base}/file", params={"path": "page.html"}, content=b"<script>x</script>")
    page = client.get(f"{base}/file", params={"path": "page.html"})
    assert page.headers["content-type"].startswith("text/plain")

    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    root = client.app.state.svc.workspace(session_id)
    (root / "artifacts" / "leak").symlink_to(secret)
    (root / "artifacts" / "outside").symlink_to(tmp_path)
    for method, path in [("get", "../secret.txt"), ("get", "/etc/passwd"),
                         ("put", "artifacts/../../x"), ("delete", "/etc/hosts")]:
        response = client.request(method.upper(), f"{base}/file", params={"path": path},
                                  content=b"x" if method == "put" else None)
        assert response.status_code == 400, (method, path)
        assert response.json()["error"] == "bad_path"
    for method, path in [("GET", "artifacts/leak"), ("PUT", "artifacts/leak"),
                         ("GET", "artifacts/outside/secret.txt"),
                         ("PUT", "artifacts/outside/new.txt")]:
        response = client.request(method, f"{base}/file", params={"path": path}, content=b"x")
        assert response.status_code == 403, (method, path)
        assert "outside the session workspace" in response.json()["message"]
    assert client.get(base, params={"path": "artifacts/outside"}).status_code == 403
    assert secret.read_text() == "top secret" and not (tmp_path / "new.txt").exists()
    # The link itself can be removed; what it points to stays.
    assert client.delete(f"{base}/file", params={"path": "artifacts/leak"}).status_code == 204
    assert secret.exists() and not (root / "artifacts" / "leak").is_symlink()

    too_big = client.put(f"{base}/file", params={"path": "big.bin"},
                         content=b"x" * (1024 * 1024 + 1))
    assert too_big.status_code == 413
    assert client.get(f"{base}/file", params={"path": "nothing.txt"}).status_code == 404
    assert client.delete(f"{base}/file", params={"path": "artifacts/out/report.txt"}
                         ).status_code == 204
    assert client.get(f"{base}/file", params={"path": "artifacts/out/report.txt"}
                      ).status_code == 404


def test_settings_keys_are_write_only_and_saved_with_mode_0600(client):
    data_dir = client.app.state.svc.settings.data_dir
    before = client.get(f"{API}/settings").json()
    assert before["api_key_set"] is False and "api_key" not in before
    patched = client.patch(f"{API}/settings", json={
        "api_key": "sk-very-secret", "root_model": "openai/other",
        "limits": {"max_usd": 0.5, "max_depth": 1}})
    assert patched.status_code == 200, patched.text
    for body in (patched.json(), client.get(f"{API}/settings").json()):
        assert "sk-very-secret" not in json.dumps(body)
        assert body["api_key_set"] is True and body["root_model"] == "openai/other"
        assert body["limits"]["max_usd"] == 0.5 and body["limits"]["max_depth"] == 1
    path = data_dir / "settings.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text())["api_key"] == "sk-very-secret"
    svc = client.app.state.svc
    assert (svc.settings.api_key, svc.settings.max_usd) == ("sk-very-secret", 0.5)  # live

    assert client.patch(f"{API}/settings", json={"limits": {"max_usd": -1}}).status_code == 422
    assert client.patch(f"{API}/settings", json={"sandbox": "cloud"}).status_code == 422
    assert client.patch(f"{API}/settings", json={"api_key": None}).json()["api_key_set"] is False
    assert "api_key" not in json.loads(path.read_text()) or \
        json.loads(path.read_text())["api_key"] is None


def test_settings_limits_have_one_name_and_take_the_old_one(client):
    """`max_calls` in and out; `max_lm_calls`, its deprecated name, is taken and saved as it."""
    data_dir = client.app.state.svc.settings.data_dir
    new = client.patch(f"{API}/settings", json={"limits": {"max_calls": 40}})
    assert new.status_code == 200, new.text
    assert new.json()["limits"]["max_calls"] == 40 and "max_lm_calls" not in new.json()["limits"]
    old = client.patch(f"{API}/settings", json={"limits": {"max_lm_calls": 30}})
    assert old.status_code == 200, old.text
    assert client.get(f"{API}/settings").json()["limits"]["max_calls"] == 30
    assert client.app.state.svc.settings.max_calls == 30
    assert json.loads((data_dir / "settings.json").read_text())["max_calls"] == 30
    both = client.patch(f"{API}/settings", json={"limits": {"max_lm_calls": 3, "max_calls": 4}})
    assert both.status_code == 422 and "give `max_calls` only" in both.text


def test_settings_survive_a_restart(tmp_path):
    settings = settings_for(None, tmp_path)
    with app_client(settings) as client:
        client.patch(f"{API}/settings", json={"sub_model": "openai/small", "api_key": "k"})
    with app_client(settings) as client:
        body = client.get(f"{API}/settings").json()
        assert body["sub_model"] == "openai/small" and body["api_key_set"] is True


def test_test_model_reports_success_and_actionable_failures(scripted_lm, tmp_path):
    server = scripted_lm([{"model": "root", "reply": "OK"},
                          {"model": "locked", "status": 401, "reply": "bad key"},
                          {"model": "ghost", "status": 404, "reply": "model not found"}])
    with app_client(settings_for(server, tmp_path)) as client:
        ok = client.post(f"{API}/settings/test-model").json()
        assert ok["ok"] is True and "OK" in ok["message"]
        cases = {"unreachable": {"api_base": "http://127.0.0.1:9/v1"},
                 "auth": {"root_model": "openai/locked"},
                 "unknown_model": {"root_model": "openai/ghost"}}
        for problem, body in cases.items():
            result = client.post(f"{API}/settings/test-model", json=body)
            assert result.status_code == 200
            outcome = result.json()
            assert (outcome["ok"], outcome["problem"]) == (False, problem), outcome
        assert "127.0.0.1:9" in client.post(f"{API}/settings/test-model", json=cases[
            "unreachable"]).json()["message"]
        # A test with other values does not change the settings.
        assert client.get(f"{API}/settings").json()["root_model"] == "openai/root"


def test_test_sandbox_runs_code_and_explains_a_missing_bubblewrap(client, monkeypatch):
    ok = client.post(f"{API}/settings/test-sandbox").json()
    assert ok["ok"] is True, ok
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "bwrap"
                        else real_which(name, *a, **k))
    failed = client.post(f"{API}/settings/test-sandbox").json()
    assert failed["ok"] is False and failed["problem"] == "sandbox"
    assert "apt-get install -y bubblewrap" in failed["message"]


def test_health_ready_and_the_web_app_page(client, tmp_path, monkeypatch):
    assert client.get(f"{API}/health").json()["status"] == "ok"
    assert client.get(f"{API}/ready").json() == {"status": "ok"}
    assert client.get(f"{API}/openapi.json").json()["info"]["title"] == "fleet-rlm"
    static = tmp_path / "static"
    monkeypatch.setattr(app_module, "STATIC", static)
    page = client.get("/")
    assert page.status_code == 200 and "not built yet" in page.text
    assert "scripts/build-frontend.sh" in page.text

    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text("<html>the app</html>")
    (static / "assets" / "app.js").write_text("console.log(1)")
    assert client.get("/").text == "<html>the app</html>"
    assert client.get("/sessions/abc").text == "<html>the app</html>"  # the app's own routes
    assert client.get("/assets/app.js").text == "console.log(1)"
    assert client.get("/../secret").text == "<html>the app</html>"


def test_no_login_mode_answers_loopback_hosts_and_same_site_writes_only(client):
    assert client.get(f"{API}/sessions", headers={"host": "localhost:8000"}).status_code == 200
    rebound = client.get(f"{API}/sessions", headers={"host": "evil.example:8000"})
    assert rebound.status_code == 403 and rebound.json()["error"] == "forbidden"
    cross = client.post(f"{API}/sessions", json={}, headers={"origin": "https://evil.example"})
    assert cross.status_code == 403
    same = client.post(f"{API}/sessions", json={}, headers={"origin": "http://localhost:5173"})
    assert same.status_code == 201


def test_an_unexpected_failure_answers_with_the_error_body(tmp_path, monkeypatch) -> None:
    from fastapi.testclient import TestClient
    from test_server_support import HOST

    from fleet_rlm.server.app import create_app
    from fleet_rlm.sessions import SessionService

    async def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(SessionService, "list_sessions", broken)
    settings = settings_for(None, tmp_path, auth="none", token=None)
    with TestClient(create_app(settings), base_url=HOST,
                    raise_server_exceptions=False) as client:
        answer = client.get(f"{API}/sessions")
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal" and "RuntimeError" in answer.json()["message"]
    assert "a bug" not in answer.text  # the detail stays in the server's log
