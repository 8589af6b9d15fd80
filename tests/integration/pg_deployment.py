"""A PostgreSQL deployment as the README describes it, for tests (no tests here): a database
owned by a role that is no superuser, the server's own role that owns nothing, the schema
migrated and granted by `fleet db upgrade --url OWNER_URL --grant ROLE`. Dropped after each test.

PostgreSQL must be running on 127.0.0.1:5432 (trust auth, superuser postgres)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest
from typer.testing import CliRunner

from fleet_rlm.cli import app as cli_app
from fleet_rlm.store import Store
from fleet_rlm.store.repos import TokenRepo, UserRepo

PG = {"host": "127.0.0.1", "port": 5432}
PREFIX = "fleet_rls"  # databases and roles of these tests, dropped after each


async def superuser(sql: str) -> None:
    conn = await asyncpg.connect(**PG, user="postgres", database="postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@dataclass
class Deployment:
    database: str
    owner: str  # owns the database and the tables; no superuser
    app: str  # the server's role: owns nothing

    def url(self, role: str) -> str:
        return f"postgresql+asyncpg://{role}@127.0.0.1:5432/{self.database}"


def fleet(*args: str, **env: str) -> str:
    result = CliRunner().invoke(cli_app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output



def database_settings(kind: str, prefix: str, tmp_path) -> Iterator[dict]:
    """The settings' database for a test run on both: SQLite in the data dir ({}), or a
    PostgreSQL database of its own, owned by a role that is no superuser (row security binds
    it) and migrated the documented way ({"database_url": ...}). Dropped after."""
    if kind == "sqlite":
        yield {}
        return
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+asyncpg://{name}@127.0.0.1:5432/{name}"
    try:
        asyncio.run(superuser(f'CREATE ROLE "{name}" LOGIN'))
        asyncio.run(superuser(f'CREATE DATABASE "{name}" OWNER "{name}"'))
        fleet("db", "upgrade", "--url", url, FLEET_DATA_DIR=str(tmp_path / "cli"))
        yield {"database_url": url}
    finally:
        asyncio.run(superuser(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(superuser(f'DROP ROLE IF EXISTS "{name}"'))

@pytest.fixture
def empty_deployment(tmp_path) -> Iterator[Deployment]:
    """A database owned by a role that is no superuser, and an app role; nothing migrated."""
    suffix = uuid.uuid4().hex[:8]
    found = Deployment(*(f"{PREFIX}_{part}_{suffix}" for part in ("db", "owner", "app")))
    try:
        asyncio.run(superuser(f'CREATE ROLE "{found.owner}" LOGIN; '
                              f'CREATE ROLE "{found.app}" LOGIN'))
        asyncio.run(superuser(f'CREATE DATABASE "{found.database}" OWNER "{found.owner}"'))
        yield found
    finally:
        asyncio.run(superuser(f'DROP DATABASE IF EXISTS "{found.database}" WITH (FORCE)'))
        asyncio.run(superuser(f'DROP ROLE IF EXISTS "{found.app}"; '
                               f'DROP ROLE IF EXISTS "{found.owner}"'))


@pytest.fixture
def deployment(empty_deployment, tmp_path) -> Deployment:
    """The database migrated and granted to the app role the documented way."""
    out = fleet("db", "upgrade", "--url", empty_deployment.url(empty_deployment.owner),
                 "--grant", empty_deployment.app, FLEET_DATA_DIR=str(tmp_path / "cli"))
    assert f"granted to {empty_deployment.app}" in out
    return empty_deployment


async def cut_login(deployment: Deployment, login: bool) -> None:
    """Let the app role log in again, or cut it off: no new connections, its open ones ended.
    The server's database outage, without stopping the PostgreSQL other work uses."""
    await superuser(f'ALTER ROLE "{deployment.app}" {"LOGIN" if login else "NOLOGIN"}')
    if not login:
        await superuser("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE usename = '{deployment.app}'")


def set_login(deployment: Deployment, login: bool) -> None:
    """cut_login from synchronous code."""
    asyncio.run(cut_login(deployment, login))


async def add_users(url: str, data_dir) -> dict[str, tuple[str, str]]:
    """alice and bob, each in a tenant of their own: name -> (tenant id, token)."""
    out = {}
    async with Store(url, data_dir) as store:
        for name in ("alice", "bob"):
            user = await UserRepo(store).add(name)
            out[name] = (user.tenant_id, (await TokenRepo(store).create(user.id))[1])
    return out
