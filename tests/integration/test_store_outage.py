"""The database and its disk go away mid-turn and come back: requests get 503 with Retry-After
meanwhile, a running turn keeps its events and writes them when the database is back (or, past
its bound or on a full disk, ends as failed with its record closed once the store is writable),
and the session takes messages, cancels and deletes afterwards. Text PostgreSQL cannot store is
escaped, not lost.

The PostgreSQL outage cuts the server's own role off (NOLOGIN, its connections ended), never the
PostgreSQL server other work uses. PostgreSQL must be running on 127.0.0.1:5432 (trust auth)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
import sqlalchemy as sa
from pg_deployment import Deployment, add_users, cut_login, set_login
from pydantic import BaseModel
from test_server_support import (
    API,
    app_client,
    events_of,
    quick,
    settings_for,
    slow,
    until_finished,
    ws_url,
)

from fleet_rlm.store import EventRecorder, Store
from fleet_rlm.store.db import ALL_TENANTS
from fleet_rlm.store.recorder import RecordingLost
from fleet_rlm.store.repos import UserRepo
from fleet_rlm.testing import AGENT_ANSWER, dspy_reply
from fleet_rlm.testing import dspy_agent_step as step


def _until(receive, kind: str) -> list[dict]:
    frames = []
    while not frames or frames[-1].get("type") != kind:
        frames.append(receive())
    return frames


def _token_client(lm, tmp_path, deployment: Deployment, **settings):
    users = asyncio.run(add_users(deployment.url(deployment.app), tmp_path))
    token = users["alice"][1]
    client = app_client(settings_for(lm, tmp_path / "data", auth="token",
                                     database_url=deployment.url(deployment.app), **settings))
    return client, token, {"Authorization": f"Bearer {token}"}


AFTERWARDS = [*quick("after", "fine"), *slow("long", "never", 6, 300)]


def _usable_afterwards(client, ws, session_id: str, headers: dict) -> None:
    """A new message runs, the next one is cancelled, and the session deletes."""
    ws.send_json({"type": "message", "text": "after"})
    after = until_finished(ws.receive_json)
    assert (after[-1]["status"], after[-1]["answer"]) == ("ok", "fine"), after
    ws.send_json({"type": "message", "text": "long"})
    _until(ws.receive_json, "tool_result")
    ws.send_json({"type": "cancel"})
    assert until_finished(ws.receive_json)[-1]["status"] == "cancelled"
    assert client.delete(f"{API}/sessions/{session_id}", headers=headers).status_code == 204


def test_an_outage_mid_turn_loses_no_event_and_the_session_goes_on(scripted_lm, tmp_path,
                                                                    deployment):
    lm = scripted_lm(slow("during", "kept", 6, 250) + AFTERWARDS)
    app, token, headers = _token_client(lm, tmp_path, deployment)
    with app as client:
        session_id = client.post(f"{API}/sessions", headers=headers, json={}).json()["id"]
        with client.websocket_connect(ws_url(session_id, token=token)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "during"})
            frames = _until(ws.receive_json, "tool_result")
            set_login(deployment, False)
            try:
                frames += until_finished(ws.receive_json)  # the turn runs on meanwhile
                assert (frames[-1]["status"], frames[-1]["answer"]) == ("ok", "kept")
                down = client.get(f"{API}/sessions", headers=headers)
                assert down.status_code == 503, down.text
                assert down.headers["retry-after"] == "5"
                assert down.json()["error"] == "unavailable"
                started = time.monotonic()  # no wait for the finished turn's write
                turn = client.get(f"{API}/turns/{frames[-1]['turn_id']}", headers=headers)
                assert turn.status_code == 503 and time.monotonic() - started < 5
                ws.send_json({"type": "message", "text": "too soon", "id": 7})
                refused = ws.receive_json()
                assert (refused["code"], refused["id"], refused["retry_after"]) == (
                    "unavailable", 7, 5)
            finally:
                set_login(deployment, True)
            turn_id = frames[-1]["turn_id"]
            turn = client.get(f"{API}/turns/{turn_id}", headers=headers).json()
            assert (turn["status"], turn["answer"], turn["error"]) == ("ok", "kept", None)
            stored = client.get(f"{API}/turns/{turn_id}/events", headers=headers).json()
            assert stored["events"] == events_of(frames)  # every event, written once back
            _usable_afterwards(client, ws, session_id, headers)


def test_an_outage_past_the_bound_fails_the_turn_and_closes_its_record(scripted_lm, tmp_path,
                                                                      deployment):
    lm = scripted_lm(slow("during", "kept", 6, 250) + AFTERWARDS)
    app, token, headers = _token_client(lm, tmp_path, deployment, max_unwritten_events=4)
    with app as client:
        session_id = client.post(f"{API}/sessions", headers=headers, json={}).json()["id"]
        with client.websocket_connect(ws_url(session_id, token=token)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "during"})
            frames = _until(ws.receive_json, "tool_result")
            set_login(deployment, False)
            try:
                frames += until_finished(ws.receive_json)  # the bound cuts the turn short
                assert frames[-1]["status"] == "cancelled"
            finally:
                set_login(deployment, True)
            turn_id = frames[-1]["turn_id"]
            turn = client.get(f"{API}/turns/{turn_id}", headers=headers).json()
            assert turn["status"] == "error"
            assert re.search(r"RecordingLost: \d+ events .* not recorded", turn["error"])
            stored = client.get(f"{API}/turns/{turn_id}/events", headers=headers).json()
            records = stored["events"]
            # What came before the outage and what the bound kept, then the record's close,
            # numbered after every event the socket saw.
            assert records[:-2] == events_of(frames)[:len(records) - 2]
            assert [r["type"] for r in records[-2:]] == ["error", "turn_finished"]
            assert records[-2]["error_type"] == "RecordingLost"
            assert records[-1]["status"] == "error"
            assert records[-2]["seq"] > frames[-1]["seq"]
            _usable_afterwards(client, ws, session_id, headers)


def _db_cannot_grow(engine: sa.Engine, full: bool) -> None:
    """From the next connection on, SQLite may not grow the file past its size (max_page_count):
    writes that need a page fail with SQLITE_FULL, as on a full disk."""
    if full:
        sa.event.listen(engine, "connect", _no_growth)
    else:
        sa.event.remove(engine, "connect", _no_growth)


def _no_growth(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA max_page_count = 1")  # never below the current size: stays there
    cursor.close()


def test_a_full_disk_fails_the_turn_and_closes_its_record_once_writable(scripted_lm, tmp_path):
    big = "print('x' * 3000, {k})"
    rules = [{"model": "root", "match": f"(?=.*{AGENT_ANSWER})(?=.*during)",
              "reply": dspy_reply(reasoning="r", answer="kept")},
             {"model": "root", "match": "(?=.*observation_9)(?=.*during)",
              "reply": step("done", "finish")}]
    for k in range(9, -1, -1):
        rules.append({"model": "root", "delay_ms": 100,
                      "match": f"(?=.*{f'observation_{k - 1}' if k else 'next_thought'})"
                               "(?=.*during)",
                      "reply": step(f"step {k}", "python", code=big.format(k=k))})
    lm = scripted_lm(rules + AFTERWARDS)
    with app_client(settings_for(lm, tmp_path / "data")) as client:
        engine = client.app.state.svc.store.engine
        session_id = client.post(f"{API}/sessions", json={}).json()["id"]
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            _db_cannot_grow(engine.sync_engine, True)
            client.portal.call(engine.dispose)  # pooled connections go: new ones are limited
            try:
                ws.send_json({"type": "message", "text": "during"})
                frames = until_finished(ws.receive_json)
                assert frames[-1]["status"] == "cancelled"  # stopped by the full disk
                assert client.get(f"{API}/sessions").status_code == 200  # reads still work
            finally:
                _db_cannot_grow(engine.sync_engine, False)
                client.portal.call(engine.dispose)
            turn_id = frames[-1]["turn_id"]
            turn = client.get(f"{API}/turns/{turn_id}").json()
            assert turn["status"] == "error"
            assert "disk is full" in turn["error"]
            records = client.get(f"{API}/turns/{turn_id}/events").json()["events"]
            assert [r["type"] for r in records[-2:]] == ["error", "turn_finished"]
            assert records[:-2] == events_of(frames)[:len(records) - 2]
            _usable_afterwards(client, ws, session_id, {})


def test_nul_in_code_output_on_postgresql_is_escaped_and_nothing_is_lost(scripted_lm, tmp_path,
                                                                        deployment):
    text = "nul please"
    lm = scripted_lm([
        {"model": "root", "match": f"(?=.*{AGENT_ANSWER})(?=.*{text})",
         "reply": dspy_reply(reasoning="r", answer="said a\x00b")},
        {"model": "root", "match": f"(?=.*observation_0)(?=.*{text})",
         "reply": step("done", "finish")},
        {"model": "root", "match": f"(?=.*next_thought)(?=.*{text})",
         "reply": step("print it", "python", code="print('a' + chr(0) + 'b')")},
    ])
    app, token, headers = _token_client(lm, tmp_path, deployment)
    with app as client:
        session_id = client.post(f"{API}/sessions", headers=headers, json={}).json()["id"]
        with client.websocket_connect(ws_url(session_id, token=token)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": text})
            frames = until_finished(ws.receive_json)
        assert frames[-1]["status"] == "ok"
        turn_id = frames[-1]["turn_id"]
        turn = client.get(f"{API}/turns/{turn_id}", headers=headers).json()
        assert (turn["status"], turn["answer"]) == ("ok", "said a\\u0000b")
        records = client.get(f"{API}/turns/{turn_id}/events", headers=headers).json()["events"]
        assert [r["seq"] for r in records] == [f["seq"] for f in events_of(frames)]
        output = next(r for r in records if r["type"] == "tool_result")["output"]
        assert "a\\u0000b" in output and "\x00" not in output


class _Delta(BaseModel):
    seq: int
    type: str = "answer_delta"
    text: str


async def test_a_recorder_holds_at_most_its_bound_of_text_while_the_database_is_away(
        deployment, tmp_path):
    async with Store(deployment.url(deployment.app), tmp_path, tenant=ALL_TENANTS) as store:
        user = await UserRepo(store).add("alice")
        session = await store.sessions.create(tenant_id=user.tenant_id, user_id=user.id)
        turn = await store.turns.start(session.id, "q")
        faults: list[RecordingLost] = []
        recorder = EventRecorder(store, turn.id, tenant=user.tenant_id,
                                 max_buffered_chars=10_000, on_fault=faults.append)
        recorder(_Delta(seq=1, text="before"))
        await recorder.flush()
        await cut_login(deployment, False)
        try:
            for seq in range(2, 7):  # 3 000 characters each: three fit, two do not
                recorder(_Delta(seq=seq, text=str(seq) * 3_000))
            await asyncio.sleep(0)  # on_fault is called in the loop
            assert [f.lost for f in faults] == [2] and recorder.incomplete
        finally:
            await cut_login(deployment, True)
        with pytest.raises(RecordingLost, match="2 events .* not recorded") as lost:
            await recorder.close()  # what was kept is written once the database is back
        assert "10000 characters" in lost.value.reason
        assert [e.seq for e in await store.events.list(turn.id)] == [1, 2, 3, 4]
