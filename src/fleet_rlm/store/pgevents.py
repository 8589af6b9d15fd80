"""PostgreSQL's short path for live events: the event writer's batches and the followers' reads,
each one statement on a connection of its own.

A turn's events cross processes through the store: the owner writes a batch and announces it
(NOTIFY), a follower reads it back. Through the pooled ORM a batch cost seven round trips (a
pool ping, BEGIN, the tenant, the owners' lock, the insert, the notices, COMMIT) and a read
five, and each round trip waits for the event loop, which on a busy machine shares the
interpreter with the threads running turns. Here a batch is one statement, run as its own
transaction: it locks its turns' rows, keeps only the turns their writer still owns, inserts
their events, applies the turn updates and notifies each turn's session channel; PostgreSQL
delivers the notices at commit, after the events are durable (`synchronous_commit` as the
server has it: on by default), so no process hears of an event it cannot read. A read is one
statement for every turn a burst of notices woke.

Each connection acts for one tenant at a time: `fleet.tenant_id` is set on it (for the session,
not one transaction) whenever the next statement is for another tenant, so row-level security
binds each statement as it binds the pooled ones. A connection that fails is closed and made
again for the next statement: its state (the tenant set) is never guessed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..status import ACTIVE_STATUSES
from .models import Turn, storable, utcnow

if TYPE_CHECKING:
    import asyncpg
    import sqlalchemy as sa

# The turn columns an update may set (read from its JSON by jsonb_populate_record).
_COLUMNS = frozenset(column.name for column in Turn.__table__.columns) - {"id", "session_id"}

_APPEND = """
WITH owned AS (
    SELECT t.id, t.session_id FROM turns t
    JOIN unnest($1::text[], $2::text[]) AS o(id, owner) ON o.id = t.id
    WHERE o.owner IS NULL OR t.owner = o.owner
    FOR UPDATE OF t
), added AS (
    INSERT INTO events (turn_id, seq, type, payload, created_at)
    SELECT x.turn_id, x.seq, x.type, x.payload::jsonb, $7::timestamptz
    FROM unnest($3::text[], $4::int[], $5::text[], $6::text[]) AS x(turn_id, seq, type, payload)
    WHERE x.turn_id IN (SELECT id FROM owned)
    ON CONFLICT (turn_id, seq) DO NOTHING
    RETURNING 1
), told AS (
    SELECT pg_notify('fleet_s_' || o.session_id, o.id || ':' || n.seq)
    FROM owned o JOIN (SELECT turn_id, max(seq) AS seq FROM unnest($3::text[], $4::int[])
                       AS x(turn_id, seq) GROUP BY turn_id) n ON n.turn_id = o.id
){updated}
SELECT (SELECT coalesce(array_agg(id), '{{}}') FROM owned), (SELECT count(*) FROM added),
       (SELECT count(*) FROM told){counted}
"""
_UPDATED = """, updated AS (
    UPDATE turns t SET {assignments}
    FROM unnest($8::text[], $9::jsonb[]) AS u(id, value),
         jsonb_populate_record(NULL::turns, u.value) AS r
    WHERE t.id = u.id AND t.id IN (SELECT id FROM owned) AND t.status = ANY($10::text[])
    RETURNING 1
)"""

_READ = """
SELECT e.turn_id, e.payload::text FROM events e
JOIN unnest($1::text[], $2::int[]) AS w(turn_id, after) ON e.turn_id = w.turn_id
WHERE e.seq > w.after
ORDER BY e.turn_id, e.seq
"""

_STATES = "SELECT id, session_id, status FROM turns WHERE id = ANY($1::text[])"


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat())


class _Connection:
    """One connection used by one statement at a time, acting for one tenant at a time."""

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self._conn: asyncpg.Connection | None = None
        self._tenant: str | None = None
        self._lock = asyncio.Lock()

    async def fetchrow(self, tenant: str, query: str, *args: Any) -> Any:
        async with self._lock:
            return await self._run(tenant, lambda conn: conn.fetchrow(query, *args))

    async def fetch(self, tenant: str, query: str, *args: Any) -> list[Any]:
        async with self._lock:
            return await self._run(tenant, lambda conn: conn.fetch(query, *args))

    async def _run(self, tenant: str, statement: Any) -> Any:
        try:
            if self._conn is None or self._conn.is_closed():
                import asyncpg

                self._tenant = None
                self._conn = await asyncpg.connect(
                    self.url.set(drivername="postgresql").render_as_string(hide_password=False),
                    timeout=10)
            if self._tenant != tenant:
                await self._conn.execute("SELECT set_config('fleet.tenant_id', $1, false)",
                                         tenant)
                self._tenant = tenant
            return await statement(self._conn)
        except BaseException as exc:
            lost = self._conn is None or self._conn.is_closed()
            await self.close()  # its state is unknown: the next statement makes another
            if lost and isinstance(exc, Exception) and getattr(exc, "sqlstate", None) is None:
                # asyncpg's client-side errors of a connection the server ended: an outage
                raise ConnectionError(f"the database connection was lost: {exc!r}") from exc
            raise

    async def close(self) -> None:
        conn, self._conn, self._tenant = self._conn, None, None
        if conn is not None:
            conn.terminate()


class PgEvents:
    """The writer's and the followers' connections of one store."""

    def __init__(self, url: sa.URL) -> None:
        self._writer = _Connection(url)
        self._reader = _Connection(url)

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()

    async def append(self, tenant: str,
                     items: Iterable[tuple[str, Iterable[Mapping[str, Any]],
                                           Mapping[str, Any] | None]],
                     owners: Mapping[str, str] | None) -> tuple[set[str], int]:
        """Write `items` (turn id, events, turn update) as `tenant`, in one transaction; a turn
        whose owner in `owners` no longer owns it gets nothing. Returns the turns written (those
        that exist, are visible to the tenant and, where `owners` names them, still owned) and
        how many events were new."""
        turn_ids, turn_owners = [], []
        turns, seqs, types, payloads = [], [], [], []
        update_ids, update_values, columns = [], [], set()
        for turn_id, events, update in items:
            turn_ids.append(turn_id)
            turn_owners.append((owners or {}).get(turn_id))
            for event in events:
                turns.append(turn_id)
                seqs.append(event["seq"])
                types.append(event["type"])
                payloads.append(_json(storable(dict(event))))
            if update:
                unknown = set(update) - _COLUMNS
                if unknown:
                    raise ValueError(f"not turn columns: {sorted(unknown)}")
                update_ids.append(turn_id)
                update_values.append(_json(storable(dict(update))))
                columns |= set(update)
        args: list[Any] = [turn_ids, turn_owners, turns, seqs, types, payloads, utcnow()]
        updated = counted = ""
        if update_ids:
            assignments = ", ".join(
                f'"{c}" = CASE WHEN u.value ? \'{c}\' THEN r."{c}" ELSE t."{c}" END'
                for c in sorted(columns))
            updated = _UPDATED.format(assignments=assignments)
            counted = ", (SELECT count(*) FROM updated)"
            args += [update_ids, update_values, list(ACTIVE_STATUSES)]
        row = await self._writer.fetchrow(
            tenant, _APPEND.format(updated=updated, counted=counted), *args)
        return set(row[0]), row[1]

    async def payloads(self, tenant: str, wanted: Mapping[str, int]
                       ) -> dict[str, list[dict[str, Any]]]:
        """The stored events of each turn in `wanted` after the seq it gives, read as
        `tenant`, in seq order."""
        found: dict[str, list[dict[str, Any]]] = {turn_id: [] for turn_id in wanted}
        for turn_id, payload in await self._reader.fetch(
                tenant, _READ, list(wanted), list(wanted.values())):
            found[turn_id].append(json.loads(payload))
        return found

    async def states(self, tenant: str, turn_ids: list[str]) -> dict[str, tuple[str, str]]:
        """(session id, status) of each of the turns that exists, read as `tenant`."""
        return {turn_id: (session_id, status) for turn_id, session_id, status
                in await self._reader.fetch(tenant, _STATES, turn_ids)}
