"""Live turns to every socket of a session.

Each socket has an outbox drained by its own writer task. When a turn starts (a message, or an
answer to ask_user: `svc.post`), the hub tells every socket of the session, and each is a loop
over `svc.follow` from the seq the turn started at, so all of them get the same sequence (the
service fills gaps and catches up from the store). Following moves events into the outbox
(bounded) and never waits on the network: a replay from the store waits for room, and a client
that leaves its outbox full for STALL_S gets an `overflow` socket_error frame with the seq to
resume from and stops following that turn. The turn itself never waits for anyone.

A turn another process runs in the session (a replica, `fleet chat`) reaches the sockets the same
way: while a session has sockets here, the hub watches it (`svc.watch`), and each notice of a turn
a socket is not following starts its following from the last seq that socket was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict, deque
from collections.abc import AsyncGenerator
from typing import Any

from fastapi import WebSocket

from ..events import Event
from ..sessions import NotFound, Overflow, Posted, Principal, SessionService
from .frames import ActiveTurn, SessionFrame, socket_error

log = logging.getLogger(__name__)
OUTBOX_EVENTS = 1_000
STALL_S = 10.0
WATCH_WAKE_S = 60.0  # a full outbox the client has not read from for this long: overflow


class Outbox:
    """Frames waiting for one socket. Event frames count against the bound; the few control
    frames (errors, session state) always fit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._frames: deque[tuple[dict[str, Any], bool]] = deque()
        self._events = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()

    def put(self, frame: dict[str, Any]) -> None:
        self._frames.append((frame, False))
        self._ready.set()

    async def put_event(self, frame: dict[str, Any], stall_s: float) -> bool:
        """Queue an event, waiting up to `stall_s` for room; False if the client stalled."""
        while self._events >= self.limit:
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), stall_s)
            except TimeoutError:
                return False
        self._events += 1
        self._frames.append((frame, True))
        self._ready.set()
        return True

    def drop_turn(self, turn_id: str) -> None:
        """Forget the turn's queued events (they are about to be replayed)."""
        kept = [(f, e) for f, e in self._frames if not (e and f.get("turn_id") == turn_id)]
        self._events -= len(self._frames) - len(kept)
        self._frames = deque(kept)
        self._room.set()

    async def get(self) -> dict[str, Any]:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        frame, event = self._frames.popleft()
        if event:
            self._events -= 1
            self._room.set()
        return frame


class Client:
    """One WebSocket on one session."""

    def __init__(self, svc: SessionService, ws: WebSocket, session_id: str,
                 limit: int = OUTBOX_EVENTS, stall_s: float = STALL_S) -> None:
        self.svc, self.ws, self.session_id = svc, ws, session_id
        self.outbox = Outbox(limit)
        self.stall_s = stall_s
        self.follows: dict[str, asyncio.Task] = {}
        self.seen: dict[str, int] = {}  # turn id -> the last seq sent to this socket
        self.ended: set[str] = set()  # turns this socket saw end (not just pause on the user)
        # The turn in flight when the socket joined: its `session` frame named it, and the
        # client resumes it from where it stands, so it is not followed from the start for it.
        self.waived: set[str] = set()

    def push(self, frame: dict[str, Any]) -> None:
        self.outbox.put(frame)

    def follow(self, turn_id: str, after_seq: int, *, session_id: str | None = None) -> None:
        """Send the turn's events after `after_seq` (stored, then live), replacing any earlier
        following of that turn on this socket. With `session_id`, only if the turn is of that
        session (a turn heard of from another process)."""
        previous = self.follows.pop(turn_id, None)
        if previous is not None:
            previous.cancel()
            self.outbox.drop_turn(turn_id)
        # subscribed now, before the turn emits
        events = self.svc.follow(turn_id, after_seq, session_id=session_id)
        self.follows[turn_id] = asyncio.create_task(self._pump(turn_id, after_seq, events))

    async def _pump(self, turn_id: str, after_seq: int,
                    events: AsyncGenerator[Event, None]) -> None:
        last = after_seq
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if not await self.outbox.put_event(event.model_dump(mode="json"),
                                                       self.stall_s):
                        raise Overflow(last)
                    last = self.seen[turn_id] = event.seq
                    if event.type == "turn_finished" and event.status != "waiting":
                        self.ended.add(turn_id)
        except Overflow:
            self.push(socket_error(
                "overflow", f"this client fell behind turn {turn_id}: send resume with "
                f"last_seq={last} to catch up", turn_id=turn_id, resume_from=last))
        except asyncio.CancelledError:
            raise
        except NotFound:  # a notice named a turn that is not this session's: nothing to send
            log.warning("a notice for session %s named turn %s, not of it", self.session_id,
                        turn_id)
        except Exception as exc:  # reported to the client, the socket goes on
            log.exception("following turn %s failed", turn_id)
            self.push(socket_error("internal", f"following turn {turn_id} failed: {exc}",
                                  turn_id=turn_id, resume_from=last))
        finally:
            if self.follows.get(turn_id) is asyncio.current_task():
                del self.follows[turn_id]

    async def write_loop(self) -> None:
        while True:
            frame = await self.outbox.get()
            await self.ws.send_text(json.dumps(frame, ensure_ascii=False))

    def close(self) -> None:
        for task in self.follows.values():
            task.cancel()
        self.follows.clear()


class Hub:
    """The sockets of each session, and the one place turns are started from the WebSocket."""

    def __init__(self, svc: SessionService) -> None:
        self.svc = svc
        self.clients: dict[str, set[Client]] = defaultdict(set)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._watchers: dict[str, asyncio.Task] = {}

    def join(self, client: Client) -> None:
        self.clients[client.session_id].add(client)
        if client.session_id not in self._watchers:
            self._watchers[client.session_id] = asyncio.get_running_loop().create_task(
                self._watch(client.session_id))

    def leave(self, client: Client) -> None:
        client.close()
        clients = self.clients.get(client.session_id)
        if clients is not None:
            clients.discard(client)
            if not clients:
                del self.clients[client.session_id]
                watcher = self._watchers.pop(client.session_id, None)
                if watcher is not None:
                    watcher.cancel()

    async def _watch(self, session_id: str) -> None:
        """Every socket of the session follows the turns other processes run in it (a replica,
        `fleet chat`) from where it stands, as their notices arrive."""
        watch = await self.svc.watch(session_id)
        try:
            while True:
                await watch.wait(WATCH_WAKE_S)
                for turn_id, seq in list(watch.newest.items()):
                    for client in list(self.clients.get(session_id, ())):
                        if (turn_id not in client.follows and turn_id not in client.ended
                                and turn_id not in client.waived
                                and client.seen.get(turn_id, 0) < seq):
                            client.follow(turn_id, client.seen.get(turn_id, 0),
                                          session_id=session_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the sockets still get the turns this process runs
            log.exception("watching session %s for other processes' turns failed", session_id)
        finally:
            self.svc.unwatch(watch)

    def _announce(self, session_id: str, turn_id: str, after_seq: int) -> None:
        for client in list(self.clients.get(session_id, ())):
            client.follow(turn_id, after_seq)

    def broadcast(self, session_id: str, frame: dict[str, Any]) -> None:
        for client in list(self.clients.get(session_id, ())):
            client.push(frame)

    async def post(self, user: Principal, session_id: str, text: str, **options: Any
                   ) -> Posted:
        """`svc.post`: start a turn (Busy if one is in flight) or, with `answering`, answer the
        turn's ask_user; every socket of the session follows what it started."""
        async with self._locks[session_id]:  # two sockets sending at once: one gets Busy
            posted = await self.svc.post(user, session_id, text, **options)
        self._announce(session_id, posted.turn_id, posted.after_seq)
        return posted

    async def cancel(self, user: Principal, session_id: str, turn_id: str) -> bool:
        """Cancel a running turn, or dismiss one waiting on the user; False if neither."""
        if self.svc.cancel(turn_id):
            return True
        async with self._locks[session_id]:
            stopped = await self.svc.stop(turn_id, principal=user)
        if stopped:  # a waiting turn emits nothing more: tell the sockets it is closed
            self.broadcast(session_id, await self.state(user, session_id))
        return stopped

    async def state(self, user: Principal, session_id: str) -> dict[str, Any]:
        """The `session` frame: the turn in flight, if any, and where its events stand."""
        active = await self.svc.active_turn(user, session_id)
        frame = SessionFrame(type="session", session_id=session_id,
                             active_turn=ActiveTurn(**active) if active else None)
        return frame.model_dump(mode="json")

    async def close(self) -> None:
        for watcher in self._watchers.values():
            watcher.cancel()
        for clients in list(self.clients.values()):
            for client in list(clients):
                self.leave(client)
                with contextlib.suppress(Exception):
                    await client.ws.close(code=1001, reason="server shutting down")
