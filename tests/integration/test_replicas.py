"""Many processes on one store, as deployed: `fleet web` replicas on one PostgreSQL with no sticky
sessions, and `fleet chat` beside `fleet web` on one SQLite file. Real processes, real sockets,
`kill -9`; the leases are short here (FLEET_TURN_LEASE_S=3) so a takeover is quick to see."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pexpect
import pytest
from pg_deployment import PG, Deployment, fleet, superuser
from test_server_support import API, free_port, quick, slow, step, until_finished, wait_for, ws_url
from websockets.sync.client import connect

from fleet_rlm.sandbox.disk import unmount_under

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
LEASE_S = 3.0
BOUND_S = LEASE_S * 7 / 6 + 2.0  # the documented bound, and time for the frames to arrive
FLEET = Path(sys.executable).with_name("fleet")


def sleeping(text: str) -> dict:
    """`text`'s first step runs python that sleeps: the turn is mid-cell when its process dies."""
    return {"model": "root", "match": rf"\n\[\[ ## message ## \]\]\n{text}\n",
            "reply": step("wait", "python", code="import time\ntime.sleep(60)")}


def environment(data_dir: Path, api_base: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLEET_", "MLFLOW_", "DAYTONA_"))}
    env.update(FLEET_DATA_DIR=str(data_dir), FLEET_API_BASE=api_base, FLEET_AUTH="none",
               FLEET_ROOT_MODEL="openai/root", FLEET_SUB_MODEL="openai/sub",
               FLEET_ALLOW_UNPRICED_MODELS="true", FLEET_API_KEY="test", FLEET_SANDBOX="local",
               FLEET_TURN_LEASE_S=str(LEASE_S), **extra)
    return env


class Web:
    """`fleet web` in a process of its own on a free port."""

    def __init__(self, data_dir: Path, api_base: str, log: Path, **env: str) -> None:
        self.port = free_port()
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fleet_rlm.cli", "web", "--port", str(self.port)],
                env=environment(data_dir, api_base, **env), stdout=out, stderr=out)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log, self.data_dir = log, data_dir

        def healthy() -> bool:
            assert self.process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{self.base}{API}/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 60, "fleet web to answer")

    def socket(self, session_id: str):
        return connect(ws_url(session_id, self.base.replace("http", "ws")))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        # A process killed with -9 leaves its workspace images mounted (the next process to
        # open the data dir alone unmounts them); the test's directories go now.
        unmount_under(self.data_dir / "workspaces")


def receiver(ws):
    return lambda: json.loads(ws.recv(timeout=30))


def events(frames: list[dict]) -> list[dict]:
    return [f for f in frames if "seq" in f]


@pytest.fixture
def replicas_db() -> Iterator[Deployment]:
    """A database of its own, migrated once by `fleet db upgrade` (never by the replicas), and
    the replicas' role that owns nothing."""
    suffix = uuid.uuid4().hex[:8]
    found = Deployment(*(f"replicas_{part}_{suffix}" for part in ("db", "owner", "app")))
    try:
        asyncio.run(superuser(f'CREATE ROLE "{found.owner}" LOGIN; '
                              f'CREATE ROLE "{found.app}" LOGIN'))
        asyncio.run(superuser(f'CREATE DATABASE "{found.database}" OWNER "{found.owner}"'))
        fleet("db", "upgrade", "--url", found.url(found.owner), "--grant", found.app)
        yield found
    finally:
        asyncio.run(superuser(f'DROP DATABASE IF EXISTS "{found.database}" WITH (FORCE)'))
        asyncio.run(superuser(f'DROP ROLE IF EXISTS "{found.app}"; '
                              f'DROP ROLE IF EXISTS "{found.owner}"'))


@pytest.fixture
def replicas(scripted_lm, replicas_db, tmp_path):
    """Two `fleet web` replicas on one PostgreSQL database; each its own data dir (machine)."""
    started: list[Web] = []

    def start(rules: list[dict]) -> tuple[Web, Web, object]:
        lm = scripted_lm(rules)
        url = replicas_db.url(replicas_db.app)
        for name in ("a", "b"):
            started.append(Web(tmp_path / name, lm.api_base, tmp_path / f"{name}.log",
                               FLEET_DATABASE_URL=url))
        return started[0], started[1], lm

    yield start
    for web in started:
        web.stop()


def test_a_turn_started_on_one_replica_is_followed_live_and_cancelled_through_the_other(
        replicas):
    a, b, lm = replicas([*slow("count", "counted", steps=40, delay_ms=250),
                         *quick("next", "done")])
    session_id = httpx.post(f"{a.base}{API}/sessions", json={"title": "two"}).json()["id"]
    with a.socket(session_id) as on_a, b.socket(session_id) as on_b:
        from_a, from_b = receiver(on_a), receiver(on_b)
        assert from_a()["type"] == from_b()["type"] == "session"
        on_a.send(json.dumps({"type": "message", "text": "count"}))
        live = [from_b() for _ in range(4)]  # B hears of A's turn and follows it live
        assert [f["type"] for f in live[:3]] == ["turn_started", "lm_call", "agent_step"]
        turn_id = live[0]["turn_id"]
        on_b.send(json.dumps({"type": "cancel", "turn_id": turn_id}))  # A runs it
        frames_b = live + until_finished(from_b)
        # beside the events, B's socket may get the session's state after its stop
        assert {f["type"] for f in frames_b if "seq" not in f} <= {"session"}, frames_b
        seen_b = events(frames_b)
        seen_a = until_finished(from_a)
        assert seen_b[-1]["status"] == seen_a[-1]["status"] == "cancelled"
        assert [f["seq"] for f in seen_b] == list(range(1, len(seen_b) + 1))
        assert seen_b == events(seen_a)  # the same sequence on both replicas
        stored = httpx.get(f"{b.base}{API}/turns/{turn_id}/events").json()["events"]
        assert stored == seen_b
        assert httpx.get(f"{a.base}{API}/turns/{turn_id}").json()["status"] == "cancelled"

        on_b.send(json.dumps({"type": "message", "text": "next"}))  # now B runs one
        answered = until_finished(from_a)
        assert answered[-1]["answer"] == "done" and answered[0]["turn_id"] != turn_id
        assert events(until_finished(from_b)) == answered


def test_a_replica_killed_mid_turn_is_taken_over_and_the_session_goes_on(replicas):
    a, b, lm = replicas([sleeping("second"), *quick("third", "three")])
    session_id = httpx.post(f"{b.base}{API}/sessions", json={"title": "kill"}).json()["id"]
    with a.socket(session_id) as on_a, b.socket(session_id) as on_b:
        from_a, from_b = receiver(on_a), receiver(on_b)
        assert from_a()["type"] == from_b()["type"] == "session"
        on_a.send(json.dumps({"type": "message", "text": "second"}))
        before = [from_b() for _ in range(3)]
        assert before[-1]["type"] == "agent_step" and before[-1]["tool_name"] == "python"
        turn_id = before[0]["turn_id"]
        time.sleep(0.5)  # the cell is running on A
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(10)
        killed = time.monotonic()
        closing = until_finished(from_b)
        took = time.monotonic() - killed
        assert took < BOUND_S, took
        error, finished = closing[-2:]
        assert (error["type"], error["error_type"]) == ("error", "Interrupted")
        assert (finished["type"], finished["status"]) == ("turn_finished", "interrupted")
        turn = httpx.get(f"{b.base}{API}/turns/{turn_id}").json()
        assert turn["status"] == "interrupted"
        stored = httpx.get(f"{b.base}{API}/turns/{turn_id}/events").json()["events"]
        assert [e["type"] for e in stored].count("turn_finished") == 1  # closed once
        on_b.send(json.dumps({"type": "message", "text": "third"}))
        assert until_finished(from_b)[-1]["answer"] == "three"


def test_a_notice_naming_another_sessions_turn_sends_nothing(replicas, replicas_db):
    """NOTIFY is open to any role; a forged pointer on this session's channel names a turn of
    another session (another tenant's, say): the socket gets nothing of it."""
    a, b, lm = replicas([*quick("secret", "the other tenant's answer")])
    mine = httpx.post(f"{a.base}{API}/sessions", json={"title": "mine"}).json()["id"]
    theirs = httpx.post(f"{a.base}{API}/sessions", json={"title": "theirs"}).json()["id"]
    with a.socket(theirs) as other:
        receive_other = receiver(other)
        receive_other()
        other.send(json.dumps({"type": "message", "text": "secret"}))
        turn_id = until_finished(receive_other)[0]["turn_id"]
    with b.socket(mine) as on_b:
        from_b = receiver(on_b)
        assert from_b()["type"] == "session"

        async def forge() -> None:
            conn = await asyncpg.connect(**PG, user="postgres", database=replicas_db.database)
            try:
                await conn.execute("SELECT pg_notify($1, $2)", f"fleet_s_{mine}",
                                   f"{turn_id}:1")
            finally:
                await conn.close()

        asyncio.run(forge())
        time.sleep(1.0)
        on_b.send("not json")  # the next frame is the answer to this, nothing before it
        assert from_b()["code"] == "bad_json"


def test_fleet_chat_and_fleet_web_on_one_sqlite_file_see_each_others_turns(
        scripted_lm, tmp_path):
    """A turn `fleet chat` runs shows live in the web app; `fleet chat` killed mid-turn, the
    web server closes the turn as interrupted and the session takes messages again."""
    lm = scripted_lm([sleeping("second"), *quick("third", "three")])
    data = tmp_path / "data"
    web = Web(data, lm.api_base, tmp_path / "web.log")
    chat = None
    try:
        session_id = httpx.post(f"{web.base}{API}/sessions", json={"title": "x"}).json()["id"]
        with web.socket(session_id) as ws:
            receive = receiver(ws)
            assert receive()["type"] == "session"
            chat = pexpect.spawn(str(FLEET), ["chat", "--session", session_id],
                                 cwd=str(tmp_path), env=environment(data, lm.api_base,
                                                                    TERM="xterm"),
                                 encoding="utf-8", timeout=30, dimensions=(60, 200))
            chat.expect_exact("you> ")
            chat.sendline("second")
            started = time.monotonic()
            live = []
            for _ in range(3):  # the web socket follows chat's turn live
                live.append(receive())
                live[-1]["delay"] = time.time() - live[-1]["ts"]
            assert [f["type"] for f in live] == ["turn_started", "lm_call", "agent_step"]
            assert time.monotonic() - started < 20
            # a poll every 100 ms: well within the 250 ms SQLite's readers may add
            assert sorted(f["delay"] for f in live)[1] < 0.25, live
            turn_id = live[0]["turn_id"]
            assert httpx.get(f"{web.base}{API}/sessions/{session_id}/turns").json()[-1][
                "status"] == "running"
            time.sleep(0.5)
            chat.kill(signal.SIGKILL)
            killed = time.monotonic()
            closing = until_finished(receive)
            assert time.monotonic() - killed < BOUND_S
            assert closing[-1]["status"] == "interrupted" and closing[-1]["turn_id"] == turn_id
            ws.send(json.dumps({"type": "message", "text": "third"}))
            assert until_finished(receive)[-1]["answer"] == "three"
    finally:
        if chat is not None and chat.isalive():
            chat.kill(signal.SIGKILL)
        web.stop()


def test_fleet_web_killed_beside_an_idle_fleet_chat_leaves_no_stuck_session(
        scripted_lm, tmp_path):
    """The scenario of a data dir another process holds open: `fleet web` killed mid-turn while
    an idle `fleet chat` is open. The turn is closed by itself (no restart needed), and a web
    server started again takes new messages in the session."""
    lm = scripted_lm([sleeping("second"), *quick("third", "three")])
    data = tmp_path / "data"
    web = Web(data, lm.api_base, tmp_path / "web.log")
    chat = pexpect.spawn(str(FLEET), ["chat"], cwd=str(tmp_path),
                         env=environment(data, lm.api_base, TERM="xterm"), encoding="utf-8",
                         timeout=30, dimensions=(60, 200))
    try:
        chat.expect_exact("you> ")
        session_id = httpx.post(f"{web.base}{API}/sessions", json={"title": "x"}).json()["id"]
        with web.socket(session_id) as ws:
            receive = receiver(ws)
            receive()
            ws.send(json.dumps({"type": "message", "text": "second"}))
            turn_id = [receive() for _ in range(3)][0]["turn_id"]
        web.process.send_signal(signal.SIGKILL)
        web.process.wait(10)
        web = Web(data, lm.api_base, tmp_path / "web.log")
        turn = f"{web.base}{API}/turns/{turn_id}"
        wait_for(lambda: httpx.get(turn).json()["status"] == "interrupted", BOUND_S,
                 "the killed server's turn to be closed")
        with web.socket(session_id) as ws:
            receive = receiver(ws)
            assert receive()["active_turn"] is None
            ws.send(json.dumps({"type": "message", "text": "third"}))
            assert until_finished(receive)[-1]["answer"] == "three"
    finally:
        chat.kill(signal.SIGKILL)
        web.stop()


def test_a_notice_storm_does_not_starve_the_event_loop_and_a_lost_listener_comes_back(
        replicas_db, tmp_path):
    """Hundreds of turns' notices at once (6000 pointers, 300 turns in 20 sessions): the loop
    keeps its pace, each watch ends at its turns' newest seqs. Then the listening connection is
    cut (the database restarting, say): it is made again and notices arrive again."""
    from fleet_rlm.config import Settings
    from fleet_rlm.sessions import SessionService
    from fleet_rlm.sessions.tenancy import install_tenant_guard, tenant_scope

    turns_per_session, notices_per_session = 15, 300

    async def run() -> None:
        install_tenant_guard()
        settings = Settings(data_dir=tmp_path, database_url=replicas_db.url(replicas_db.app))
        with tenant_scope("*"):
            svc = SessionService(settings)
            await svc.open()
        try:
            with tenant_scope("*"):
                sessions = [(await svc.create_session()).id for _ in range(20)]
            watches = [await svc.watch(session_id) for session_id in sessions]
            gaps: list[float] = []

            async def tick() -> None:
                loop = asyncio.get_running_loop()
                last = loop.time()
                while True:
                    await asyncio.sleep(0.005)
                    now = loop.time()
                    gaps.append(now - last)
                    last = now

            ticker = asyncio.create_task(tick())
            conn = await asyncpg.connect(**PG, user=replicas_db.app,
                                         database=replicas_db.database)
            try:
                await conn.execute(
                    "SELECT pg_notify('fleet_s_' || s, 't' || (i % $1) || ':' || i) "
                    "FROM unnest($2::text[]) s, generate_series(1, $3) i",
                    turns_per_session, sessions, notices_per_session)
            finally:
                await conn.close()
            expected = {f"t{k}": max(i for i in range(1, notices_per_session + 1)
                                     if i % turns_per_session == k)
                        for k in range(turns_per_session)}
            deadline = asyncio.get_running_loop().time() + 20
            while any(w.newest != expected for w in watches):
                assert asyncio.get_running_loop().time() < deadline, watches[0].newest
                await asyncio.sleep(0.05)
            ticker.cancel()
            assert max(gaps) < 0.25, max(gaps)

            await superuser("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            f"WHERE usename = '{replicas_db.app}' AND query LIKE 'LISTEN%'")
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                conn = await asyncpg.connect(**PG, user=replicas_db.app,
                                             database=replicas_db.database)
                try:
                    await conn.execute("SELECT pg_notify($1, 'again:999')",
                                       f"fleet_s_{sessions[0]}")
                finally:
                    await conn.close()
                await asyncio.sleep(0.3)
                if watches[0].newest.get("again") == 999:
                    break
                assert asyncio.get_running_loop().time() < deadline, "no notices after the cut"
            for watch in watches:
                svc.unwatch(watch)
        finally:
            await svc.close()

    asyncio.run(run())


def test_fleet_chat_opened_on_a_session_draws_the_turn_the_web_app_runs(scripted_lm, tmp_path):
    lm = scripted_lm(slow("count", "counted to eight", steps=30, delay_ms=500))
    data = tmp_path / "data"
    web = Web(data, lm.api_base, tmp_path / "web.log")
    chat = None
    try:
        session_id = httpx.post(f"{web.base}{API}/sessions", json={"title": "x"}).json()["id"]
        with web.socket(session_id) as ws:
            receive = receiver(ws)
            receive()
            ws.send(json.dumps({"type": "message", "text": "count"}))
            assert receive()["type"] == "turn_started"
            chat = pexpect.spawn(str(FLEET), ["chat", "--session", session_id],
                                 cwd=str(tmp_path), env=environment(data, lm.api_base,
                                                                    TERM="xterm"),
                                 encoding="utf-8", timeout=30, dimensions=(60, 200))
            chat.expect_exact("following it", timeout=60)
            chat.expect_exact("counted to eight")  # the answer, streamed from the web's turn
            chat.expect_exact("ok")
            chat.expect_exact("you> ")
            assert until_finished(receive)[-1]["answer"] == "counted to eight"
    finally:
        if chat is not None and chat.isalive():
            chat.kill(signal.SIGKILL)
        web.stop()
