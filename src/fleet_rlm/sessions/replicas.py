"""What one process owes the others on the same store: it renews the leases of the turns it runs,
closes the turns of processes that are gone, and answers the commands sent to it.

Every process (`fleet web` replicas, `fleet chat`, the MCP server) runs turns as their `owner`
with a lease of `FLEET_TURN_LEASE_S` (30 s) on the database's clock, renewed every third of it.
Every sixth of it, each process looks for running turns whose lease ran out, and for turns of
processes on this machine (same kernel, same pid namespace) that no longer exist; it claims each
with a conditional update, so exactly one process closes it: its closing events (an
`Interrupted` error, `turn_finished` interrupted) and its row. A turn of a process killed on
another machine is therefore closed within 1⅙ leases; one on this machine within a sixth.

A process whose lease renewal finds a turn it runs no longer its own (the database was away
longer than the lease and another process closed it) stops that turn.

A cancel for a turn another process runs is a command row addressed to its owner; the owner
takes its commands (woken by NOTIFY on PostgreSQL, polling on SQLite while it runs turns),
cancels, and writes the result, which the sender waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..status import TurnStatus
from ..store import NotFound
from ..store.db import INTERRUPTED
from ..store.leases import Stale
from .live import Reads
from .records import close_failed
from .relay import POLL_S, Relay
from .tenancy import tenant_scope

if TYPE_CHECKING:
    from .service import SessionService

log = logging.getLogger(__name__)
COMMAND_WAIT_S = 10.0  # longest wait for the owner of a turn to answer a command
COMMAND_RESULT_POLL_S = 0.05


class OwnerUnreachable(RuntimeError):
    """The process running a turn did not answer a command in time (it may be gone: then its
    turn is closed as interrupted once its lease runs out)."""

    def __init__(self, turn_id: str, waited_s: float, lease_s: float) -> None:
        super().__init__(
            f"the process running turn {turn_id} did not answer within {waited_s:g} s; if it "
            f"is gone, the turn is closed as interrupted within {lease_s * 7 / 6:g} s "
            f"(FLEET_TURN_LEASE_S)")
        self.turn_id = turn_id


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


def neighbourhood() -> str:
    """This machine and pid namespace: processes whose owner id starts with it are ones
    `os.kill(pid, 0)` can see."""
    try:
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pidns = "?"
    return f"{socket.gethostname()[:40]}/{_read('/proc/sys/kernel/random/boot_id')}/{pidns}/"


def owner_id() -> str:
    """This process's id as the owner of turns: its neighbourhood, pid, and a random tag (a
    reused pid is another owner)."""
    return f"{neighbourhood()}{os.getpid()}/{secrets.token_hex(4)}"


def gone(owner: str | None, neighbours: str) -> bool:
    """Whether `owner` is a process of this neighbourhood that no longer exists."""
    if owner is None or not owner.startswith(neighbours):
        return False
    pid = owner[len(neighbours):].split("/")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: alive
        return False
    return False


class Replicas:
    def __init__(self, service: SessionService) -> None:
        self.service = service
        self.store = service.store
        self.lease_s = service.settings.turn_lease_s
        self.owner = owner_id()
        self.neighbours = neighbourhood()
        self.relay = Relay(self.store, self.owner)
        self.reads = Reads(self.store)  # what followers of other processes' turns read
        self._tasks: list[asyncio.Task] = []

    async def open(self) -> None:
        await self.relay.open()
        with tenant_scope("*"):
            await self.sweep()
            loop = asyncio.get_running_loop()
            for job in (self._renew, self._sweep, self._commands):
                self._tasks.append(loop.create_task(self._forever(job)))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.relay.close()

    async def _forever(self, job: Callable) -> None:
        while True:
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database away: next round
                log.warning("%s failed: %s", job.__name__.strip("_"), exc)
                await asyncio.sleep(1.0)

    # -- leases -------------------------------------------------------------------------------
    async def _renew(self) -> None:
        await asyncio.sleep(self.lease_s / 3)
        running = list(self.service.live.values())
        if not running:
            return
        mine = await self.store.leases.renew(self.owner, self.lease_s)
        for live in running:
            if live.turn_id not in mine and live.finished is None:
                log.error("turn %s was closed by another process (its lease ran out while the "
                          "database was away); stopping it", live.turn_id)
                reason = "another process closed this turn: its lease ran out"
                live.recorder.disown(reason)
                live.cancel.cancel(reason)

    async def _sweep(self) -> None:
        await asyncio.sleep(self.lease_s / 6)
        await self.sweep()

    async def sweep(self) -> list[str]:
        """Close the turns whose owner is gone; returns their ids."""
        closed = []
        for stale in await self.store.leases.stale(self.owner, self.neighbours):
            if not (stale.expired or gone(stale.owner, self.neighbours)):
                continue
            if await self.store.leases.claim(stale, self.owner, self.lease_s):
                await self._close(stale)
                closed.append(stale.turn_id)
        if closed:
            log.warning("%d turn(s) whose process stopped are closed as interrupted: %s",
                        len(closed), ", ".join(closed))
        return closed

    async def _close(self, stale: Stale) -> None:
        try:
            usage = await close_failed(self.store, self.service.settings, stale.turn_id,
                                       "Interrupted", INTERRUPTED,
                                       status=TurnStatus.INTERRUPTED)
            await self.store.turns.finish(stale.turn_id, TurnStatus.INTERRUPTED, usage=usage,
                                          error=INTERRUPTED)
        except NotFound:  # deleted meanwhile
            pass

    # -- commands -----------------------------------------------------------------------------
    async def _commands(self) -> None:
        if self.relay.postgres:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.relay.commands.wait(), 2.0)
            self.relay.commands.clear()
        else:
            await asyncio.sleep(POLL_S)
            if not self.service.live:  # commands come only to a process running turns
                return
        for command in await self.store.leases.commands_for(self.owner):
            if command.kind == "cancel":
                done = self.service.cancel(command.turn_id, command.reason)
                result = "cancelled" if done else "not_running"
            else:
                result = "unknown"
            await self.store.leases.answer(command.id, result)

    async def cancel(self, turn_id: str, owner: str, reason: str) -> bool:
        """Ask `owner` to cancel its turn; True once it did, False if the turn no longer ran
        there; OwnerUnreachable if it did not answer."""
        command_id = await self.store.leases.send(turn_id, owner, "cancel", reason)
        deadline = asyncio.get_running_loop().time() + COMMAND_WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            result = await self.store.leases.result(command_id)
            if result is not None:
                return result == "cancelled"
            await asyncio.sleep(COMMAND_RESULT_POLL_S)
        status, now_owner = await self.store.leases.owner_of(turn_id)
        if status != TurnStatus.RUNNING or now_owner != owner:
            return False  # it ended meanwhile (or its owner's lease ran out)
        raise OwnerUnreachable(turn_id, COMMAND_WAIT_S, self.lease_s)
