"""`Store`: the engine, the migrations, crash recovery and the repositories on one object.

    async with Store.from_settings(settings) as store:   # or: await store.open() ... close()
        await store.upgrade()
        await store.recover_crashed()
        session = await store.sessions.create("Notes")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .blobs import BlobStore
from .models import LOCAL_TENANT_ID, LOCAL_USER_ID, Tenant, Turn, User, utcnow
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
    def __init__(self, url: str | sa.URL | None, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.url = database_url(url, self.data_dir)
        self.blobs = BlobStore(self.data_dir / "blobs")
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._readmaker: async_sessionmaker[AsyncSession] | None = None
        # SQLite has one writer at a time. Writers of this process queue here, in order, rather
        # than on SQLite's busy handler, which polls with sleeps of up to 100 ms; other
        # processes on the same file still wait through busy_timeout.
        self.write_lock = asyncio.Lock()
        self._event_writer: EventWriter | None = None
        self.blob_lock = asyncio.Lock()  # blob writes and blob GC never interleave
        self.sessions = SessionRepo(self)
        self.turns = TurnRepo(self)
        self.events = EventRepo(self)
        self.documents = DocumentRepo(self)
        self.memory = MemoryRepo(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        return cls(settings.database_url, settings.data_dir)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)!r})"

    async def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.dialect == "sqlite" and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_async_engine(self.url)
        if self.dialect == "sqlite":
            _use_sqlite_pragmas(self._engine)
        self._sessionmaker = async_sessionmaker(self._engine, expire_on_commit=False)
        self._readmaker = async_sessionmaker(
            self._engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)

    def event_writer(self, loop: asyncio.AbstractEventLoop) -> EventWriter:
        """The one task that writes what every EventRecorder of this store buffers."""
        if self._event_writer is None or self._event_writer.loop is not loop:
            self._event_writer = EventWriter(self, loop)
        return self._event_writer

    async def close(self) -> None:
        if self._event_writer is not None:
            await self._event_writer.stop()
            self._event_writer = None
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
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction committed on exit (rolled back on an exception)."""
        sessionmaker = self.sessionmaker
        if self.dialect != "sqlite":
            async with sessionmaker() as db, db.begin():
                yield db
            return
        async with self.write_lock, sessionmaker() as db, db.begin():
            yield db

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A transaction that only reads: it never waits for writers (nor they for it)."""
        self.sessionmaker  # noqa: B018 - raises when the store is not open
        async with self._readmaker() as db, db.begin():
            yield db

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

    async def recover_crashed(self) -> list[str]:
        """Mark turns a previous process left `running` as `interrupted`; returns their ids.
        `waiting` turns stay: their question to the user is still pending."""
        async with self.transaction() as db:
            result = await db.execute(
                sa.update(Turn)
                .where(Turn.status == "running")
                .values(status="interrupted", error=INTERRUPTED, finished_at=utcnow())
                .returning(Turn.id)
                .execution_options(synchronize_session=False)
            )
            return list(result.scalars())

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
