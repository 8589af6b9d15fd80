"""Notices from the other processes on the store: new events of a session's turns, and commands
for this process.

A notice is a pointer, never an event: (turn id, newest seq). Whoever follows a turn reads its
events from the store, as its tenant; a notice about another session, or naming a turn that is
not the session's, is never more than a wake-up.

- PostgreSQL: the event writer notifies the channel of each turn's session as it commits
  (`store.repos._announce`); one connection per process LISTENs to the channels of the sessions
  someone here watches, and to this process's command channel. A lost connection is made again,
  and every watch is woken (what was missed meanwhile is in the store).
- SQLite: while anything is watched, one task reads the newest seq of each watched session's
  turns whose events arrived since its last look (`POLL_S`, a query on the events' primary key),
  and whether this process has commands.

A storm of notices costs the loop a dict update each: a watch keeps the newest seq per turn and
one wake-up, however many arrive before its reader looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from ..store import Store
from ..store.leases import owner_channel, session_channel
from ..store.models import Event, Turn

log = logging.getLogger(__name__)
POLL_S = 0.1  # SQLite: how often the store is asked what changed, while something is watched
RECONNECT_S = 1.0  # PostgreSQL: the pause before the listening connection is made again


class Watch:
    """What changed in one session's turns since its reader last looked."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.newest: dict[str, int] = {}
        self.changed = asyncio.Event()

    def note(self, turn_id: str, seq: int) -> None:
        if seq > self.newest.get(turn_id, -1):
            self.newest[turn_id] = seq
            self.changed.set()

    def wake(self) -> None:
        self.changed.set()

    async def wait(self, timeout: float) -> None:
        """Until something changed (or `timeout` passed); the next wait waits for more. (No
        task of its own, as `wait_for` would make: one turn of the loop less per notice.)"""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.changed.wait()
        self.changed.clear()


class Relay:
    def __init__(self, store: Store, owner: str) -> None:
        self.store, self.owner = store, owner
        self.watches: dict[str, set[Watch]] = defaultdict(set)
        self.commands = asyncio.Event()  # set: this process may have commands to take
        self._task: asyncio.Task | None = None
        self._conn: Any = None  # PostgreSQL: the listening connection
        self._lock = asyncio.Lock()  # one operation at a time on that connection
        self._listening: set[str] = set()
        self._wanted: set[str] = set()  # channels to LISTEN on
        self._closed = False
        self._syncing: set[asyncio.Task] = set()

    @property
    def postgres(self) -> bool:
        return self.store.dialect == "postgresql"

    async def open(self) -> None:
        if self.postgres:
            self._wanted.add(owner_channel(self.owner))
            await self._connect()
            self._task = asyncio.get_running_loop().create_task(self._keep_listening())

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    async def watch(self, session_id: str) -> Watch:
        """Notices of the session's turns from now on, until `unwatch`."""
        watch = Watch(session_id)
        first = not self.watches[session_id]
        self.watches[session_id].add(watch)
        if self.postgres:
            if first:
                self._wanted.add(session_channel(session_id))
                await self._sync_channels()
        elif self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())
        return watch

    def unwatch(self, watch: Watch) -> None:
        watches = self.watches.get(watch.session_id)
        if watches is None:
            return
        watches.discard(watch)
        if not watches:
            del self.watches[watch.session_id]
            self._wanted.discard(session_channel(watch.session_id))
            if self.postgres and not self._closed:
                task = asyncio.get_running_loop().create_task(self._sync_channels())
                self._syncing.add(task)  # held until done: the loop keeps only weak references
                task.add_done_callback(self._syncing.discard)

    def _note(self, session_id: str, turn_id: str, seq: int) -> None:
        for watch in self.watches.get(session_id, ()):
            watch.note(turn_id, seq)

    def _wake_all(self) -> None:
        for watches in self.watches.values():
            for watch in watches:
                watch.wake()
        self.commands.set()

    # -- PostgreSQL ---------------------------------------------------------------------------
    async def _connect(self) -> None:
        import asyncpg

        url = self.store.url.set(drivername="postgresql")
        self._conn = await asyncpg.connect(url.render_as_string(hide_password=False),
                                           timeout=10)
        self._listening = set()
        await self._sync_channels()

    async def _sync_channels(self) -> None:
        async with self._lock:
            conn = self._conn
            if conn is None or conn.is_closed():
                return
            with contextlib.suppress(Exception):  # a lost connection is made again
                for channel in sorted(self._wanted - self._listening):
                    await conn.add_listener(channel, self._heard)
                    self._listening.add(channel)
                for channel in sorted(self._listening - self._wanted):
                    await conn.remove_listener(channel, self._heard)
                    self._listening.discard(channel)

    def _heard(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        if channel.startswith("fleet_p_"):
            self.commands.set()
            return
        session_id = channel.removeprefix("fleet_s_")
        turn_id, _, seq = payload.rpartition(":")
        if turn_id and seq.isdigit():
            self._note(session_id, turn_id, int(seq))

    async def _keep_listening(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_S)
            if self._conn is not None and not self._conn.is_closed():
                continue
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001 - the database is away: try again
                log.warning("listening for other processes' events failed: %s", exc)
                continue
            log.info("listening for other processes' events again")
            self._wake_all()

    # -- SQLite -------------------------------------------------------------------------------
    async def _poll(self) -> None:
        cursor: int | None = None
        while self.watches:
            try:
                cursor = await self._look(cursor)
            except Exception as exc:  # noqa: BLE001 - the database is away: look again
                log.warning("looking for other processes' events failed: %s", exc)
            await asyncio.sleep(POLL_S)

    async def _look(self, cursor: int | None) -> int:
        """Note the newest seq of each watched session's turns with events past `cursor` (an
        event id); returns the new cursor."""
        async with self.store.reading() as db:  # one snapshot: nothing falls between
            newest = await db.scalar(sa.select(sa.func.max(Event.id))) or 0
            if cursor is None or newest <= cursor:
                return newest
            rows = (await db.execute(
                sa.select(Turn.session_id, Event.turn_id, sa.func.max(Event.seq))
                .join(Turn, Turn.id == Event.turn_id)
                .where(Event.id > cursor, Event.id <= newest,
                       Turn.session_id.in_(list(self.watches)))
                .group_by(Turn.session_id, Event.turn_id))).all()
        for session_id, turn_id, seq in rows:
            self._note(session_id, turn_id, seq)
        return newest
