"""`fleet web` killed with SIGKILL in the middle of a turn, then started again on the same data dir:
the finished turn is intact, the one in flight is `interrupted`, the session takes new turns, and
no sandbox process of the killed server outlives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from test_server_support import (
    API,
    free_port,
    quick,
    slow,
    step,
    until_finished,
    wait_for,
    ws_url,
)
from websockets.sync.client import connect

pytestmark = pytest.mark.slow


def _fleet_web(data_dir: Path, api_base: str, log: Path) -> tuple[subprocess.Popen, str]:
    """`fleet web` on a free loopback port; returns the process and its base URL once it
    answers."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLEET_", "MLFLOW_", "DAYTONA_"))}
    env.update(FLEET_DATA_DIR=str(data_dir), FLEET_API_BASE=api_base, FLEET_AUTH="none",
               FLEET_ROOT_MODEL="openai/root", FLEET_SUB_MODEL="openai/sub",
               FLEET_ALLOW_UNPRICED_MODELS="true",
               FLEET_SANDBOX="local")
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "fleet_rlm.cli", "web", "--port",
                                    str(port)], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{base}{API}/ready").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 60, "fleet web to answer")
    return process, base


def _processes() -> dict[int, tuple[int, int, str]]:
    """Every live process (zombies are dead): pid -> (parent pid, start time in ticks, command
    line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] in ("Z", "X"):
            continue
        found[int(entry.name)] = (int(fields[1]), int(fields[19]), cmdline.strip())
    return found


def _descendants(pid: int) -> dict[int, tuple[int, int, str]]:
    processes = _processes()
    family, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, info in processes.items():
            if info[0] == parent and child not in family:
                family[child] = info
                frontier.append(child)
    return family


def _survivors(family: dict[int, tuple[int, int, str]]) -> list[str]:
    """The processes of `family` still alive (the same pid with the same start time)."""
    now = _processes()
    return [f"{pid}: {info[2]}" for pid, info in family.items()
            if pid in now and now[pid][1] == info[1]]


def _orphaned_drivers(since: int) -> list[str]:
    """Sandbox processes (bwrap or the driver) started after `since` (ticks) whose parent died:
    the kernel hands them to init."""
    processes = _processes()
    return [f"{pid}: {cmd}" for pid, (parent, started, cmd) in processes.items()
            if "driver.py" in cmd and started >= since
            and (parent == 1 or parent not in processes)]


def _receiver(ws):
    return lambda: json.loads(ws.recv(timeout=60))


def test_a_server_killed_mid_turn_restarts_with_the_turn_interrupted_and_no_sandbox_left(
        scripted_lm, tmp_path):
    # The second turn's python step sleeps: the server dies while its sandbox runs model code
    # (a driver busy in a cell does not notice its closed pipes).
    lm = scripted_lm([*slow("first", "one", steps=1, delay_ms=0),
                      {"model": "root", "match": r"\n\[\[ ## message ## \]\]\nsecond\n",
                       "reply": step("wait", "python", code="import time\ntime.sleep(60)")},
                      *quick("third", "three")])
    data, log = tmp_path / "data", tmp_path / "fleet-web.log"
    server, base = _fleet_web(data, lm.api_base, log)
    try:
        session_id = httpx.post(f"{base}{API}/sessions", json={"title": "crash"}).json()["id"]
        with connect(ws_url(session_id, base.replace("http", "ws"))) as ws:
            receive = _receiver(ws)
            assert receive()["type"] == "session"
            ws.send(json.dumps({"type": "message", "text": "first"}))
            first = until_finished(receive)
            assert first[-1]["answer"] == "one"
            first_id = first[0]["turn_id"]
            ws.send(json.dumps({"type": "message", "text": "second"}))
            second = [receive() for _ in range(3)]  # turn_started, lm_call, agent_step
            assert second[-1]["type"] == "agent_step" and second[-1]["tool_name"] == "python"
            second_id = second[0]["turn_id"]
            time.sleep(0.5)  # the cell is running
            assert httpx.get(f"{base}{API}/turns/{second_id}").json()["status"] == "running"
            family = _descendants(server.pid)
            server_started = _processes()[server.pid][1]
            left = [root for root in Path(tempfile.gettempdir()).glob("fleet-sbx-*")
                    if (root / "owner").is_file()
                    and (root / "owner").read_text().split(" ")[0] == str(server.pid)]
            assert left  # the session's sandbox directory, which SIGKILL will leave behind
            assert any("driver.py" in info[2] for info in family.values()), family
            server.send_signal(signal.SIGKILL)
            server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)

    # --die-with-parent: the sandbox (bwrap and the driver under it) dies with the server.
    deadline = time.monotonic() + 2
    while _survivors(family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _survivors(family), "sandbox processes outlived the killed server:\n" + "\n".join(
        _survivors(family))
    assert not _orphaned_drivers(server_started)

    assert all(root.exists() for root in left)
    server, base = _fleet_web(data, lm.api_base, log)
    try:
        assert not any(root.exists() for root in left)  # swept when the workspace starts
        turns = {t["id"]: t for t in httpx.get(f"{base}{API}/sessions/{session_id}/turns").json()}
        assert turns[first_id]["status"] == "ok" and turns[first_id]["answer"] == "one"
        stored = httpx.get(f"{base}{API}/turns/{first_id}/events").json()["events"]
        assert stored == first  # every event, as it was streamed
        interrupted = turns[second_id]
        assert interrupted["status"] == "interrupted" and interrupted["answer"] is None
        assert interrupted["error"] and interrupted["finished_at"]
        kept = httpx.get(f"{base}{API}/turns/{second_id}/events").json()["events"]
        assert [e["seq"] for e in kept] == list(range(1, len(kept) + 1))
        # What was recorded before the kill, unchanged, then a closing error and turn_finished
        # with the usage of the model calls it made.
        *before, error, finished = kept
        assert before == second[:len(before)] and len(before) >= 3
        assert error["type"] == "error" and error["error_type"] == "Interrupted"
        # its events say what its row says
        assert finished["type"] == "turn_finished" and finished["status"] == "interrupted"
        calls = [e for e in before if e["type"] == "lm_call"]
        assert finished["usage"]["calls"] == len(calls) >= 1
        assert finished["usage"]["tokens"] == sum(
            e["prompt_tokens"] + e["completion_tokens"] for e in calls)
        assert finished["node_id"] == second[0]["node_id"]

        with connect(ws_url(session_id, base.replace("http", "ws"))) as ws:
            receive = _receiver(ws)
            assert receive()["active_turn"] is None  # nothing is left in flight
            ws.send(json.dumps({"type": "resume", "turn_id": second_id, "last_seq": 0}))
            assert [receive() for _ in kept] == kept  # the record replays; nothing re-runs
            ws.send(json.dumps({"type": "message", "text": "third"}))
            third = until_finished(receive)
        assert third[-1]["answer"] == "three"
    finally:
        server.terminate()
        server.wait(30)
    lm.verify()
