"""The session service's API for the entry points: `post` starts a turn or answers the waiting
one, `follow` yields every event once and in order (backlog, overflow and gap made good from the
store), and the service refuses another tenant's sessions and turns as missing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from test_server_support import quick, settings_for, slow
from test_sessions import ask_user_script

from fleet_rlm.events import EventStream, parse_event
from fleet_rlm.sessions import LOCAL, Busy, NotFound, Principal, SessionService
from fleet_rlm.sessions import live as live_turns

OTHER = Principal("someone", "another-tenant", "someone", admin=True)


@pytest.fixture
async def svc(scripted_lm, tmp_path, request) -> AsyncIterator[SessionService]:
    server = scripted_lm(request.param)
    service = SessionService(settings_for(server, tmp_path))
    await service.open()
    yield service
    await service.close()


def script(rules):
    return pytest.mark.parametrize("svc", [rules], indirect=True)


async def seqs_stored(svc: SessionService, turn_id: str) -> list[int]:
    return [e["seq"] for e in await svc.turn_events(LOCAL, turn_id)]


@script(quick("hello", "hi there"))
async def test_post_starts_a_turn_that_follow_streams_once_and_replays_from_the_store(svc):
    session = await svc.create_session(principal=LOCAL)
    posted = await svc.post(LOCAL, session.id, "hello")
    assert (posted.after_seq, posted.answered) == (0, False)
    live = [e async for e in svc.follow(posted.turn_id, posted.after_seq)]
    assert (await posted.done).answer == "hi there"
    assert [e.seq for e in live] == list(range(1, len(live) + 1))
    assert live[-1].type == "turn_finished"
    # Read right after turn_finished: the turn is closed, and following again replays the store.
    assert (await svc.turn(LOCAL, posted.turn_id)).status == "ok"
    assert [e async for e in svc.follow(posted.turn_id, 2)] == live[2:]
    assert await seqs_stored(svc, posted.turn_id) == [e.seq for e in live]


@script(ask_user_script())
async def test_post_answers_the_waiting_turn_and_follow_goes_on_after_the_question(svc):
    session = await svc.create_session(principal=LOCAL)
    await svc.add_document(session.id, "notes.txt", b"hello world", principal=LOCAL)
    first = await svc.post(LOCAL, session.id, "Summarise the report")
    asked = [e async for e in svc.follow(first.turn_id)]
    assert (await first.done).question == "Which report?"
    with pytest.raises(Busy):  # a new message while the turn waits on its answer
        await svc.post(LOCAL, session.id, "something else")

    answer = await svc.post(LOCAL, session.id, "the Q3 one", answering=True)
    assert (answer.turn_id, answer.answered, answer.after_seq) == (
        first.turn_id, True, asked[-1].seq)
    rest = [e async for e in svc.follow(answer.turn_id, answer.after_seq)]
    assert (await answer.done).answer == "Q3 it is."
    assert (rest[0].tool_name, rest[0].output) == ("ask_user", "the Q3 one")
    assert [e.seq for e in asked + rest] == await seqs_stored(svc, first.turn_id)
    with pytest.raises(ValueError, match="not waiting"):  # nothing waits any more
        await svc.post(LOCAL, session.id, "again", answering=first.turn_id)


@script(slow("many steps", "done", steps=4, delay_ms=30))
async def test_follow_catches_up_from_the_store_after_its_queue_overflows(svc, monkeypatch):
    monkeypatch.setattr(live_turns, "SUBSCRIBER_QUEUE", 2)
    subscriptions = []
    subscribe = live_turns.subscribe
    monkeypatch.setattr(live_turns, "subscribe",
                        lambda live: subscriptions.append(live) or subscribe(live))
    session = await svc.create_session()
    posted = await svc.post(LOCAL, session.id, "many steps")
    seen = []
    async for event in svc.follow(posted.turn_id):
        seen.append(event)
        await asyncio.sleep(0.05)  # slower than the turn: its queue of 2 overflows
    assert (await posted.done).status == "ok"
    assert len(subscriptions) > 1  # it fell behind and came back through the store
    assert [e.seq for e in seen] == await seqs_stored(svc, posted.turn_id)
    assert seen[-1].type == "turn_finished"


@script(quick("hello", "hi there"))
async def test_follow_fills_a_missing_live_event_from_the_store(svc):
    session = await svc.create_session()
    posted = await svc.post(LOCAL, session.id, "hello")
    events = svc.follow(posted.turn_id)  # subscribed now, with nothing emitted yet
    queue = svc.live[posted.turn_id].subscribers[-1]
    await posted.done
    items = [queue.get_nowait() for _ in range(queue.qsize())]
    for item in items:
        if item is None or item.seq != 2:  # the live event of seq 2 never arrives
            queue.put_nowait(item)
    got = [e async for e in events]
    stored = [parse_event(e) for e in await svc.turn_events(LOCAL, posted.turn_id)]
    assert got == stored and got[1].seq == 2


@script(quick("hello", "hi there"))
async def test_another_tenants_session_and_turns_are_missing_to_it(svc):
    session = await svc.create_session(principal=LOCAL)
    document = await svc.add_document(session.id, "a.txt", b"private", principal=LOCAL)
    posted = await svc.post(LOCAL, session.id, "hello")
    await posted.done
    for attempt in (svc.session(OTHER, session.id), svc.turns(OTHER, session.id),
                    svc.post(OTHER, session.id, "hello again"),
                    svc.turn(OTHER, posted.turn_id), svc.turn_events(OTHER, posted.turn_id),
                    svc.document(OTHER, document.id), svc.documents(OTHER, session.id),
                    svc.delete_session(session.id, principal=OTHER),
                    svc.export_turn(OTHER, posted.turn_id)):
        with pytest.raises(NotFound):
            await attempt
    with pytest.raises(NotFound):
        [e async for e in svc.follow(posted.turn_id, principal=OTHER)]
    assert await svc.list_sessions(OTHER) == []
    # Its own principal still sees everything, and nothing was started or deleted.
    assert [t.id for t in await svc.turns(LOCAL, session.id)] == [posted.turn_id]
    assert [e.seq async for e in svc.follow(posted.turn_id, principal=LOCAL)]


async def test_a_reader_whose_queue_is_full_when_the_turn_ends_is_told_to_catch_up() -> None:
    """The end of a turn reaches a slow reader too: its full queue gets an overflow (it reads
    the rest from the store, where the turn has ended), never a lost end it would wait for."""
    from fleet_rlm.budget import CancelToken
    from fleet_rlm.events import NodeRef
    from fleet_rlm.sessions.live import LiveTurn, Overflow, end

    loop = asyncio.get_running_loop()
    live = LiveTurn("t1", "s1", CancelToken(), loop.create_future())
    slow, quick = asyncio.Queue(2), asyncio.Queue(2)
    live.subscribers += [slow, quick]
    stream = EventStream("t1")
    for _ in range(2):
        slow.put_nowait(stream.emit("answer_delta", NodeRef.root(), text="x"))
    end(live)
    (told,) = [slow.get_nowait()]
    assert isinstance(told, Overflow) and told.last_seq == 0
    assert quick.get_nowait() is None
