"""EventRecorder: an event-stream sink that writes a turn's events to the store in batches.

The sink is called from whichever thread emits (RLM nodes run in worker threads); it only
serialises the event and hands it to a writer task on the store's event loop, so emitting never
waits on the database.

    recorder = EventRecorder(store, turn.id)     # in the loop, or pass loop=
    stream.subscribe(recorder)
    ...
    await recorder.close()                       # writes what is left; raises a write error
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .db import Store

log = logging.getLogger(__name__)


class RecordableEvent(Protocol):
    seq: int
    type: str

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


class EventRecorder:
    def __init__(self, store: Store, turn_id: str, *,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.store = store
        self.turn_id = turn_id
        self._loop = loop or asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._received = 0  # events handed over, guarded by _lock
        self._written = 0  # events the writer has finished with, touched only in the loop
        self._closed = False
        self._error: BaseException | None = None
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._writer = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    def __call__(self, event: RecordableEvent) -> None:
        record = event.model_dump(mode="json")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"recorder for turn {self.turn_id} is closed")
            first = not self._buffer
            self._buffer.append(record)
            self._received += 1
        if first:  # a non-empty buffer already has a wake-up on its way
            self._loop.call_soon_threadsafe(self._wake.set)

    async def flush(self) -> None:
        """Return once every event received before the call is written; raises the first
        write error."""
        with self._lock:
            target = self._received
        self._wake.set()
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._written >= target or self._writer.done())
        self._raise_error()

    async def close(self) -> None:
        """Write what is buffered and stop; raises the first write error."""
        with self._lock:
            self._closed = True
        self._wake.set()
        await asyncio.wrap_future(self._writer)
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(
                f"recording events of turn {self.turn_id} failed: {self._error!r}"
            ) from self._error

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._buffer = self._buffer, []
                closing = self._closed and not batch
            if batch:
                try:
                    await self.store.events.append_many(self.turn_id, batch)
                except Exception as exc:
                    log.exception("lost %d events of turn %s", len(batch), self.turn_id)
                    self._error = self._error or exc
                async with self._progress:
                    self._written += len(batch)
                    self._progress.notify_all()
            if closing:
                async with self._progress:
                    self._progress.notify_all()
                return
            if self._closed:
                self._wake.set()  # drain the rest before stopping
