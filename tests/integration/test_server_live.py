"""The full path: a real uvicorn on a loopback port, a real WebSocket client, the scripted LM
server behind the engine; and `fleet web` itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
from test_server_support import (
    API,
    BEARER,
    TOKEN,
    free_port,
    settings_for,
    slow,
    until_finished,
    uvicorn_server,
    wait_for,
    ws_url,
)
from websockets.sync.client import connect


def _receiver(ws):
    return lambda: json.loads(ws.recv(timeout=60))


def _session(base: str) -> str:
    return httpx.post(f"{base}{API}/sessions", json={"title": "live"}, headers=BEARER).json()["id"]


def test_two_sockets_get_identical_streams_from_a_real_server(scripted_lm, tmp_path):
    server = scripted_lm(slow("go", "gone", steps=2, delay_ms=150))
    with uvicorn_server(settings_for(server, tmp_path)) as base:
        session_id = _session(base)
        wsbase = base.replace("http", "ws")
        with connect(ws_url(session_id, wsbase, TOKEN)) as a, \
                connect(ws_url(session_id, wsbase, TOKEN)) as b:
            assert _receiver(a)()["type"] == _receiver(b)()["type"] == "session"
            a.send("this is not json")
            assert _receiver(a)()["code"] == "bad_json"
            a.send(json.dumps({"type": "message", "text": "go"}))
            seen_a, seen_b = until_finished(_receiver(a)), until_finished(_receiver(b))
            b.send(json.dumps({"type": "message", "text": "go"}))  # the socket still works
            assert _receiver(b)()["type"] == "turn_started"
        assert seen_a == seen_b
        assert [f["seq"] for f in seen_a] == list(range(1, len(seen_a) + 1))
        assert seen_a[0]["type"] == "turn_started" and seen_a[-1]["answer"] == "gone"
        stored = httpx.get(f"{base}{API}/turns/{seen_a[0]['turn_id']}/events",
                           headers=BEARER).json()["events"]
        assert stored == seen_a


def test_disconnect_mid_turn_then_resume_has_no_gap_no_duplicate_and_runs_nothing_again(
        scripted_lm, tmp_path):
    steps = 3
    server = scripted_lm(slow("long", "finally", steps=steps, delay_ms=400))
    with uvicorn_server(settings_for(server, tmp_path)) as base:
        session_id = _session(base)
        url = ws_url(session_id, base.replace("http", "ws"), TOKEN)
        with connect(url) as ws:
            receive = _receiver(ws)
            receive()
            ws.send(json.dumps({"type": "message", "text": "long"}))
            before = [receive() for _ in range(3)]
        turn_id, last_seq = before[-1]["turn_id"], before[-1]["seq"]
        turn = httpx.get(f"{base}{API}/turns/{turn_id}", headers=BEARER).json()
        assert turn["status"] == "running"  # the turn goes on without its client

        with connect(url) as ws:
            receive = _receiver(ws)
            state = receive()
            assert state["active_turn"]["turn_id"] == turn_id
            ws.send(json.dumps({"type": "resume", "turn_id": turn_id, "last_seq": last_seq}))
            after = until_finished(receive)
        seqs = [f["seq"] for f in before + after]
        assert seqs == list(range(1, len(seqs) + 1))
        assert after[-1]["answer"] == "finally"
        calls = server.stats()["calls"]
        assert calls == steps + 2  # each python step, finish, the answer: once each

        with connect(url) as ws:  # the finished turn replays from the store
            receive = _receiver(ws)
            receive()
            ws.send(json.dumps({"type": "resume", "turn_id": turn_id, "last_seq": 0}))
            assert until_finished(receive) == before + after
        assert server.stats()["calls"] == calls
        server.verify()


def _fleet(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fleet_rlm.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _serving(process: subprocess.Popen, port: int) -> None:
    def healthy() -> bool:
        assert process.poll() is None, process.communicate()[1]
        try:
            return httpx.get(f"http://127.0.0.1:{port}{API}/health").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 60, "fleet web to answer")


def test_fleet_web_wants_its_printed_token_even_on_loopback(tmp_path):
    env = {**os.environ, "FLEET_DATA_DIR": str(tmp_path)}
    for name in ("FLEET_AUTH", "FLEET_TOKEN"):
        env.pop(name, None)
    refused = _fleet("web", "--host", "0.0.0.0", env=env)
    _, stderr = refused.communicate(timeout=60)
    assert refused.returncode == 1
    assert "refusing to listen on 0.0.0.0" in stderr and "FLEET_AUTH=token" in stderr

    port = free_port()
    process = _fleet("web", "--port", str(port), env=env)
    try:
        _serving(process, port)
        base = f"http://127.0.0.1:{port}"
        line = ""
        while "?token=" not in line:  # the URL is printed before the server starts
            line = process.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/\?token=(\S+)", line)
        assert url, line
        token = url.group(1)
        assert httpx.get(f"{base}/").status_code == 200  # the page itself, which signs in
        refused = httpx.get(f"{base}{API}/sessions")
        assert refused.status_code == 401 and "token" in refused.json()["message"]
        assert httpx.patch(f"{base}{API}/settings", json={"sandbox": "unsafe-local"}
                           ).status_code == 401
        wrong = httpx.get(f"{base}{API}/sessions", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}{API}/sessions", headers=headers).status_code == 200
        assert httpx.get(f"{base}{API}/ready").json() == {"status": "ok"}
    finally:
        process.terminate()
        process.wait(30)


def test_fleet_web_without_a_token_when_asked_warns_and_keeps_settings_read_only(tmp_path):
    env = {**os.environ, "FLEET_DATA_DIR": str(tmp_path), "FLEET_AUTH": "none"}
    port = free_port()
    process = _fleet("web", "--port", str(port), env=env)
    try:
        _serving(process, port)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}{API}/sessions").status_code == 200
        refused = httpx.patch(f"{base}{API}/settings", json={"api_base": "http://evil/v1"})
        assert refused.status_code == 403 and "admin" in refused.json()["message"]
        assert httpx.get(f"{base}{API}/settings").json()["api_base"] is None
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "warning" in stderr and "FLEET_AUTH=none" in stderr and "?token=" not in stderr
