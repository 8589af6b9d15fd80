"""The session service, the only door of the entry points (the server, `fleet chat`, the MCP
server) to sessions, turns and the store.

    service.py    SessionService: post, follow, the reads, tenancy from a Principal
    live.py       turns in flight in this process: fan-out to subscribers, following a turn
    sandboxes.py  each session's persistent sandbox and workspace, saved and restored
    records.py    a turn's outcome and the closing events of turns no engine runs any more
    tenancy.py    Principal, and the tenant the store's transactions act for (row security)
    inspector.py  the trace inspector's reads: a call's request and reply, turn search, usage
    imports.py    logs of other tools (the RLM reference implementation's) as read-only sessions

The store's errors and row types the entry points meet are re-exported here, so they need not
import the store.
"""

from ..store import Conflict, NotFound
from ..store import Document as DocumentRow
from ..store import Session as SessionRow
from ..store import Turn as TurnRow
from ..store.db import ALL_TENANTS
from ..store.faults import disk_full, unavailable
from .live import SUBSCRIBER_QUEUE, LiveTurn, Overflow
from .records import TurnOutcome
from .sandboxes import LOST_VARIABLES, RESTORE_STATE, SAVE_STATE, WORKSPACE_DIRS, SandboxPool
from .service import (
    LIMIT_KEYS,
    SETTLE_S,
    STALLED_WAIT_S,
    Busy,
    LimitRaised,
    Posted,
    ReadOnly,
    SessionService,
    StoreSession,
)
from .tenancy import (
    ANONYMOUS,
    EVERY_TENANT,
    LOCAL,
    TENANT,
    Principal,
    act_as,
    install_tenant_guard,
    tenant_scope,
)

__all__ = [
    "ALL_TENANTS",
    "ANONYMOUS",
    "EVERY_TENANT",
    "LIMIT_KEYS",
    "LOCAL",
    "LOST_VARIABLES",
    "RESTORE_STATE",
    "SAVE_STATE",
    "SETTLE_S",
    "STALLED_WAIT_S",
    "SUBSCRIBER_QUEUE",
    "TENANT",
    "WORKSPACE_DIRS",
    "Busy",
    "Conflict",
    "DocumentRow",
    "LimitRaised",
    "LiveTurn",
    "NotFound",
    "Overflow",
    "Posted",
    "Principal",
    "ReadOnly",
    "SandboxPool",
    "SessionRow",
    "SessionService",
    "StoreSession",
    "TurnOutcome",
    "TurnRow",
    "act_as",
    "disk_full",
    "install_tenant_guard",
    "tenant_scope",
    "unavailable",
]
