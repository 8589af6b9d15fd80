"""Who is asking, and which tenant's rows they may see.

Every entry point passes the session service a `Principal` (the server's authenticated user, the
MCP caller, the terminal user); the service shows a principal only its own tenant's sessions and
their turns, documents and files, and treats another tenant's as missing. The terminal user has
the database's credentials and sees every tenant (`EVERY_TENANT`).

Below that, in the database: on PostgreSQL each transaction begins by setting `fleet.tenant_id`
from `TENANT` (once `install_tenant_guard` has run), so row-level security (migration 0002) hides
other tenants' rows even from a query that forgot to filter by tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..store import LOCAL_TENANT_ID, LOCAL_USER_ID
from ..store.db import ALL_TENANTS

TENANT: ContextVar[str | None] = ContextVar("fleet_tenant", default=None)


@dataclass(frozen=True)
class Principal:
    user_id: str
    tenant_id: str  # ALL_TENANTS: every tenant's rows (the terminal user)
    name: str
    admin: bool

    def sees(self, tenant_id: str) -> bool:
        """Whether this principal may see a row of `tenant_id`."""
        return self.tenant_id in (ALL_TENANTS, tenant_id)


LOCAL = Principal(LOCAL_USER_ID, LOCAL_TENANT_ID, "local", admin=True)
# FLEET_AUTH=none: whoever reaches the port; not an admin, so no one changes settings anonymously.
ANONYMOUS = Principal(LOCAL_USER_ID, LOCAL_TENANT_ID, "local", admin=False)
# `fleet chat`: the user at the terminal holds the database's credentials and sees every tenant;
# what it creates belongs to the local user.
EVERY_TENANT = Principal(LOCAL_USER_ID, ALL_TENANTS, "local", admin=True)


def _set_tenant(connection: sa.Connection) -> None:
    tenant = TENANT.get()
    if tenant is not None and connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.set_config("fleet.tenant_id", tenant, True)))


def install_tenant_guard() -> None:
    """From now on, every PostgreSQL transaction in this process begins by setting
    fleet.tenant_id (transaction-local) to the current TENANT, if one is set. Without it,
    row-level security shows no rows."""
    if not sa.event.contains(Engine, "begin", _set_tenant):
        sa.event.listen(Engine, "begin", _set_tenant)


@contextmanager
def tenant_scope(tenant_id: str) -> Iterator[None]:
    """Run the block's database work as `tenant_id` (ALL_TENANTS: every tenant)."""
    token = TENANT.set(tenant_id)
    try:
        yield
    finally:
        TENANT.reset(token)


def act_as(principal: Principal) -> None:
    """The rest of the current task (a request, a socket) acts for the principal's tenant."""
    TENANT.set(principal.tenant_id)
