"""The store for command-line tools that run no turns (`fleet export`, `fleet daytona gc`, the
server's start-up checks): every tenant's rows, since the terminal user holds the database's
credentials; no crash recovery, no sandboxes, and no database is made where there is none."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..config import Settings
from ..store import LOCAL_TENANT_ID, NotFound, Session, Store, Tenant, database_url
from ..store.db import ALL_TENANTS

if TYPE_CHECKING:
    from ..engine.programs import Program
    from ..export import ExportFormat
    from .programs import Programs


def database_label(settings: Settings) -> str:
    """The configured database's URL, without its password."""
    return database_url(settings.database_url, settings.data_dir).render_as_string(
        hide_password=True)


async def export(settings: Settings, kind: str, id: str, format: ExportFormat = "json") -> str:
    """The turn (`kind` "turn") or session ("session") as JSON or Markdown; NotFound if there
    is none (or no database yet)."""
    from . import exports

    async with Store.from_settings(settings, tenant=ALL_TENANTS) as store:
        if await store.current() is None:  # no database yet, so nothing to export
            raise NotFound(kind, id)
        write = exports.export_session if kind == "session" else exports.export_turn
        return await write(store, id, format)


async def import_rlm_log(settings: Settings, path: Path, title: str | None = None
                         ) -> tuple[str, list[str]]:
    """A reference-implementation log as a read-only session of the local user: its id and
    its turns' ids. RlmLogError (nothing stored) on a log this reader does not take."""
    from .imports import import_rlm_log as store_log

    async with Store.from_settings(settings, tenant=ALL_TENANTS) as store:
        await store.prepare()
        await store.ensure_local_user()
        session = await store_log(store, path.name, path.read_bytes(), title=title)
        return session.id, [t.id for t in await store.turns.list(session.id)]


async def session_ids(settings: Settings) -> set[str] | None:
    """Every session in the store, of every tenant; None when there is no database."""
    store = Store.from_settings(settings, tenant=ALL_TENANTS)
    if store.dialect == "sqlite" and not Path(store.url.database or "").is_file():
        return None
    async with store:
        if await store.current() is None:
            return None
        async with store.transaction() as db:
            return set(await db.scalars(sa.select(Session.id)))


async def row_security_bypass(settings: Settings) -> str | None:
    """On PostgreSQL, why row-level security would not bind the configured role, else None."""
    async with Store(settings.database_url, settings.data_dir) as store:
        return await store.row_security_bypass()


@contextlib.asynccontextmanager
async def programs(settings: Settings, tenant: str = LOCAL_TENANT_ID
                   ) -> AsyncIterator[tuple[Programs, str]]:
    """The optimisation door on the configured store, for `fleet optimize` and `fleet
    programs`, with the id of `tenant` (a tenant's id or name); the schema made ready."""
    from .programs import Programs

    async with Store.from_settings(settings, tenant=ALL_TENANTS) as store:
        await store.prepare()
        async with store.reading() as db:
            tenant_id = await db.scalar(sa.select(Tenant.id).where(
                sa.or_(Tenant.id == tenant, Tenant.name == tenant)))
        if tenant_id is None:
            raise NotFound("tenant", tenant)
        yield Programs(store, settings), tenant_id


async def promoted_programs(settings: Settings, tenant: str = LOCAL_TENANT_ID
                            ) -> dict[str, Program]:
    """The versions the tenant promoted, by target, for runs outside a session (`fleet run`,
    the Python API); none when there is no database yet."""
    store = Store.from_settings(settings, tenant=ALL_TENANTS)
    if store.dialect == "sqlite" and not Path(store.url.database or "").is_file():
        return {}
    async with programs(settings, tenant) as (door, tenant_id):
        return await door.promoted(tenant_id)


def promoted(target: str, settings: Settings | None = None, tenant: str = LOCAL_TENANT_ID
             ) -> Program | None:
    """The tenant's promoted version of `target` ("agent" or "rlm"), or None (the baseline):
    `RecursiveRLM(..., program=promoted("rlm"))` runs what the tenant's turns run."""
    import asyncio

    return asyncio.run(promoted_programs(settings or Settings(), tenant)).get(target)
