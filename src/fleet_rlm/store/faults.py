"""Which failures mean the database is away for a while (down, refusing this role, locked by
someone else, its disk full) rather than that a request is wrong, and a retry that waits for it.

One place knows the drivers' codes: the server answers these with 503 and Retry-After, the event
writer keeps a turn's events until the database is back, the session service retries the writes
that close a turn.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import sqlalchemy.exc as sa_exc

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_FIRST_S, RETRY_MAX_S = 0.05, 2.0

# SQLite result codes (sqlite3.Error.sqlite_errorname, primary part) and PostgreSQL SQLSTATE
# prefixes that mean "not now": the database is down, refuses this role for the moment, is
# locked by someone else, or its disk is full. The same statement may work later.
_SQLITE_UNAVAILABLE = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL",
                       "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PROTOCOL"}
_PG_UNAVAILABLE = ("08", "53", "57P", "58", "28")
_SQLITE_FULL, _PG_FULL = "SQLITE_FULL", "53100"


def _codes(exc: BaseException) -> tuple[str, str]:
    """(SQLite error name without its extended part, PostgreSQL SQLSTATE) of a driver error."""
    orig = getattr(exc, "orig", exc)
    sqlite_name = str(getattr(orig, "sqlite_errorname", "") or "")
    sqlite_primary = next((name for name in _SQLITE_UNAVAILABLE
                           if sqlite_name == name or sqlite_name.startswith(name + "_")), "")
    return sqlite_primary, str(getattr(orig, "sqlstate", "") or "")


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the store cannot be reached or written just now (rather than that the
    request is wrong): worth answering 503 and retrying later."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlite_name, sqlstate = _codes(exc)
        return bool(sqlite_name) or sqlstate.startswith(_PG_UNAVAILABLE)
    raw_sqlstate = getattr(exc, "sqlstate", None)  # asyncpg's own, unwrapped (pgevents.py)
    if isinstance(raw_sqlstate, str):
        return raw_sqlstate.startswith(_PG_UNAVAILABLE)
    if isinstance(exc, OSError):  # refused or reset connections, a full disk under the blobs
        return isinstance(exc, ConnectionError | TimeoutError) or exc.errno in (
            errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ECONNREFUSED,
            errno.EHOSTUNREACH, errno.ENETUNREACH)
    return False


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the database's (or the blobs') disk is full."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    sqlite_name, sqlstate = _codes(exc)
    return sqlite_name == _SQLITE_FULL or sqlstate == _PG_FULL


def backoff() -> Iterator[float]:
    """Delays between attempts: doubling from RETRY_FIRST_S up to RETRY_MAX_S, for ever."""
    delay = RETRY_FIRST_S
    while True:
        yield delay
        delay = min(delay * 2, RETRY_MAX_S)


async def until_available(write: Callable[[], Awaitable[T]], what: str) -> T:
    """`await write()`, again after a pause each time it fails because the database is
    unavailable; any other failure is raised."""
    delays = backoff()
    while True:
        try:
            return await write()
        except Exception as exc:
            if not unavailable(exc):
                raise
            delay = next(delays)
            log.warning("%s: the database is unavailable (%s); retrying in %.2f s", what,
                        type(exc).__name__, delay)
            await asyncio.sleep(delay)
