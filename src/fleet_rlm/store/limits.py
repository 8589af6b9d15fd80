"""A tenant's own budget limits: one row per tenant, row-level security like its sessions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError

from .errors import NotFound
from .models import TenantLimits, utcnow
from .repos import _Repo, dialect_insert


class TenantLimitsRepo(_Repo):
    async def get(self, tenant_id: str) -> dict[str, Any]:
        """The limits the tenant set (name -> value); {} when it set none. Under row-level
        security another tenant's row reads as none."""
        async with self._store.reading() as db:
            row = await db.get(TenantLimits, tenant_id)
        return dict(row.limits) if row is not None else {}

    async def set(self, tenant_id: str, limits: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the tenant's limits with `limits` (checked by the caller against the
        server's). Under row-level security another tenant's row cannot be written."""
        values = dict(limits)
        try:
            async with self._store.transaction() as db:
                stmt = dialect_insert(db, TenantLimits).values(
                    tenant_id=tenant_id, limits=values, updated_at=utcnow())
                await db.execute(stmt.on_conflict_do_update(
                    index_elements=["tenant_id"],
                    set_={"limits": stmt.excluded.limits,
                          "updated_at": stmt.excluded.updated_at}))
        except IntegrityError:
            raise NotFound("tenant", tenant_id) from None
        return values
