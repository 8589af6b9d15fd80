"""EventRecorder: an event-stream sink that writes a turn's events to the store.

The sink is called from whichever thread emits (RLM nodes run in worker threads); it only
serialises the event and buffers it, so emitting never waits on the database. One writer task per
store (`EventWriter`) takes what every recorder has buffered and writes it all in one transaction:
fifty busy turns cost a few commits, not fifty queued ones.

A recorder may also be given `outcome`, called on each batch of its events before they are
written; what it returns (column values of the turn, or None) is written to the turn's row in the
same transaction. The session service uses it to store a finished turn's status and answer with
its `turn_finished` event, so a client that sees that event also sees the turn closed.

While the database is unavailable (down, locked, its disk full) the writer keeps every batch
and tries again until it is back: nothing is lost. A recorder keeps at most `max_buffered` events
(and `max_buffered_chars` characters of their text) unwritten; past that bound, or as soon as
the disk is found full, it stops taking events (they are counted as lost), calls `on_fault` (the
session service ends the turn) and `close()` raises `RecordingLost` once what it kept is
written.

Each recorder writes under its own turn's tenant (`tenant`): on PostgreSQL row-level security
would reject a batch written under another's.

    recorder = EventRecorder(store, turn.id, tenant=session.tenant_id)  # in the loop, or loop=
    stream.subscribe(recorder)
    ...
    await recorder.close()          # writes what is left; raises a write error or RecordingLost
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from itertools import groupby
from typing import TYPE_CHECKING, Any, Protocol

from .faults import backoff, disk_full, unavailable

if TYPE_CHECKING:
    from .db import Store

log = logging.getLogger(__name__)
Outcome = Callable[[list[dict[str, Any]]], Mapping[str, Any] | None]
MAX_BUFFERED = 20_000  # unwritten events a recorder keeps while the database is unavailable
MAX_BUFFERED_CHARS = 32 * 2**20  # and the characters of their text, at most


def _chars(records: list[dict[str, Any]]) -> int:
    """The characters of the records' text fields: what holding them costs, nearly."""
    return sum(len(value) for record in records for value in record.values()
               if isinstance(value, str))


class RecordingLost(RuntimeError):
    """Events of a turn were not recorded: the database stayed away past the buffer's bound, or
    its disk was full. What was kept before is written."""

    def __init__(self, turn_id: str, lost: int, reason: str) -> None:
        super().__init__(turn_id, lost, reason)
        self.turn_id, self.lost, self.reason = turn_id, lost, reason

    def __str__(self) -> str:
        return f"{self.lost} events of turn {self.turn_id} were not recorded: {self.reason}"


class RecordableEvent(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> str: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


class EventWriter:
    """The store's one writer of recorded events, on one event loop."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.loop = store, loop
        self._lock = threading.Lock()
        self._ready: dict[EventRecorder, None] = {}  # recorders with buffered events, in order
        self._wake = asyncio.Event()
        self.stalled = False  # holding batches the database could not take just now
        self._retry = asyncio.Event()  # set: try those again now, not after the pause
        self._task = asyncio.run_coroutine_threadsafe(self._run(), loop)

    def ready(self, recorder: EventRecorder) -> None:
        """`recorder` has events to write (called from any thread)."""
        with self._lock:
            first = not self._ready
            self._ready[recorder] = None
        if first:  # otherwise a wake-up is already on its way
            self.loop.call_soon_threadsafe(self._wake.set)

    def retry_now(self) -> None:
        """Someone waits for the writes: if the writer pauses for the database, try now."""
        self._retry.set()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wrap_future(self._task)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                ready, self._ready = list(self._ready), {}
            batches = [(recorder, batch) for recorder in ready if (batch := recorder._take())]
            if batches:
                await self._write(batches)

    async def _write(self, batches: list[tuple[EventRecorder, list[dict[str, Any]]]]) -> None:
        """Write the batches; those the database cannot take just now are kept and tried again
        until it can (later events of their turns wait behind them, in order)."""
        items = []
        for recorder, batch in batches:
            try:
                update = recorder.outcome(batch) if recorder.outcome else None
            except Exception as exc:  # the events are still written
                log.exception("the outcome of turn %s could not be read", recorder.turn_id)
                recorder._error = recorder._error or exc
                update = None
            items.append((recorder, batch, update))
        items.sort(key=lambda item: item[0].tenant or "")  # one transaction per tenant
        delays = backoff()
        while items:
            waiting = []
            for item, error in zip(items, await self._attempt(items), strict=True):
                recorder, batch, _ = item
                if error is not None and unavailable(error):
                    if disk_full(error):
                        recorder._fault("the database's disk is full")
                    waiting.append(item)
                else:
                    await recorder._written_up(batch, error)
            self.stalled = bool(waiting)
            if waiting:
                delay = next(delays)
                log.warning("the database is unavailable: %d turns keep their events, "
                            "retrying in %.2f s", len(waiting), delay)
                self._retry.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry.wait(), delay)
            items = waiting

    async def _attempt(self, items: list[tuple[EventRecorder, list[dict[str, Any]], Any]]
                       ) -> list[BaseException | None]:
        """One try at writing `items`: one transaction per tenant, and when one fails for
        another reason than an unavailable database, one per turn, so one bad turn does not
        cost the others their events. The error of each item, or None."""
        errors: list[BaseException | None] = []
        for tenant, grouped in groupby(items, key=lambda item: item[0].tenant):
            group = list(grouped)
            try:
                await self.store.events.append_batches(
                    [(r.turn_id, batch, update) for r, batch, update in group], tenant=tenant,
                    owners={r.turn_id: r.owner for r, _, _ in group if r.owner})
                errors += [None] * len(group)
                continue
            except Exception as exc:  # noqa: BLE001 - sorted out below
                if unavailable(exc) or len(group) == 1:
                    errors += [exc] * len(group)
                    continue
            for recorder, batch, update in group:
                try:
                    await self.store.events.append_batches(
                        [(recorder.turn_id, batch, update)], tenant=tenant,
                        owners={recorder.turn_id: recorder.owner} if recorder.owner else None)
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001 - kept by the recorder, raised to it
                    errors.append(exc)
        for (recorder, batch, _), error in zip(items, errors, strict=True):
            if error is not None and not unavailable(error):
                log.error("lost %d events of turn %s: %r", len(batch), recorder.turn_id, error)
        return errors


class EventRecorder:
    def __init__(self, store: Store, turn_id: str, *, tenant: str | None = None,
                 loop: asyncio.AbstractEventLoop | None = None,
                 outcome: Outcome | None = None, max_buffered: int = MAX_BUFFERED,
                 max_buffered_chars: int = MAX_BUFFERED_CHARS,
                 on_fault: Callable[[RecordingLost], None] | None = None,
                 owner: str | None = None) -> None:
        """`owner`: the process running the turn (its lease's owner): once another process
        owns the turn (it closed it), no more of its events are written."""
        self.store = store
        self.owner = owner
        self.turn_id = turn_id
        self.tenant = tenant
        self.outcome = outcome
        self.max_buffered, self.max_buffered_chars = max_buffered, max_buffered_chars
        self.on_fault = on_fault
        self._loop = loop or asyncio.get_running_loop()
        self._writer = store.event_writer(self._loop)
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._received = 0  # events handed over, guarded by _lock
        self._written = 0  # events the writer has finished with, touched only in the loop
        self._unwritten_chars = 0  # text held in events not yet written, guarded by _lock
        self._closed = False
        self._error: BaseException | None = None
        self._lost: RecordingLost | None = None  # set once events are refused; guarded by _lock
        self.last_seq = 0  # the highest seq handed over, kept or not
        self.disowned: str | None = None  # why this turn's events are no longer ours to write
        self._progress = asyncio.Condition()

    def __call__(self, event: RecordableEvent) -> None:
        record = event.model_dump(mode="json")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"recorder for turn {self.turn_id} is closed")
            self.last_seq = max(self.last_seq, record["seq"])
            if self.disowned is not None:
                return
            chars = _chars([record])
            if self._lost is None and (
                    self._received - self._written >= self.max_buffered
                    or self._unwritten_chars + chars > self.max_buffered_chars):
                self._lose(f"the database was unavailable for longer than {self.max_buffered} "
                           f"events or {self.max_buffered_chars} characters could wait")
            if self._lost is not None:
                self._lost.lost += 1
                return
            first = not self._buffer
            self._buffer.append(record)
            self._received += 1
            self._unwritten_chars += chars
        if first:  # a non-empty buffer is already on the writer's list
            self._writer.ready(self)

    def disown(self, reason: str) -> None:
        """Another process closed this turn (its lease ran out): its record is that process's
        now, so events from here on, and those not yet handed to the writer, are not written."""
        with self._lock:
            self.disowned = reason
            dropped, self._buffer = self._buffer, []
            self._received -= len(dropped)
            self._unwritten_chars -= _chars(dropped)
        log.warning("turn %s: %s; %d events not written", self.turn_id, reason, len(dropped))

    @property
    def stalled(self) -> bool:
        """Whether the store's writer waits for the database to come back."""
        return self._writer.stalled

    def retry_now(self) -> None:
        self._writer.retry_now()

    @property
    def incomplete(self) -> bool:
        """Whether some events were refused or could not be written: the turn's outcome may
        not be among those stored (the session service closes its record when it stops)."""
        return self._error is not None or (self._lost is not None and self._lost.lost > 0)

    def _lose(self, reason: str) -> None:
        """Refuse events from now on; on_fault hears of it in the loop. Called with _lock held."""
        self._lost = RecordingLost(self.turn_id, 0, reason)
        log.error("turn %s: %s; it ends as failed", self.turn_id, reason)
        if self.on_fault is not None:
            self._loop.call_soon_threadsafe(self.on_fault, self._lost)

    def _fault(self, reason: str) -> None:
        with self._lock:
            if self._lost is None:
                self._lose(reason)

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            batch, self._buffer = self._buffer, []
        return batch

    async def _written_up(self, batch: list[dict[str, Any]], error: BaseException | None
                          ) -> None:
        self._error = self._error or error
        with self._lock:
            self._unwritten_chars -= _chars(batch)
        async with self._progress:
            self._written += len(batch)
            self._progress.notify_all()

    async def flush(self) -> None:
        """Return once every event received before the call is written; raises the first
        write error."""
        with self._lock:
            target = self._received
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target)
        self._raise_error()

    async def close(self) -> None:
        """Write what is buffered and stop taking events; raises the first write error, or
        RecordingLost if events were refused."""
        with self._lock:
            self._closed = True
        await self.flush()
        if self._lost is not None and self._lost.lost:
            raise self._lost

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(
                f"recording events of turn {self.turn_id} failed: {self._error!r}"
            ) from self._error
