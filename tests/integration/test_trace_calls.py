"""Every model call of a turn is kept once, redacted, and opens through the API with its exact
request and reply; keeping calls never blocks a turn (store full, unwritable, a call above the
cap, capture off)."""

from __future__ import annotations

import pytest
from test_server_support import API, app_client, quick, settings_for, until_finished, ws_url

from fleet_rlm.sessions import LOCAL, NotFound, Principal, SessionService

KEY = "sk-test0123456789abcdefXYZ"
OTHER = Principal("someone", "another-tenant", "someone", admin=True)


def _turn(client, text: str) -> list[dict]:
    session_id = client.post(f"{API}/sessions", json={"title": "t"}).json()["id"]
    with client.websocket_connect(ws_url(session_id)) as ws:
        assert ws.receive_json()["type"] == "session"
        ws.send_json({"type": "message", "text": text})
        return until_finished(ws.receive_json)


def test_each_call_opens_with_its_exact_request_and_reply_and_no_key(scripted_lm, tmp_path):
    text = "What is up? my header was Authorization: Bearer abcdefghijklmnopqrstuvwxyz"
    server = scripted_lm(quick(text, "All good."))
    with app_client(settings_for(server, tmp_path, api_key=KEY)) as client:
        frames = _turn(client, text)
        turn_id = frames[-1]["turn_id"]
        calls = [f for f in frames if f["type"] == "lm_call"]
        assert len(calls) == 2 and all(c["call_id"] for c in calls)
        assert all(c["capture_missing"] is None for c in calls)
        details = [client.get(f"{API}/turns/{turn_id}/calls/{c['call_id']}").json()
                   for c in calls]
    for call, detail in zip(calls, details, strict=True):
        assert detail["captured"] is True and detail["missing_reason"] is None
        assert (detail["model"], detail["role"], detail["node_id"]) == (
            call["model"], call["role"], call["node_id"])
        assert detail["prompt_tokens"] == call["prompt_tokens"] > 0
        assert detail["finish_reason"] == "stop" and detail["attempt"] == 1
        assert [m["role"] for m in detail["messages"]][0] == "system"
        assert "What is up?" in detail["messages"][-1]["content"]
        assert detail["reply"] and detail["reply"].startswith(call["response_preview"][:50])
        assert "max_tokens" in detail["params"] and "api_key" not in detail["params"]
    # The agent's answer call comes back whole, as the scripted server sent it.
    assert any("All good." in d["reply"] for d in details)
    stored = "".join(p.read_text() for p in (tmp_path / "calls").rglob("*") if p.is_file())
    assert KEY not in stored and "abcdefghijklmnopqrstuvwxyz" not in stored
    assert "Bearer ***" in stored


def test_unknown_call_or_turn_is_404(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi"))
    with app_client(settings_for(server, tmp_path)) as client:
        frames = _turn(client, "hello")
        turn_id = frames[-1]["turn_id"]
        call_id = next(f["call_id"] for f in frames if f["type"] == "lm_call")
        assert client.get(f"{API}/turns/{turn_id}/calls/nope").status_code == 404
        assert client.get(f"{API}/turns/nope/calls/{call_id}").status_code == 404


@pytest.mark.parametrize("overrides, reason", [
    ({"capture_max_store_mb": 0.0001}, "the call store is full"),
    ({"capture_max_call_mb": 0.0001}, "above FLEET_CAPTURE_MAX_CALL_MB"),
])
async def test_a_call_not_kept_is_recorded_without_it_and_says_why(
        scripted_lm, tmp_path, overrides, reason):
    server = scripted_lm(quick("hello", "hi"))
    svc = SessionService(settings_for(server, tmp_path, **overrides))
    await svc.open()
    try:
        session = await svc.create_session(principal=LOCAL)
        posted = await svc.post(LOCAL, session.id, "hello")
        events = [e async for e in svc.follow(posted.turn_id)]
        assert (await posted.done).status == "ok"
        calls = [e for e in events if e.type == "lm_call"]
        assert calls and all(c.call_id and reason in (c.capture_missing or "") for c in calls)
        detail = await svc.call(LOCAL, posted.turn_id, calls[0].call_id)
        assert (detail.captured, detail.messages, detail.reply) == (False, [], None)
        assert reason in detail.missing_reason and detail.prompt_tokens > 0
        with pytest.raises(NotFound):  # another tenant's turn is missing
            await svc.call(OTHER, posted.turn_id, calls[0].call_id)
    finally:
        await svc.close()


async def test_an_unwritable_call_store_never_blocks_a_turn(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi"))
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "calls").write_text("a file where the store's folder should be")
    svc = SessionService(settings_for(server, tmp_path))
    await svc.open()
    try:
        session = await svc.create_session(principal=LOCAL)
        posted = await svc.post(LOCAL, session.id, "hello")
        events = [e async for e in svc.follow(posted.turn_id)]
        assert (await posted.done).answer == "hi"
        calls = [e for e in events if e.type == "lm_call"]
        assert all("unwritable" in (c.capture_missing or "") for c in calls)
    finally:
        await svc.close()


async def test_with_capture_off_calls_carry_no_id(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi"))
    svc = SessionService(settings_for(server, tmp_path, capture_calls=False))
    await svc.open()
    try:
        session = await svc.create_session(principal=LOCAL)
        posted = await svc.post(LOCAL, session.id, "hello")
        events = [e async for e in svc.follow(posted.turn_id)]
        calls = [e for e in events if e.type == "lm_call"]
        assert calls and all(c.call_id is None and c.capture_missing is None for c in calls)
        assert not (tmp_path / "calls").exists()
    finally:
        await svc.close()


async def test_a_retried_call_keeps_each_attempt_the_failed_one_without_a_reply(
        scripted_lm, tmp_path):
    server = scripted_lm([{"status": 503, "reply": "overloaded", "times": 1}]
                         + quick("hello", "hi"))
    svc = SessionService(settings_for(server, tmp_path))
    await svc.open()
    try:
        session = await svc.create_session(principal=LOCAL)
        posted = await svc.post(LOCAL, session.id, "hello")
        events = [e async for e in svc.follow(posted.turn_id)]
        assert (await posted.done).answer == "hi"
        failed, retried = [e for e in events if e.type == "lm_call"][:2]
        first = await svc.call(LOCAL, posted.turn_id, failed.call_id)
        second = await svc.call(LOCAL, posted.turn_id, retried.call_id)
        assert (first.attempt, first.reply, first.captured) == (1, None, True)
        assert "503" in (first.error or "") and first.http_status == 503
        assert (second.attempt, second.error, second.finish_reason) == (2, None, "stop")
        assert first.messages == second.messages and second.reply
    finally:
        await svc.close()


async def test_another_tenant_finds_none_of_the_turns_and_a_deleted_session_keeps_no_calls(
        scripted_lm, tmp_path):
    from fleet_rlm.sessions.inspector import TurnQuery

    server = scripted_lm(quick("hello", "hi"))
    svc = SessionService(settings_for(server, tmp_path))
    await svc.open()
    try:
        session = await svc.create_session(principal=LOCAL)
        posted = await svc.post(LOCAL, session.id, "hello")
        assert (await posted.done).status == "ok"
        mine = await svc.search_turns(LOCAL, TurnQuery(tenant_id="ignored"))
        assert [t.turn_id for t in mine.items] == [posted.turn_id]
        assert (await svc.search_turns(OTHER, TurnQuery(tenant_id="local"))).items == []
        with pytest.raises(NotFound):
            await svc.model_usage(OTHER, turn_id=posted.turn_id)
        with pytest.raises(NotFound):
            await svc.set_tags(OTHER, posted.turn_id, ["x"])
        assert len(svc.store.calls.turn_calls(posted.turn_id)) == 2
        await svc.delete_session(session.id, principal=LOCAL)
        assert svc.store.calls.turn_calls(posted.turn_id) == []
    finally:
        await svc.close()
