"""EventRecorder: an event-stream sink that writes a turn's events to the store.

The sink is called from whichever thread emits (RLM nodes run in worker threads); it only
serialises the event and buffers it, so emitting never waits on the database. One writer task per
store (`EventWriter`) takes what every recorder has buffered and writes it all in one transaction:
fifty busy turns cost a few commits, not fifty queued ones.

A recorder may also be given `outcome`, called on each batch of its events before they are
written; what it returns (column values of the turn, or None) is written to the turn's row in the
same transaction. The session service uses it to store a finished turn's status and answer with
its `turn_finished` event, so a client that sees that event also sees the turn closed.

    recorder = EventRecorder(store, turn.id)     # in the loop, or pass loop=
    stream.subscribe(recorder)
    ...
    await recorder.close()                       # writes what is left; raises a write error
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .db import Store

log = logging.getLogger(__name__)
Outcome = Callable[[list[dict[str, Any]]], Mapping[str, Any] | None]


class RecordableEvent(Protocol):
    seq: int
    type: str

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


class EventWriter:
    """The store's one writer of recorded events, on one event loop."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.loop = store, loop
        self._lock = threading.Lock()
        self._ready: dict[EventRecorder, None] = {}  # recorders with buffered events, in order
        self._wake = asyncio.Event()
        self._task = asyncio.run_coroutine_threadsafe(self._run(), loop)

    def ready(self, recorder: EventRecorder) -> None:
        """`recorder` has events to write (called from any thread)."""
        with self._lock:
            first = not self._ready
            self._ready[recorder] = None
        if first:  # otherwise a wake-up is already on its way
            self.loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        self._task.cancel()
        try:
            await asyncio.wrap_future(self._task)
        except asyncio.CancelledError:
            pass

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
        items = []
        for recorder, batch in batches:
            try:
                update = recorder.outcome(batch) if recorder.outcome else None
            except Exception as exc:  # noqa: BLE001 - the events are still written
                log.exception("the outcome of turn %s could not be read", recorder.turn_id)
                recorder._error = recorder._error or exc
                update = None
            items.append((recorder.turn_id, batch, update))
        try:
            await self.store.events.append_batches(items)
            errors: list[BaseException | None] = [None] * len(items)
        except Exception:  # noqa: BLE001 - one bad turn must not cost the others their events
            errors = []
            for item in items:
                try:
                    await self.store.events.append_batches([item])
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001 - kept by the recorder, raised to it
                    log.exception("lost %d events of turn %s", len(item[1]), item[0])
                    errors.append(exc)
        for (recorder, batch), error in zip(batches, errors, strict=True):
            await recorder._written_up(len(batch), error)


class EventRecorder:
    def __init__(self, store: Store, turn_id: str, *,
                 loop: asyncio.AbstractEventLoop | None = None,
                 outcome: Outcome | None = None) -> None:
        self.store = store
        self.turn_id = turn_id
        self.outcome = outcome
        self._loop = loop or asyncio.get_running_loop()
        self._writer = store.event_writer(self._loop)
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._received = 0  # events handed over, guarded by _lock
        self._written = 0  # events the writer has finished with, touched only in the loop
        self._closed = False
        self._error: BaseException | None = None
        self._progress = asyncio.Condition()

    def __call__(self, event: RecordableEvent) -> None:
        record = event.model_dump(mode="json")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"recorder for turn {self.turn_id} is closed")
            first = not self._buffer
            self._buffer.append(record)
            self._received += 1
        if first:  # a non-empty buffer is already on the writer's list
            self._writer.ready(self)

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            batch, self._buffer = self._buffer, []
        return batch

    async def _written_up(self, count: int, error: BaseException | None) -> None:
        self._error = self._error or error
        async with self._progress:
            self._written += count
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
        """Write what is buffered and stop taking events; raises the first write error."""
        with self._lock:
            self._closed = True
        await self.flush()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(
                f"recording events of turn {self.turn_id} failed: {self._error!r}"
            ) from self._error
