from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.store import BlobStore, Conflict, NotFound, Store, database_url


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_blob_is_written_once_under_its_sha_prefix(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    text = "ünïcode line\r\nsecond line\n"
    path = blobs.put(sha(text), text)
    assert path == tmp_path / "blobs" / sha(text)[:2] / f"{sha(text)}.txt"
    mtime = path.stat().st_mtime_ns
    assert blobs.put(sha(text), "not written again") == path
    assert path.stat().st_mtime_ns == mtime
    assert blobs.read(sha(text)) == text  # newlines kept as they were
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_blob_read_slices_by_characters(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    text = "".join(chr(0x3B1 + i % 20) for i in range(3 * 2**20))  # 2-byte characters
    key = sha(text)
    blobs.put(key, text)
    assert blobs.read(key, 5, 3) == text[5:8]
    assert blobs.read(key, 2**21 + 7, 10) == text[2**21 + 7 : 2**21 + 17]
    assert blobs.read(key, len(text) - 2) == text[-2:]
    assert blobs.read(key, len(text) + 5) == ""
    with pytest.raises(ValueError):
        blobs.read(key, -1)


def test_blob_names_must_be_sha256(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    for bad in ("../../etc/passwd", "A" * 64, "a" * 63, ""):
        with pytest.raises(ValueError, match="sha256"):
            blobs.put(bad, "x")
    with pytest.raises(NotFound, match="blob"):
        blobs.read("c" * 64)


def test_blob_remove_takes_empty_prefix_directories_too(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    keys = [sha(t) for t in ("one", "two", "three")]
    for key, text in zip(keys, ("one", "two", "three"), strict=True):
        blobs.put(key, text)
    assert [blobs.remove(key) for key in keys[1:]] == [True, True]
    assert blobs.shas() == {keys[0]}
    assert not (tmp_path / keys[1][:2]).exists()  # empty prefix directories go too
    assert blobs.remove(keys[1]) is False


def test_database_url_defaults_to_sqlite_in_the_data_dir_and_adds_async_drivers(
    tmp_path: Path,
) -> None:
    assert database_url(None, tmp_path).render_as_string() == (
        f"sqlite+aiosqlite:///{tmp_path}/fleet.db")
    assert database_url("postgresql://u:pw@db/fleet", tmp_path).drivername == "postgresql+asyncpg"
    assert database_url("postgres://u@db/fleet", tmp_path).drivername == "postgresql+asyncpg"
    assert database_url("sqlite:////x/y.db", tmp_path).drivername == "sqlite+aiosqlite"
    with pytest.raises(ValueError, match="unsupported database"):
        database_url("mysql://u@db/x", tmp_path)


def test_store_from_settings_and_its_repr_hides_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEET_DATABASE_URL", raising=False)
    monkeypatch.delenv("FLEET_MAX_DOCUMENT_MB", raising=False)
    settings = Settings(data_dir=tmp_path, database_url="postgresql://u:secret@db/fleet")
    store = Store.from_settings(settings)
    assert "secret" not in repr(store) and store.dialect == "postgresql"
    assert store.blobs.root == tmp_path / "blobs"
    assert Settings(data_dir=tmp_path).database_url is None
    assert Settings(data_dir=tmp_path).max_document_mb == 200
    with pytest.raises(RuntimeError, match="not open"):
        store.sessionmaker  # noqa: B018


def test_errors_carry_their_data() -> None:
    error = NotFound("turn", "t1")
    assert (error.kind, error.id, str(error)) == ("turn", "t1", "no turn with id 't1'")
    assert isinstance(error, LookupError)
    conflict = Conflict("document", "a.md")
    assert (conflict.kind, conflict.key) == ("document", "a.md")
    assert isinstance(conflict, ValueError)


def test_storable_escapes_what_postgresql_cannot_store_and_keeps_the_rest() -> None:
    from fleet_rlm.store.models import storable

    record = {"out": "a\x00b", "k\x00": ["\ud800x", 3, None, 1.5, True], "plain": "é\\u0000"}
    assert storable(record) == {"out": "a\\u0000b", "k\\u0000": ["\\ud800x", 3, None, 1.5, True],
                                "plain": "é\\u0000"}
    clean = {"text": "nothing to escape ✓", "n": [1, 2]}
    assert storable(clean) == clean


async def test_unavailable_tells_an_away_database_from_a_bad_request(tmp_path: Path) -> None:
    import errno
    import sqlite3

    import sqlalchemy as sa
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine

    from fleet_rlm.store.faults import disk_full, unavailable

    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER UNIQUE)")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")

    async def error(*statements: str) -> DBAPIError:
        with pytest.raises(DBAPIError) as caught:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.execute(sa.text(statement))
        return caught.value

    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    locked = await error("PRAGMA busy_timeout = 50", "INSERT INTO t VALUES (1)")
    holder.execute("ROLLBACK")
    full = await error("PRAGMA max_page_count = 1", "INSERT INTO t SELECT zeroblob(100000)")
    duplicate = await error("INSERT INTO t VALUES (2)", "INSERT INTO t VALUES (2)")
    no_table = await error("SELECT * FROM missing")
    await engine.dispose()
    holder.close()

    assert unavailable(locked) and not disk_full(locked)
    assert unavailable(full) and disk_full(full)
    assert not unavailable(duplicate) and not unavailable(no_table)
    assert unavailable(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert unavailable(OSError(errno.ENOSPC, "full")) and disk_full(OSError(errno.ENOSPC, "x"))
    assert not unavailable(FileNotFoundError(errno.ENOENT, "no such file"))
    assert not unavailable(ValueError("bad input"))
