"""Turns start in parallel: a session's turn waits for nothing of another session's (no lock of
the whole service, no small pool of threads), while one session still runs one turn at a time.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pg_deployment import database_settings
from test_server_support import quick, settings_for

from fleet_rlm.sessions import (
    ALL_TENANTS,
    EVERY_TENANT,
    LOCAL,
    Busy,
    NotFound,
    Posted,
    Principal,
    SessionService,
)
from fleet_rlm.testing import AGENT_ANSWER, dspy_reply
from fleet_rlm.testing import dspy_agent_step as step

pytestmark = pytest.mark.timeout(120)
OTHER = Principal("someone", "another-tenant", "someone", admin=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> Iterator[dict]:
    yield from database_settings(request.param, "turn_starts", tmp_path)


def hold_first_start(svc: SessionService, session_id: str) -> tuple[asyncio.Event,
                                                                      asyncio.Event]:
    """The store's first turn start for `session_id` waits (as under a slow database) until
    the second event is set; the first tells it is waiting. Then the real start runs."""
    held, release = asyncio.Event(), asyncio.Event()
    start = svc.store.turns.start

    async def slow_start(sid: str, *args, **kwargs):
        if sid == session_id and not held.is_set():
            held.set()
            await release.wait()
        return await start(sid, *args, **kwargs)

    svc.store.turns.start = slow_start  # type: ignore[method-assign]
    return held, release


async def follow(svc: SessionService, posted: Posted) -> list:
    return [e async for e in svc.follow(posted.turn_id, posted.after_seq)]


async def test_a_turn_start_held_in_the_store_does_not_hold_up_another_sessions(
        scripted_lm, tmp_path, open_service, database):
    server = scripted_lm(quick("alpha", "a") + quick("beta", "b"))
    svc = await open_service(settings_for(server, tmp_path, **database), tenant=ALL_TENANTS)
    a = await svc.create_session(principal=EVERY_TENANT)
    b = await svc.create_session(principal=EVERY_TENANT)
    held, release = hold_first_start(svc, a.id)

    first = asyncio.create_task(svc.post(EVERY_TENANT, a.id, "alpha"))
    await asyncio.wait_for(held.wait(), 10)
    # Under one lock for every session, this message would wait for alpha's start.
    beta = await asyncio.wait_for(svc.post(EVERY_TENANT, b.id, "beta"), 10)
    events = await asyncio.wait_for(follow(svc, beta), 30)
    assert events[0].type == "turn_started" and events[-1].type == "turn_finished"
    assert (await beta.done).answer == "b"
    assert not first.done()  # alpha's start is still held

    release.set()
    alpha = await asyncio.wait_for(first, 10)
    assert (await asyncio.wait_for(alpha.done, 30)).answer == "a"


async def test_two_messages_to_one_session_never_run_at_once(scripted_lm, tmp_path,
                                                             open_service, database):
    server = scripted_lm(quick("first", "one") + quick("second", "two"))
    svc = await open_service(settings_for(server, tmp_path, **database), tenant=ALL_TENANTS)
    session = await svc.create_session(principal=EVERY_TENANT)
    held, release = hold_first_start(svc, session.id)

    first = asyncio.create_task(svc.post(EVERY_TENANT, session.id, "first"))
    await asyncio.wait_for(held.wait(), 10)
    second = asyncio.create_task(svc.post(EVERY_TENANT, session.id, "second"))
    await asyncio.sleep(0.3)
    assert not second.done()  # it waits for the session's turn start before it, in order

    release.set()
    posted = await asyncio.wait_for(first, 10)
    with pytest.raises(Busy):  # the first message's turn is in flight: refused, not queued
        await asyncio.wait_for(second, 10)
    assert (await asyncio.wait_for(posted.done, 30)).answer == "one"
    assert [t.user_message for t in await svc.turns(EVERY_TENANT, session.id)] == ["first"]


async def test_more_turns_than_cores_start_before_any_finishes(scripted_lm, tmp_path,
                                                              open_service, database):
    """Twelve sessions at once, each turn's answer taking a second to stream: every turn has
    started before the first finishes (a pool of cores + 4 threads started six), and the twelve
    answers stream at once (more than dspy's limiter's eight waited on it, and hung)."""
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "delay_ms": 1000,
         "reply": dspy_reply(reasoning="r", answer="fine")},
        {"model": "root", "match": "next_thought", "delay_ms": 200,
         "reply": step("slow model", "finish")},
    ])
    svc = await open_service(settings_for(server, tmp_path, **database), tenant=ALL_TENANTS)
    sessions = [await svc.create_session(principal=EVERY_TENANT) for _ in range(12)]
    posted = await asyncio.gather(*(svc.post(EVERY_TENANT, s.id, f"question {i}")
                                    for i, s in enumerate(sessions)))
    turns = await asyncio.wait_for(asyncio.gather(*(follow(svc, p) for p in posted)), 60)
    started = [next(e.ts for e in events if e.type == "turn_started") for events in turns]
    finished = [events[-1].ts for events in turns]
    assert all(events[-1].type == "turn_finished" and events[-1].status == "ok"
               for events in turns)
    assert max(started) < min(finished)
    assert all(any(e.type == "answer_delta" for e in events) for events in turns)


async def test_a_live_turn_is_followed_with_no_read_yet_not_by_another_tenant(
        scripted_lm, tmp_path, open_service, database):
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER,
         "reply": dspy_reply(reasoning="r", answer="fine")},
        {"model": "root", "match": "next_thought", "delay_ms": 1000,
         "reply": step("slow model", "finish")},
    ])
    svc = await open_service(settings_for(server, tmp_path, **database), tenant=ALL_TENANTS)
    session = await svc.create_session(principal=EVERY_TENANT)
    posted = await svc.post(EVERY_TENANT, session.id, "hello")
    assert posted.turn_id in svc.live
    with pytest.raises(NotFound):  # its tenant is the live turn's, not this one
        [e async for e in svc.follow(posted.turn_id, principal=OTHER)]
    events = await asyncio.wait_for(follow_as(svc, posted, LOCAL), 30)  # its tenant's user
    assert events[0].type == "turn_started" and events[-1].status == "ok"


async def follow_as(svc: SessionService, posted: Posted, principal: Principal) -> list:
    return [e async for e in svc.follow(posted.turn_id, posted.after_seq, principal=principal)]
