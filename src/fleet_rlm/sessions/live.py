"""Turns in flight in this process, and following a turn: its stored events, then live ones.

A turn another process runs is followed by `tail`: its events are read from the store as the
other processes' notices say it has more (`relay.py`).

Each live turn fans its events out to subscriber queues on the service's loop. A queue that fills
up (its reader fell behind) is dropped with an `Overflow` at the seq to resume from, so a slow
reader never slows the turn. `follow` owns the recovery: the backlog comes from the store, a gap
in the live events is filled from the store, and after an overflow it resubscribes and catches up
from the store, so its reader sees every event once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..budget import CancelToken
from ..events import Event, parse_event
from ..status import ACTIVE_STATUSES
from ..store import NotFound, Store
from .tenancy import TENANT

if TYPE_CHECKING:
    from .relay import Relay

SUBSCRIBER_QUEUE = 2_000
TAIL_CHECK_S = 2.0  # a turn followed from another process is read again at least this often


class Overflow(RuntimeError):
    """A subscriber fell behind: resume from its last seq."""

    def __init__(self, last_seq: int) -> None:
        super().__init__(f"too slow: resume from seq {last_seq}")
        self.last_seq = last_seq


class SessionLocks:
    """One lock per session, held while a turn of it starts or resumes: checking that the
    session is free and starting its turn are one step for that session, and a start never
    waits for another session's. A session's lock lives while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # session id -> lock, users

    @contextlib.asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(session_id) or (asyncio.Lock(), 0)
        self._locks[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[session_id]
            if users == 1:
                del self._locks[session_id]
            else:
                self._locks[session_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class LiveTurn:
    """A turn executing now in this process."""

    turn_id: str
    session_id: str
    cancel: CancelToken
    done: asyncio.Future
    tenant_id: str | None = None  # its session's: who may follow it, with no read of the store
    subscribers: list[asyncio.Queue] = field(default_factory=list)
    last_seq: int = 0
    recorder: Any = None
    finished: str | None = None  # the status turn_finished announced, once delivered


def deliver(live: LiveTurn, event: Event) -> None:
    """Hand `event` to every subscriber of the turn (on the service's loop)."""
    live.last_seq = event.seq
    if event.type == "turn_finished":
        live.finished = event.status
    for queue in list(live.subscribers):
        if queue.full():  # a slow client never slows the turn: it resumes from the store
            live.subscribers.remove(queue)
            _overflow(queue)
        else:
            queue.put_nowait(event)


def _overflow(queue: asyncio.Queue) -> None:
    """Replace a full queue's unread events with an Overflow: its reader catches up from the
    store, after the last event it read."""
    oldest_unread = queue.get_nowait()
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(Overflow(oldest_unread.seq - 1))


def end(live: LiveTurn) -> None:
    """Tell every subscriber the turn stopped. A full queue (a slow reader) gets an overflow
    in place of its unread events: it catches up from the store, where the turn has ended."""
    for queue in list(live.subscribers):
        if queue.full():
            _overflow(queue)
        else:
            queue.put_nowait(None)


def subscribe(live: LiveTurn | None) -> asyncio.Queue:
    queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_QUEUE)
    if live is not None:
        live.subscribers.append(queue)
    return queue


async def stored_events(store: Store, live: LiveTurn | None, turn_id: str, after_seq: int = 0,
                        limit: int | None = None) -> list[dict[str, Any]]:
    """The turn's stored events after `after_seq`, what it emitted so far included."""
    if live is not None:
        await live.recorder.flush()
    return [r.payload for r in await store.events.list(turn_id, after_seq=after_seq,
                                                       limit=limit)]


async def events(store: Store, turn_id: str, after_seq: int, live: LiveTurn | None,
                 queue: asyncio.Queue) -> AsyncGenerator[Event, None]:
    """The store's record after `after_seq`, then the queue's live events until the turn stops.
    Raises Overflow if the reader falls behind."""
    try:
        seen = after_seq
        # Events up to live.last_seq were delivered before we subscribed: they are in the
        # store (once flushed); everything after comes through the queue. A subscriber that
        # is already up to date skips the store, which matters when many sessions write.
        backlog = live is None or after_seq < live.last_seq
        if live is not None and backlog:
            await live.recorder.flush()
        for record in (await store.events.list(turn_id, after_seq=after_seq)
                       if backlog else []):
            event = parse_event(record.payload)
            seen = event.seq
            yield event
        if live is None:
            return
        while (item := await queue.get()) is not None:
            if isinstance(item, Overflow):
                raise item
            if item.seq > seen:
                seen = item.seq
                yield item
    finally:
        if live is not None and queue in live.subscribers:
            live.subscribers.remove(queue)


async def follow(store: Store, lives: Mapping[str, LiveTurn], turn_id: str, after_seq: int,
                 live: LiveTurn | None, queue: asyncio.Queue) -> AsyncGenerator[Event, None]:
    """Every event of the turn after `after_seq`, once each and in order, until it stops: the
    backlog from the store, then live events; a gap in them, or an overflow of the reader's
    queue, is made good from the store."""
    seen = after_seq
    while True:
        try:
            async with contextlib.aclosing(events(store, turn_id, seen, live, queue)) as stream:
                async for event in stream:
                    if event.seq > seen + 1:  # a live event went missing: the store has it
                        for payload in await stored_events(store, live, turn_id, seen,
                                                           event.seq - seen - 1):
                            missed = parse_event(payload)
                            if missed.seq > seen:
                                seen = missed.seq
                                yield missed
                    if event.seq > seen:
                        seen = event.seq
                        yield event
            return
        except Overflow:  # fell behind the live stream: the rest comes from the store
            live = lives.get(turn_id)
            queue = subscribe(live)


class Reads:
    """The store reads of every turn followed from another process, made together: the tails a
    notice (or a burst of them) wakes ask in the same turn of the loop, and one query per tenant
    answers them all, not one query per follower; so does one query answer the look-ups of the
    turns a burst of notices names for the first time. One read is in flight at a time: what is
    asked meanwhile waits for it and is answered by the next, so a busier store gets fewer,
    larger reads rather than a queue of small ones."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # per tenant: (turn id, after seq) -> its readers; turn id -> who looks it up
        self._events: dict[str | None, dict[tuple[str, int], list[asyncio.Future]]] = {}
        self._turns: dict[str | None, dict[str, list[asyncio.Future]]] = {}
        self._reading: asyncio.Task | None = None

    async def payloads(self, turn_id: str, after_seq: int) -> list[dict[str, Any]]:
        """The turn's stored events after `after_seq`, read as the caller's tenant."""
        wanted = self._events.setdefault(TENANT.get(), {})
        return await self._ask(wanted.setdefault((turn_id, after_seq), []))

    async def turn(self, turn_id: str) -> tuple[str, str]:
        """The turn's session id and status, read as the caller's tenant; NotFound if it does
        not see the turn."""
        wanted = self._turns.setdefault(TENANT.get(), {})
        return await self._ask(wanted.setdefault(turn_id, []))

    async def _ask(self, futures: list[asyncio.Future]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        futures.append(future)
        if self._reading is None:
            # In a context of its own: the reads run as each group's tenant, not the first
            # caller's.
            self._reading = loop.create_task(self._read_all(), context=contextvars.Context())
        return await future

    async def _read_all(self) -> None:
        try:
            while self._events or self._turns:
                turns, self._turns = self._turns, {}
                for tenant, looked_up in turns.items():
                    await _answer(looked_up, self._states(looked_up, tenant))
                events, self._events = self._events, {}
                for tenant, wanted in events.items():
                    await _answer(wanted, self._payloads(wanted, tenant))
        finally:
            self._reading = None

    async def _states(self, looked_up: dict[str, list[asyncio.Future]], tenant: str | None
                      ) -> dict[str, Any]:
        found = await self.store.turns.states(list(looked_up), tenant=tenant)
        return {turn_id: found.get(turn_id) or NotFound("turn", turn_id)
                for turn_id in looked_up}

    async def _payloads(self, wanted: dict[tuple[str, int], list[asyncio.Future]],
                        tenant: str | None) -> dict[tuple[str, int], Any]:
        after: dict[str, int] = {}
        for turn_id, seq in wanted:
            after[turn_id] = min(after.get(turn_id, seq), seq)
        found = await self.store.events.payloads_many(after, tenant=tenant)
        return {(turn_id, seq): [p for p in found[turn_id] if p["seq"] > seq]
                for turn_id, seq in wanted}


async def _answer(asked: Mapping[Any, list[asyncio.Future]], read: Awaitable[Mapping[Any, Any]]
                  ) -> None:
    """Give each future of `asked` its answer from `read` (an exception is raised to it), or
    the read's error."""
    try:
        answers = await read
    except Exception as exc:  # noqa: BLE001 - each asker gets it
        answers = {key: exc for key in asked}
    for key, futures in asked.items():
        for future in futures:
            if future.done():
                continue
            if isinstance(answers[key], Exception):
                future.set_exception(answers[key])
            else:
                future.set_result(answers[key])


async def tail(store: Store, reads: Reads, relay: Relay, turn_id: str, session_id: str,
               after_seq: int) -> AsyncGenerator[Event, None]:
    """Every event of a turn another process runs after `after_seq`, once each and in order,
    read from the store whenever a notice says it has more (and every TAIL_CHECK_S, in case a
    notice was lost), until its turn_finished (or, with none, until it is no longer in
    flight)."""
    watch = await relay.watch(session_id)
    try:
        seen = after_seq
        while True:
            records = await reads.payloads(turn_id, seen)
            for record in records:
                event = parse_event(record)
                seen = event.seq
                yield event
                if event.type == "turn_finished":
                    return
            if not records and (await reads.turn(turn_id))[1] not in ACTIVE_STATUSES:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + TAIL_CHECK_S
            while watch.newest.get(turn_id, 0) <= seen and (left := deadline - loop.time()) > 0:
                await watch.wait(left)
    finally:
        relay.unwatch(watch)
