"""Alembic environment. `Store.upgrade()` passes its own connection in
`config.attributes["connection"]`; without one, an async engine is made from sqlalchemy.url."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from fleet_rlm.store.models import Base

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":  # policies are forced: data steps see all
            connection.exec_driver_sql("SELECT set_config('fleet.tenant_id', '*', true)")
        context.run_migrations()


async def run_async_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("the alembic configuration has no sqlalchemy.url")
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is None:
    asyncio.run(run_async_migrations())
else:
    run_migrations(connection)
