"""The session WebSocket in process: frames and their errors, busy, ask_user over the socket,
cancel, resume after a reconnect, and a client too slow to keep up."""

from __future__ import annotations

import asyncio
import json

from test_server_support import (
    API,
    app_client,
    asking,
    quick,
    settings_for,
    slow,
    until_finished,
    ws_url,
)

from fleet_rlm.server.hub import Client
from fleet_rlm.sessions import SessionService


def _session(client) -> str:
    return client.post(f"{API}/sessions", json={}).json()["id"]


def _connect(client, session_id: str):
    ws = client.websocket_connect(ws_url(session_id))
    ws.__enter__()
    hello = ws.receive_json()
    assert hello["type"] == "session" and hello["session_id"] == session_id
    return ws


def test_bad_frames_get_error_frames_and_the_socket_keeps_working(scripted_lm, tmp_path):
    server = scripted_lm(quick("ping", "pong"))
    with app_client(settings_for(server, tmp_path)) as client:
        session_id = _session(client)
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_text("{not json")
            assert ws.receive_json()["code"] == "bad_json"
            ws.send_text("[1, 2]")
            assert ws.receive_json()["code"] == "bad_frame"
            ws.send_json({"type": "dance", "id": 7})
            unknown = ws.receive_json()
            assert unknown["code"] == "unknown_type" and "message, answer" in unknown["message"]
            ws.send_json({"type": "answer", "text": "x", "id": "a1"})
            missing = ws.receive_json()
            assert (missing["code"], missing["id"]) == ("bad_frame", "a1")
            assert "turn_id" in missing["message"]
            ws.send_bytes(b"\x00")
            assert ws.receive_json()["code"] == "bad_frame"
            ws.send_json({"type": "message", "text": "ping", "limits": {"max_cats": 1}})
            assert ws.receive_json()["code"] == "invalid"
            ws.send_json({"type": "message", "text": "ping", "document_ids": ["nope"]})
            assert ws.receive_json()["code"] == "not_found"
            ws.send_json({"type": "resume", "turn_id": "nope", "last_seq": 0})
            assert ws.receive_json()["code"] == "not_found"
            ws.send_json({"type": "cancel"})
            assert ws.receive_json()["code"] == "not_running"

            ws.send_json({"type": "message", "text": "ping"})
            frames = until_finished(ws.receive_json)
        assert frames[0]["type"] == "turn_started" and frames[-1]["answer"] == "pong"
        assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
        assert server.stats()["calls"] == 2


def test_busy_then_the_next_message_right_after_turn_finished(scripted_lm, tmp_path):
    server = scripted_lm(slow("first", "one", steps=1, delay_ms=600) + quick("second", "two"))
    with app_client(settings_for(server, tmp_path)) as client:
        session_id = _session(client)
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "first"})
            ws.send_json({"type": "message", "text": "second"})
            frames = until_finished(ws.receive_json)
            (busy,) = [f for f in frames if f["type"] == "socket_error"]
            assert busy["code"] == "busy"
            assert frames[-1]["answer"] == "one"
            # turn_finished arrives once the turn is closed: the next message is not busy.
            ws.send_json({"type": "message", "text": "second"})
            second = until_finished(ws.receive_json)
        assert second[-1]["answer"] == "two" and second[0]["type"] == "turn_started"
        statuses = [t["status"] for t in client.get(f"{API}/sessions/{session_id}/turns").json()]
        assert statuses == ["ok", "ok"]


def test_ask_user_is_answered_over_the_socket(scripted_lm, tmp_path):
    server = scripted_lm(asking("plan my day", "Morning or evening?", "Evening it is."))
    with app_client(settings_for(server, tmp_path)) as client:
        session_id = _session(client)
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "plan my day"})
            first = until_finished(ws.receive_json)
            (question,) = [f for f in first if f["type"] == "ask_user"]
            assert question["question"] == "Morning or evening?"
            assert first[-1]["status"] == "waiting"
            turn_id = first[-1]["turn_id"]
            turn = client.get(f"{API}/turns/{turn_id}").json()
            assert (turn["status"], turn["question"]) == ("waiting", "Morning or evening?")

            ws.send_json({"type": "message", "text": "something else"})
            assert ws.receive_json()["code"] == "busy"  # the session waits on the answer
            ws.send_json({"type": "answer", "turn_id": turn_id, "text": "evening"})
            second = until_finished(ws.receive_json)
            ws.send_json({"type": "answer", "turn_id": turn_id, "text": "again"})
            not_waiting = ws.receive_json()
            assert not_waiting["code"] == "invalid" and "not waiting" in not_waiting["message"]
        assert second[0]["seq"] == first[-1]["seq"] + 1
        assert second[-1]["status"] == "ok" and second[-1]["answer"] == "Evening it is."
        stored = client.get(f"{API}/turns/{turn_id}/events").json()["events"]
        assert stored == first + second
        server.verify()


def test_cancel_a_running_turn_and_dismiss_a_waiting_one(scripted_lm, tmp_path):
    server = scripted_lm(slow("long job", "never", steps=3, delay_ms=1500)
                         + asking("ask me", "Which one?", "unused"))
    with app_client(settings_for(server, tmp_path)) as client:
        session_id = _session(client)
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "long job"})
            assert ws.receive_json()["type"] == "turn_started"
            ws.send_json({"type": "cancel"})
            frames = until_finished(ws.receive_json)
            assert frames[-1]["status"] == "cancelled"
            assert any(f["type"] == "cancelled" for f in frames)

            ws.send_json({"type": "message", "text": "ask me"})
            asked = until_finished(ws.receive_json)
            assert asked[-1]["status"] == "waiting"
            ws.send_json({"type": "cancel", "turn_id": asked[-1]["turn_id"]})
            state = ws.receive_json()
            assert state == {"type": "session", "session_id": session_id, "active_turn": None}
        statuses = [t["status"] for t in client.get(f"{API}/sessions/{session_id}/turns").json()]
        assert statuses == ["cancelled", "cancelled"]


def test_a_cancel_just_after_the_turn_finished_is_answered(scripted_lm, tmp_path):
    # A python step: after turn_finished the turn still saves its sandbox's variables.
    server = scripted_lm(slow("ping", "pong", steps=1, delay_ms=0))
    with app_client(settings_for(server, tmp_path)) as client:
        session_id = _session(client)
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "ping"})
            frames = until_finished(ws.receive_json)
            turn_id = frames[-1]["turn_id"]
            ws.send_json({"type": "cancel", "turn_id": turn_id, "id": "late"})
            reply = ws.receive_json()
            assert (reply["type"], reply["code"], reply["id"]) == ("socket_error", "not_running",
                                                                  "late")
            assert reply["turn_id"] == turn_id
        [turn] = client.get(f"{API}/sessions/{session_id}/turns").json()
        assert (turn["status"], turn["answer"]) == ("ok", "pong")


def test_two_sockets_get_the_same_sequence_and_a_reconnect_resumes(scripted_lm, tmp_path):
    server = scripted_lm(slow("count", "counted", steps=3, delay_ms=250))
    with app_client(settings_for(server, tmp_path)) as client:
        session_id = _session(client)
        watcher = _connect(client, session_id)
        leaver = _connect(client, session_id)
        watcher.send_json({"type": "message", "text": "count"})
        seen = [leaver.receive_json() for _ in range(3)]
        leaver.__exit__(None, None, None)  # gone mid-turn

        watched = until_finished(watcher.receive_json)
        calls = server.stats()["calls"]
        back = _connect(client, session_id)
        back.send_json({"type": "resume", "turn_id": seen[-1]["turn_id"],
                        "last_seq": seen[-1]["seq"]})
        rest = until_finished(back.receive_json)
        back.__exit__(None, None, None)
        watcher.__exit__(None, None, None)
    assert [f["seq"] for f in seen + rest] == [f["seq"] for f in watched]
    assert seen + rest == watched
    assert server.stats()["calls"] == calls  # replayed from the store, nothing ran again


async def test_a_client_that_stops_reading_overflows_and_resumes_without_slowing_the_turn(
        scripted_lm, tmp_path, monkeypatch):
    # Long enough that the stuck client stalls (stall_s) well before the turn ends.
    server = scripted_lm(slow("many steps", "done", steps=6, delay_ms=200))
    svc = SessionService(settings_for(server, tmp_path))
    await svc.open()
    try:
        session = await svc.create_session()

        class StuckSocket:
            def __init__(self) -> None:
                self.sent: list[dict] = []
                self.unblocked = asyncio.Event()

            async def send_text(self, text: str) -> None:
                await self.unblocked.wait()
                self.sent.append(json.loads(text))

        ws = StuckSocket()
        client = Client(svc, ws, session.id, limit=4, stall_s=0.3)
        writer = asyncio.create_task(client.write_loop())
        live = await svc.send(session.id, "many steps")
        client.follow(live.turn_id, 0)
        result = await asyncio.wait_for(live.done, 60)  # finishes while the client is stuck
        assert result.status == "ok"

        ws.unblocked.set()
        await asyncio.sleep(0.2)
        *events, overflow = ws.sent
        # The outbox's 4, and the one the writer held when the socket stuck.
        assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
        assert overflow == {"type": "socket_error", "code": "overflow", "turn_id": live.turn_id,
                            "resume_from": 5, "message": overflow["message"]}
        client.follow(live.turn_id, overflow["resume_from"])  # the replay waits for room
        for _ in range(100):
            if ws.sent[-1].get("type") == "turn_finished":
                break
            await asyncio.sleep(0.05)
        replayed = ws.sent[len(events) + 1:]
        seqs = [e["seq"] for e in events + replayed]
        assert seqs == list(range(1, len(seqs) + 1)) and replayed[-1]["type"] == "turn_finished"
        writer.cancel()
    finally:
        await svc.close()




def test_a_message_may_lower_the_servers_limits_but_never_raise_them(scripted_lm, tmp_path):
    server = scripted_lm(quick("ping", "pong"))
    settings = settings_for(server, tmp_path, max_calls=5, max_usd=1.0, max_depth=1)
    with app_client(settings) as client:
        session_id = _session(client)
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            for field, asked, limit in [("max_calls", 1_000_000_000, 5),
                                        ("max_usd", 1e12, 1.0), ("max_depth", 50, 1)]:
                ws.send_json({"type": "message", "text": "ping", "limits": {field: asked},
                              "id": field})
                refused = ws.receive_json()
                assert (refused["code"], refused["id"]) == ("invalid", field)
                assert (refused["field"], refused["server_limit"]) == (field, limit)
                assert refused["message"].startswith(f"bad limits: {field}: ")
                assert f"above the server's limit of {limit}" in refused["message"]
            ws.send_json({"type": "message", "text": "ping", "limits": {"max_lm_calls": 1e9},
                          "id": "old"})  # the deprecated name, refused as the new one is
            refused = ws.receive_json()
            assert (refused["code"], refused["field"], refused["server_limit"]) == (
                "invalid", "max_calls", 5)
            ws.send_json({"type": "message", "text": "ping", "limits": {"max_calls": 4}})
            frames = until_finished(ws.receive_json)
        assert frames[-1]["answer"] == "pong"
        assert frames[-1]["usage"]["limits"]["max_calls"] == 4  # lowering works
        assert server.stats()["calls"] == 2
        turns = client.get(f"{API}/sessions/{session_id}/turns").json()
        assert len(turns) == 1  # the refused messages recorded nothing


def test_attachments_are_a_field_the_agent_reads_as_before_and_the_turn_keeps_apart(
        scripted_lm, tmp_path):
    # The agent's message names the attachments after the text, as it always has.
    server = scripted_lm(quick("sum it\n\n(Attached documents: a.txt, b.txt)", "six")
                         + quick("again\n\n(Attached documents: b.txt)", "still six"))
    with app_client(settings_for(server, tmp_path)) as client:
        session_id, other = _session(client), _session(client)

        def upload(session: str, name: str) -> str:
            return client.post(f"{API}/sessions/{session}/documents",
                               files={"file": (name, b"1 2 3", "text/plain")}).json()["id"]

        a, b, elsewhere = upload(session_id, "a.txt"), upload(session_id, "b.txt"), \
            upload(other, "c.txt")
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "sum it", "attachments": [a, elsewhere],
                          "id": 7})
            refused = ws.receive_json()
            assert refused["type"] == "socket_error" and refused["code"] == "not_found"
            assert refused["id"] == 7 and elsewhere in refused["message"]
            ws.send_json({"type": "message", "text": "sum it", "attachments": [a, b, a]})
            assert until_finished(ws.receive_json)[-1]["answer"] == "six"
            # The old name of the field is still accepted.
            ws.send_json({"type": "message", "text": "again", "document_ids": [b]})
            assert until_finished(ws.receive_json)[-1]["answer"] == "still six"
        first, second = client.get(f"{API}/sessions/{session_id}/turns").json()
    assert (first["text"], first["attachments"]) == (
        "sum it", [{"id": a, "name": "a.txt"}, {"id": b, "name": "b.txt"}])
    assert first["user_message"] == "sum it\n\n(Attached documents: a.txt, b.txt)"
    assert (second["text"], second["attachments"]) == ("again", [{"id": b, "name": "b.txt"}])


def test_the_frame_models_schema_names_every_frame():
    from fleet_rlm.server.frames import frames_json_schema

    defs = frames_json_schema()["$defs"]
    kinds = {name: d["properties"]["type"].get("const") for name, d in defs.items()
             if "type" in d.get("properties", {})}
    assert kinds == {"MessageFrame": "message", "AnswerFrame": "answer",
                     "CancelFrame": "cancel", "ResumeFrame": "resume",
                     "SessionFrame": "session", "SocketError": "socket_error"}
    assert {r["$ref"] for r in defs["ControlFrame"]["oneOf"]} == {
        "#/$defs/SessionFrame", "#/$defs/SocketError"}
