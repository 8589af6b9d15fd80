"""`Store`: the engine, the migrations and the repositories on one object.

    async with Store.from_settings(settings) as store:   # or: await store.open() ... close()
        await store.prepare()       # SQLite: migrate; PostgreSQL: check `fleet db upgrade` ran
        session = await store.sessions.create("Notes")
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .blobs import BlobStore
from .calls import CallStore
from .errors import SchemaNotReady
from .leases import LeaseRepo
from .limits import TenantLimitsRepo
from .models import ALL_TENANTS as ALL_TENANTS
from .models import LOCAL_TENANT_ID, LOCAL_USER_ID, Tenant, User, utcnow
from .pgevents import PgEvents
from .programs import DatasetRepo, FeedbackRepo, ProgramRepo
from .recorder import EventWriter
from .repos import DocumentRepo, EventRepo, MemoryRepo, SessionRepo, TurnRepo, dialect_insert

if TYPE_CHECKING:
    from fleet_rlm.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
INTERRUPTED = "the server stopped while this turn was running"
READ_ONLY = "fleet_read_only"  # execution option of the engine behind `Store.reading`
APP_ROLE_HOWTO = (
    "create a role that owns nothing, e.g. `CREATE ROLE fleet_app LOGIN PASSWORD '...'`, "
    "migrate and grant it the tables as their owner with `fleet db upgrade --url "
    "postgresql://OWNER@HOST/DB --grant fleet_app`, and set "
    "FLEET_DATABASE_URL=postgresql://fleet_app:PASSWORD@HOST/DB")


def database_url(url: str | sa.URL | None, data_dir: Path) -> sa.URL:
    """None means the SQLite file `{data_dir}/fleet.db`; plain sqlite:// and postgresql:// URLs
    get their async driver."""
    if url is None:
        return sa.URL.create("sqlite+aiosqlite", database=str(data_dir / "fleet.db"))
    parsed = sa.make_url(url)
    parsed = parsed.set(drivername=_ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername))
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported database {parsed.drivername!r}: use sqlite or postgresql")
    return parsed


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic configured from the package itself, so no alembic.ini is needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration of this version."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return head


def _act_for(engine: AsyncEngine, tenant: str) -> None:
    @sa.event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        connection.execute(sa.select(sa.func.set_config("fleet.tenant_id", tenant, True)))


def _use_sqlite_pragmas(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        # The driver would otherwise open transactions itself, only before writes; "begin" below
        # makes every transaction (DDL and reads included) a real one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000",
                       "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        # A writing transaction takes the write lock up front: a deferred one that reads and
        # then writes fails at once with SQLITE_BUSY when another connection wrote in between.
        # A reading one stays deferred: under WAL it reads a snapshot and never waits.
        reading = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


class Store:
    def __init__(self, url: str | sa.URL | None, data_dir: Path | str, *,
                 tenant: str | None = None) -> None:
        """`tenant`: on PostgreSQL, the tenant every transaction of this store acts for (the
        command-line tools use ALL_TENANTS); the server sets one per request instead."""
        self.data_dir = Path(data_dir)
        self.tenant = tenant
        self.url = database_url(url, self.data_dir)
        self.blobs = BlobStore(self.data_dir / "blobs")
        self.calls = CallStore(self.data_dir / "calls")
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._readmaker: async_sessionmaker[AsyncSession] | None = None
        # The read transaction of a `reads()` block, which `reading()` in it joins.
        self._ambient_read: contextvars.ContextVar[AsyncSession | None] = \
            contextvars.ContextVar(f"fleet_store_read_{id(self)}", default=None)
        # SQLite has one writer at a time. Writers of this process queue here, in order, rather
        # than on SQLite's busy handler, which polls with sleeps of up to 100 ms; other
        # processes on the same file still wait through busy_timeout.
        self.write_lock = asyncio.Lock()
        self._event_writer: EventWriter | None = None
        self.pg_events: PgEvents | None = None  # PostgreSQL: live events' own connections
        self.blob_lock = asyncio.Lock()  # blob writes and blob GC never interleave
        self.sessions = SessionRepo(self)
        self.turns = TurnRepo(self)
        self.events = EventRepo(self)
        self.documents = DocumentRepo(self)
        self.memory = MemoryRepo(self)
        self.tenant_limits = TenantLimitsRepo(self)
        self.leases = LeaseRepo(self)
        self.feedback = FeedbackRepo(self)
        self.datasets = DatasetRepo(self)
        self.programs = ProgramRepo(self)

    @classmethod
    def from_settings(cls, settings: Settings, *, tenant: str | None = None) -> Store:
        store = cls(settings.database_url, settings.data_dir, tenant=tenant)
        store.calls = CallStore(store.data_dir / "calls", max_call_mb=settings.capture_max_call_mb,
                                max_store_mb=settings.capture_max_store_mb)
        return store

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    async def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.dialect == "sqlite" and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        # On PostgreSQL a pooled connection may have died with a restart or an outage: check it
        # before use rather than fail the request that drew it.
        self._engine = create_async_engine(self.url, pool_pre_ping=self.dialect == "postgresql")
        if self.dialect == "sqlite":
            _use_sqlite_pragmas(self._engine)
        elif self.tenant is not None:
            _act_for(self._engine, self.tenant)
        if self.dialect == "postgresql":
            self.pg_events = PgEvents(self.url)
        self._sessionmaker = async_sessionmaker(self._engine, expire_on_commit=False)
        self._readmaker = async_sessionmaker(
            self._engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)

    def event_writer(self, loop: asyncio.AbstractEventLoop) -> EventWriter:
        """The one task that writes what every EventRecorder of this store buffers."""
        if self._event_writer is None or self._event_writer.loop is not loop:
            # In a context of its own: the task must not inherit the tenant of whichever request
            # happened to make it (each batch is written under its own turn's tenant).
            self._event_writer = contextvars.Context().run(EventWriter, self, loop)
        return self._event_writer

    async def close(self) -> None:
        if self._event_writer is not None:
            await self._event_writer.stop()
            self._event_writer = None
        if self.pg_events is not None:
            await self.pg_events.close()
            self.pg_events = None
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = self._sessionmaker = self._readmaker = None

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError(f"{self!r} is not open: await store.open() first")
        return self._engine

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            raise RuntimeError(f"{self!r} is not open: await store.open() first")
        return self._sessionmaker

    @asynccontextmanager
    async def transaction(self, tenant: str | None = None) -> AsyncIterator[AsyncSession]:
        """A session in a transaction committed on exit (rolled back on an exception). On
        PostgreSQL, `tenant` sets the tenant row-level security lets it see and write."""
        sessionmaker = self.sessionmaker
        if self.dialect != "sqlite":
            async with sessionmaker() as db, db.begin():
                if tenant is not None:
                    await db.execute(sa.select(sa.func.set_config("fleet.tenant_id", tenant,
                                                                  True)))
                yield db
            return
        async with self.write_lock, sessionmaker() as db, db.begin():
            yield db

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A transaction that only reads: it never waits for writers (nor they for it). Inside
        a `reads()` block, that block's transaction."""
        ambient = self._ambient_read.get()
        if ambient is not None:
            yield ambient
            return
        self.sessionmaker  # noqa: B018 - raises when the store is not open
        assert self._readmaker is not None  # made with the sessionmaker
        async with self._readmaker() as db, db.begin():
            yield db

    @asynccontextmanager
    async def reads(self) -> AsyncIterator[None]:
        """Every read of the repositories in the block (this task's; a task the block starts
        must not read) is one read transaction: one begin and end for several reads, where each
        would otherwise cost its own. Writes still go their own way."""
        async with self.reading() as db:
            token = self._ambient_read.set(db)
            try:
                yield
            finally:
                self._ambient_read.reset(token)

    async def prepare(self) -> None:
        """Make the schema ready for this version. The embedded SQLite file migrates itself;
        PostgreSQL is migrated only by `fleet db upgrade` (as the tables' owner, never the
        server's role), so there it must be at the head already, or SchemaNotReady."""
        if self.dialect == "sqlite":
            await self.upgrade()
            return
        current, head = await self.current(), head_revision()
        if current != head:
            raise SchemaNotReady(current, head)

    async def row_security_bypass(self) -> str | None:
        """On PostgreSQL, why row-level security would not bind the role this store connects
        as (a superuser, or a role with BYPASSRLS), with how to make one it binds; else None."""
        if self.dialect != "postgresql":
            return None
        async with self.engine.connect() as conn:
            role, superuser, bypass = (await conn.execute(sa.text(
                "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles "
                "WHERE rolname = current_user"))).one()
        if not (superuser or bypass):
            return None
        kind = "a superuser" if superuser else "a role with BYPASSRLS"
        return (f"the database role {role!r} is {kind}: row-level security does not apply to "
                f"it, so nothing in the database would keep tenants apart. Connect as the "
                f"server's own role instead: {APP_ROLE_HOWTO}")

    async def grant(self, role: str) -> None:
        """Let `role` (the server's) read and write every table's rows, under row-level
        security, and read the schema's revision; it gets no DDL."""
        if self.dialect != "postgresql":
            raise ValueError(f"roles are a PostgreSQL matter: {self!r} has none to grant to")
        async with self.engine.begin() as conn:
            quote = conn.dialect.identifier_preparer.quote
            schema = quote(await conn.scalar(sa.text("SELECT current_schema()")))
            grantee = quote(role)
            for statement in (
                f"GRANT USAGE ON SCHEMA {schema} TO {grantee}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} "
                f"TO {grantee}",
                f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {grantee}",
                f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {grantee}",
            ):
                await conn.exec_driver_sql(statement)

    async def upgrade(self, revision: str = "head") -> None:
        await self._migrate(command.upgrade, revision)

    async def downgrade(self, revision: str) -> None:
        await self._migrate(command.downgrade, revision)

    async def _migrate(self, step, revision: str) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(lambda sync: step(alembic_config(sync), revision))

    async def current(self) -> str | None:
        """The schema's revision; None for an empty database."""
        async with self.engine.begin() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    async def ensure_local_user(self) -> User:
        """The tenant and user "local" (id and name), created if missing; returns the user."""
        async with self.transaction() as db:
            now = utcnow()
            for model, values in (
                (Tenant, {"id": LOCAL_TENANT_ID, "name": "local"}),
                (User, {"id": LOCAL_USER_ID, "tenant_id": LOCAL_TENANT_ID, "name": "local"}),
            ):
                await db.execute(
                    dialect_insert(db, model)
                    .values(**values, created_at=now)
                    .on_conflict_do_nothing()
                )
            return await db.get_one(User, LOCAL_USER_ID)
