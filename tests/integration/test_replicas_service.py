"""Two session services on one store, as two processes would be (each with its own owner id,
relay and leases): a turn one runs is followed live, cancelled and answered through the other;
a turn whose owner stopped renewing its lease is closed once, by one of them."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from test_server_support import asking, slow

from fleet_rlm.config import Settings
from fleet_rlm.events import parse_event
from fleet_rlm.sessions import EVERY_TENANT, Busy
from fleet_rlm.store.models import Turn

pytestmark = pytest.mark.timeout(120)


def settings_for(server, data_dir, **overrides) -> Settings:
    return Settings(root_model="openai/root", sub_model="openai/sub", api_base=server.api_base,
                    data_dir=data_dir, **overrides)


async def collect(stream, into: list) -> None:
    async for event in stream:
        into.append(event)


async def test_a_turn_run_by_one_service_is_followed_live_and_cancelled_through_another(
        scripted_lm, tmp_path, open_service):
    server = scripted_lm(slow("count", "counted", steps=30, delay_ms=200))
    settings = settings_for(server, tmp_path)
    runner, other = await open_service(settings), await open_service(settings)
    assert runner.replicas.owner != other.replicas.owner
    session = await runner.create_session()
    posted = await runner.post(EVERY_TENANT, session.id, "count")
    with pytest.raises(Busy):  # one turn in flight per session, whichever service is asked
        await other.post(EVERY_TENANT, session.id, "again")

    seen: list = []
    follower = asyncio.create_task(collect(other.follow(posted.turn_id, 0), seen))
    deadline = time.monotonic() + 30
    while sum(e.type == "agent_step" for e in seen) < 2:
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.05)
    assert posted.turn_id not in other.live  # read from the store as notices come
    assert await other.stop(posted.turn_id, principal=EVERY_TENANT)  # reaches the runner
    await asyncio.wait_for(follower, 30)
    result = await asyncio.wait_for(posted.done, 30)
    assert result.status == "cancelled"
    assert seen[-1].type == "turn_finished" and seen[-1].status == "cancelled"
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    stored = [parse_event(r.payload) for r in await other.store.events.list(posted.turn_id)]
    assert stored == seen
    assert not await other.stop(posted.turn_id)  # no longer in flight


async def test_a_waiting_turn_is_answered_through_any_service_once(scripted_lm, tmp_path,
                                                                   open_service):
    server = scripted_lm(asking("pick", "Which one?", "the second"))
    settings = settings_for(server, tmp_path)
    first, second = await open_service(settings), await open_service(settings)
    session = await first.create_session()
    posted = await first.post(EVERY_TENANT, session.id, "pick")
    assert (await asyncio.wait_for(posted.done, 30)).status == "waiting"
    await first.stored(session.id, complete=True)

    answered = await second.post(EVERY_TENANT, session.id, "this one", answering=True)
    assert answered.answered and answered.turn_id == posted.turn_id
    with pytest.raises((Busy, ValueError)):  # taken already
        await first.post(EVERY_TENANT, session.id, "that one", answering=posted.turn_id)
    seen: list = []
    await asyncio.wait_for(collect(first.follow(posted.turn_id, answered.after_seq), seen), 30)
    assert seen[-1].type == "turn_finished" and seen[-1].status == "ok"
    assert (await asyncio.wait_for(answered.done, 30)).answer == "the second"


async def test_a_turn_whose_lease_ran_out_is_closed_once_and_its_session_takes_messages(
        scripted_lm, tmp_path, open_service):
    """A turn of a process on another machine that stopped renewing its lease: every service
    sweeps, one closes it, with one pair of closing events."""
    settings = settings_for(scripted_lm(slow("after", "fine", steps=1, delay_ms=0)), tmp_path,
                            turn_lease_s=3)
    services = [await open_service(settings) for _ in range(3)]
    store = services[0].store
    session = await services[0].create_session()
    lost = await store.turns.start(session.id, "lost", owner="elsewhere/boot/1/42/ab",
                                   lease_s=1)
    with pytest.raises(Busy):
        await services[1].post(EVERY_TENANT, session.id, "after")
    assert await asyncio.gather(*(s.replicas.sweep() for s in services)) in (
        [[], [], []],)  # the lease still runs
    await asyncio.sleep(1.2)
    closed = await asyncio.gather(*(s.replicas.sweep() for s in services))
    # One of these sweeps closed it, or a service's own periodic sweep just before them: once,
    # as the record's one pair of closing events shows.
    assert sum(map(len, closed)) <= 1
    turn = await store.turns.get(lost.id)
    assert turn.status == "interrupted"
    events = [parse_event(r.payload) for r in await store.events.list(lost.id)]
    assert [(e.type, getattr(e, "status", None)) for e in events] == [
        ("error", None), ("turn_finished", "interrupted")]
    posted = await services[1].post(EVERY_TENANT, session.id, "after")
    assert (await asyncio.wait_for(posted.done, 30)).answer == "fine"


async def test_a_turn_whose_lease_another_process_took_stops_and_its_record_closes_once(
        scripted_lm, tmp_path, open_service):
    """The runner could not renew its lease in time (the database away from it longer than the
    lease: here its lease is set to have run out) and another process closed the turn. The
    runner notices at its next renewal, stops the turn, and writes nothing more of it: the
    record ends with the one closing the other process wrote."""
    server = scripted_lm(slow("count", "counted", steps=30, delay_ms=200))
    # The runner renews every 3 s: between two renewals its lease is made to have run out.
    runner = await open_service(settings_for(server, tmp_path, turn_lease_s=9))
    other = await open_service(settings_for(server, tmp_path, turn_lease_s=1.5))
    session = await runner.create_session()
    posted = await runner.post(EVERY_TENANT, session.id, "count")
    deadline = time.monotonic() + 30
    while len(await runner.store.events.list(posted.turn_id)) < 4:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    async with runner.store.transaction() as db:
        await db.execute(sa.update(Turn).where(Turn.id == posted.turn_id)
                         .values(lease_expires=0.0))
    # This sweep closes it, or the other service's periodic one did just before.
    assert await other.replicas.sweep() in ([posted.turn_id], [])
    result = await asyncio.wait_for(posted.done, 10)  # at its next renewal
    assert result.status == "cancelled"
    await asyncio.sleep(0.3)  # anything the runner still had would be written by now
    events = [parse_event(r.payload) for r in await other.store.events.list(posted.turn_id)]
    finished = [e for e in events if e.type == "turn_finished"]
    assert [e.status for e in finished] == ["interrupted"] and events[-1] == finished[0]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert (await other.store.turns.get(posted.turn_id)).status == "interrupted"
