"""Turn leases and commands: which process runs a turn, until when, and what others ask of it.

A `running` turn has an `owner` (the process running it) and `lease_expires`, seconds since the
epoch on the database's clock (never a process's own: replicas' clocks may disagree). The owner
renews its leases (`renew`); a turn whose lease has run out is `claim`ed by whichever process
notices first, with an update conditional on the owner and lease it saw, so exactly one process
closes it. A `waiting` turn has no owner: any process may `take_waiting` it (to resume it with
the user's answer, or to dismiss it), once.

A command (`send`) is a row addressed to the owner of a turn; the owner takes its commands
(`commands_for`) and writes each one's `result`, which the sender reads (`result`). On
PostgreSQL, sending also notifies the owner's channel (`owner_channel`), so it need not poll.

Leases and commands are every tenant's business: the methods that sweep them act for all tenants.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from ..status import TurnStatus
from .models import ALL_TENANTS, Turn, TurnCommand, utcnow

if TYPE_CHECKING:
    from .db import Store

_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def db_now(dialect: str) -> sa.ColumnElement[float]:
    """The database's clock, in seconds since the epoch."""
    return sa.literal_column(_NOW[dialect], sa.Double)


def session_channel(session_id: str) -> str:
    """The PostgreSQL channel that announces new events of a session's turns."""
    return f"fleet_s_{session_id}"


def owner_channel(owner: str) -> str:
    """The PostgreSQL channel a process hears its commands on."""
    return "fleet_p_" + hashlib.sha256(owner.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Stale:
    """A running turn some other process owns, whose lease ran out or whose owner may be gone."""

    turn_id: str
    owner: str | None
    lease_expires: float | None
    expired: bool


class LeaseRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    def _now(self) -> sa.ColumnElement[float]:
        return db_now(self._store.dialect)

    @asynccontextmanager
    async def _reading_all(self) -> AsyncIterator[AsyncSession]:
        """A reading transaction over every tenant's rows (on SQLite it never waits for a
        writer, nor they for it: these run every few hundred milliseconds)."""
        async with self._store.reading() as db:
            if self._store.dialect == "postgresql":
                await db.execute(sa.select(sa.func.set_config("fleet.tenant_id", ALL_TENANTS,
                                                              True)))
            yield db

    async def renew(self, owner: str, lease_s: float) -> set[str]:
        """Renew the leases of the turns `owner` runs; returns their ids (a turn missing from
        them is no longer the owner's: another process closed it)."""
        async with self._store.transaction(ALL_TENANTS) as db:
            result = await db.execute(
                sa.update(Turn)
                .where(Turn.owner == owner, Turn.status == TurnStatus.RUNNING.value)
                .values(lease_expires=self._now() + lease_s)
                .returning(Turn.id)
                .execution_options(synchronize_session=False))
            return set(result.scalars())

    async def stale(self, owner: str, neighbours: str) -> list[Stale]:
        """Running turns not `owner`'s whose lease ran out (or that never had one), and those
        whose owner's id starts with `neighbours` (processes this one can check are alive)."""
        expired = sa.or_(Turn.lease_expires.is_(None), Turn.lease_expires < self._now())
        async with self._reading_all() as db:
            rows = (await db.execute(
                sa.select(Turn.id, Turn.owner, Turn.lease_expires, expired)
                .where(Turn.status == TurnStatus.RUNNING.value,
                       sa.or_(Turn.owner.is_(None), Turn.owner != owner),
                       sa.or_(expired, Turn.owner.startswith(neighbours, autoescape=True)))
            )).all()
        return [Stale(*row) for row in rows]

    async def claim(self, stale: Stale, owner: str, lease_s: float) -> bool:
        """Make `owner` the owner of a stale turn if it is still as it was seen (so one process
        of those that saw it wins); the winner closes it."""
        same_owner = (Turn.owner.is_(None) if stale.owner is None
                      else Turn.owner == stale.owner)
        same_lease = (Turn.lease_expires.is_(None) if stale.lease_expires is None
                      else Turn.lease_expires == stale.lease_expires)
        async with self._store.transaction(ALL_TENANTS) as db:
            result = await db.execute(
                sa.update(Turn)
                .where(Turn.id == stale.turn_id, Turn.status == TurnStatus.RUNNING.value,
                       same_owner, same_lease)
                .values(owner=owner, lease_expires=self._now() + lease_s)
                .returning(Turn.id)
                .execution_options(synchronize_session=False))
            return result.scalar() is not None

    async def take_waiting(self, turn_id: str, owner: str, lease_s: float
                           ) -> dict[str, Any] | None:
        """Take a turn waiting on the user (it runs again, `owner`'s): its pending state, or
        None if it is not waiting (any more: another process took it)."""
        async with self._store.reading() as db:
            pending = await db.scalar(sa.select(Turn.pending).where(
                Turn.id == turn_id, Turn.status == TurnStatus.WAITING.value))
        if not pending:
            return None
        async with self._store.transaction() as db:
            taken = await db.execute(
                sa.update(Turn)
                .where(Turn.id == turn_id, Turn.status == TurnStatus.WAITING.value)
                .values(status=TurnStatus.RUNNING.value, pending=None, owner=owner,
                        lease_expires=self._now() + lease_s)
                .returning(Turn.id)
                .execution_options(synchronize_session=False))
            return pending if taken.scalar() is not None else None

    # -- commands to the owner -----------------------------------------------------------------
    async def send(self, turn_id: str, owner: str, kind: str, reason: str | None = None) -> str:
        """A command to `owner` about its turn; returns its id."""
        async with self._store.transaction() as db:
            command = TurnCommand(turn_id=turn_id, owner=owner, kind=kind, reason=reason,
                                  created_at=utcnow())
            db.add(command)
            if self._store.dialect == "postgresql":
                await db.execute(sa.select(sa.func.pg_notify(owner_channel(owner), "command")))
        return command.id

    async def commands_for(self, owner: str) -> list[TurnCommand]:
        """`owner`'s unanswered commands, oldest first."""
        async with self._reading_all() as db:
            return list(await db.scalars(
                sa.select(TurnCommand)
                .where(TurnCommand.owner == owner, TurnCommand.result.is_(None))
                .order_by(TurnCommand.created_at)))

    async def answer(self, command_id: str, result: str) -> None:
        async with self._store.transaction(ALL_TENANTS) as db:
            await db.execute(sa.update(TurnCommand).where(TurnCommand.id == command_id)
                             .values(result=result))

    async def result(self, command_id: str) -> str | None:
        """The command's answer, None while the owner has not answered."""
        async with self._store.reading() as db:
            return await db.scalar(sa.select(TurnCommand.result)
                                   .where(TurnCommand.id == command_id))

    async def owner_of(self, turn_id: str) -> tuple[str, str | None]:
        """The turn's status and owner."""
        async with self._store.reading() as db:
            row = (await db.execute(sa.select(Turn.status, Turn.owner)
                                    .where(Turn.id == turn_id))).one()
            return row[0], row[1]
