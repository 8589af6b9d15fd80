"""The store suite, run on SQLite (a file) and on PostgreSQL (a fresh database per test session).

PostgreSQL must be running on 127.0.0.1:5432: without it these tests fail, they do not skip.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import BaseModel

from fleet_rlm.events import EventStream, NodeRef
from fleet_rlm.store import Conflict, EventRecorder, NotFound, Store
from fleet_rlm.store.models import Base, Document, Event, MemoryBlock, Turn
from fleet_rlm.store.repos import InFlight

PG_HOST, PG_PORT = "127.0.0.1", 5432
SHA_A, SHA_B = "a" * 64, "b" * 64
T = TypeVar("T")
TABLES = {"tenants", "users", "sessions", "turns", "events", "documents", "memory_blocks"}


async def _pg_admin() -> tuple[asyncpg.Connection, str]:
    errors = []
    for user in ("postgres", "root"):
        try:
            conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=user,
                                         database="postgres", timeout=5)
            return conn, user
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"as {user}: {type(exc).__name__}: {exc}")
    pytest.fail(f"PostgreSQL is required at {PG_HOST}:{PG_PORT} (trust auth, user postgres or "
                f"root) and could not be reached ({'; '.join(errors)}). Start it and rerun.",
                pytrace=False)


def _run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a fresh thread: the fixture may be first requested inside a running loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"fleet_test_{uuid.uuid4().hex[:10]}"

    async def create() -> str:
        conn, user = await _pg_admin()
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        return user

    async def drop() -> None:
        conn, _ = await _pg_admin()
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    user = _run_in_own_loop(create())
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _run_in_own_loop(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    async with Store(url, tmp_path / "data") as store:
        await store.downgrade("base")  # the PostgreSQL database is shared by the session's tests
        await store.upgrade()
        yield store


async def _tables(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names())) & TABLES


async def _count(store: Store, model: type[Base]) -> int:
    async with store.transaction() as db:
        return await db.scalar(sa.select(sa.func.count()).select_from(model))


# --- schema -------------------------------------------------------------------------------------

def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from fleet_rlm.store.db import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_migrations_go_down_to_base_and_up_again(store: Store) -> None:
    assert await store.current() == head_revision()
    assert await _tables(store) == TABLES
    await store.downgrade("base")
    assert await store.current() is None
    assert await _tables(store) == set()
    await store.upgrade()
    assert await store.current() == head_revision()
    assert await _tables(store) == TABLES
    user = await store.ensure_local_user()  # seeded by the migration; ensuring is idempotent
    assert (user.id, user.tenant_id, user.name) == ("local", "local", "local")


async def test_models_and_migrations_describe_the_same_schema(store: Store) -> None:
    def diff(connection: sa.Connection) -> list:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_ensure_local_user_recreates_a_missing_local_user(store: Store) -> None:
    async with store.transaction() as db:
        await db.execute(sa.text("DELETE FROM tenants"))
    assert (await store.ensure_local_user()).id == "local"
    assert (await store.ensure_local_user()).id == "local"
    await store.sessions.create("works again")


# --- sessions -----------------------------------------------------------------------------------

async def test_sessions_search_paginate_archive_and_rename(store: Store) -> None:
    titles = ["Alpha notes", "beta NOTES", "gamma", "100% sure", "1000 sure", "delta notes"]
    created = [await store.sessions.create(t) for t in titles]
    assert all(s.created_at.tzinfo is UTC and s.archived is False for s in created)

    listed = await store.sessions.list()
    assert [s.title for s in listed] == titles[::-1]  # newest activity first
    assert [s.title for s in await store.sessions.list(limit=2, offset=1)] == titles[::-1][1:3]
    assert await store.sessions.count() == 6

    assert {s.title for s in await store.sessions.list(q="notes")} == {
        "Alpha notes", "beta NOTES", "delta notes"}
    assert [s.title for s in await store.sessions.list(q="0%")] == ["100% sure"]  # % is literal
    assert await store.sessions.count(q="sure") == 2

    await store.sessions.archive(created[0].id)
    assert await store.sessions.count(q="notes") == 2
    assert await store.sessions.count(q="notes", include_archived=True) == 3
    assert (await store.sessions.archive(created[0].id, archived=False)).archived is False

    renamed = await store.sessions.rename(created[2].id, "Gamma rays")
    assert (await store.sessions.get(created[2].id)).title == renamed.title == "Gamma rays"
    assert await store.sessions.list(tenant_id="someone-else") == []


async def test_delete_session_cascades_to_everything_below(store: Store) -> None:
    keep, doomed = await store.sessions.create("keep"), await store.sessions.create("doomed")
    for session in (keep, doomed):
        turn = await store.turns.start(session.id, "q")
        await store.events.append_many(turn.id, [{"seq": 1, "type": "turn_started"}])
        await store.memory.set(session.id, "human", "likes tea")
    await store.documents.add(doomed.id, "a.txt", "text", 3, 3, SHA_A, text="aaa")
    await store.documents.add(doomed.id, "b.txt", "text", 3, 3, SHA_B, text="bbb")
    await store.documents.add(keep.id, "b.txt", "text", 3, 3, SHA_B, text="bbb")

    await store.sessions.delete(doomed.id)
    with pytest.raises(NotFound):
        await store.sessions.get(doomed.id)
    for model in (Turn, Event, MemoryBlock):
        assert await _count(store, model) == 1
    assert await _count(store, Document) == 1
    assert not store.blobs.path(SHA_A).exists()  # only the deleted session used it
    assert store.blobs.read(SHA_B) == "bbb"  # the kept session still does


# --- turns --------------------------------------------------------------------------------------

async def test_turn_lifecycle_with_a_pending_question(store: Store) -> None:
    session = await store.sessions.create()
    first = await store.turns.start(session.id, "hello")
    assert (first.index, first.status, first.answer) == (1, "running", None)
    assert first.finished_at is None
    assert (await store.sessions.get(session.id)).updated_at == first.created_at
    assert (await store.turns.running_for_session(session.id)).id == first.id

    pending = {"question": "Which file?", "state": {"step": 3, "history": [1, 2]}}
    assert (await store.turns.set_pending(first.id, pending)).status == "waiting"
    assert (await store.turns.get(first.id)).pending == pending
    assert (await store.turns.running_for_session(session.id)).id == first.id
    assert (await store.turns.set_pending(first.id, None)).status == "running"
    assert (await store.turns.get(first.id)).pending is None

    usage = {"calls": 3, "tokens": 1200, "usd": 0.0042}
    done = await store.turns.finish(first.id, "ok", answer="hi", usage=usage, trace_id="tr-1")
    assert done.finished_at is not None and done.finished_at.tzinfo is UTC
    stored = await store.turns.get(first.id)
    assert (stored.status, stored.answer, stored.usage, stored.trace_id, stored.error) == (
        "ok", "hi", usage, "tr-1", None)
    assert await store.turns.running_for_session(session.id) is None
    with pytest.raises(ValueError, match="cannot wait"):
        await store.turns.set_pending(first.id, pending)
    with pytest.raises(ValueError, match="finishes as one of"):
        await store.turns.finish(first.id, "running")

    second = await store.turns.start(session.id, "again")
    await store.turns.finish(second.id, "error", error="boom")
    assert [(t.index, t.status) for t in await store.turns.list(session.id)] == [
        (1, "ok"), (2, "error")]
    with pytest.raises(ValueError, match="finishes as one of"):
        await store.turns.finish(second.id, "failed")  # the old word is no status any more


async def test_concurrent_turn_starts_leave_one_in_flight_and_distinct_indexes(
        store: Store) -> None:
    session = await store.sessions.create()
    started = await asyncio.gather(*(store.turns.start(session.id, f"m{i}") for i in range(10)),
                                   return_exceptions=True)
    turns = [t for t in started if not isinstance(t, BaseException)]
    assert len(turns) == 1, started
    assert all(isinstance(t, InFlight) for t in started if isinstance(t, BaseException))
    for i in range(9):
        await store.turns.finish(turns[-1].id, "ok", answer="a")
        turns.append(await store.turns.start(session.id, f"again {i}"))
    assert sorted(t.index for t in turns) == list(range(1, 11))


async def test_reads_in_a_reads_block_are_one_transaction_and_writes_go_their_own_way(
        store: Store) -> None:
    session = await store.sessions.create()
    async with store.reading() as first, store.reading() as second:
        assert first is not second  # outside a block, each read is its own transaction
    async with store.reads():
        async with store.reading() as first, store.reading() as second:
            assert first is second
        assert await store.turns.list(session.id) == []
        await store.memory.set(session.id, "human", "writes commit on their own")
        assert await store.tenant_limits.get(session.tenant_id) == {}
    async with store.reading() as after:
        assert after is not first  # the block's transaction ended with it
    assert await store.memory.get_all(session.id) == {"human": "writes commit on their own"}


async def test_an_expired_lease_is_claimed_by_exactly_one_process(store: Store) -> None:
    """Many processes notice the same expired lease at once: one claim wins. A lease renewed
    in time is nobody's to claim, and a waiting turn has no lease at all."""
    sessions = [await store.sessions.create() for _ in range(3)]
    expired = await store.turns.start(sessions[0].id, "a", owner="far/away/1", lease_s=-1)
    alive = await store.turns.start(sessions[1].id, "b", owner="far/away/2", lease_s=60)
    waiting = await store.turns.start(sessions[2].id, "c", owner="far/away/2", lease_s=-1)
    await store.turns.set_pending(waiting.id, {"question": "?", "usage": {}})

    seen = await store.leases.stale("here/1", "near/")
    assert [s.turn_id for s in seen] == [expired.id] and seen[0].expired
    claims = await asyncio.gather(*(store.leases.claim(seen[0], f"here/{i}", 30)
                                    for i in range(8)))
    assert claims.count(True) == 1
    assert await store.leases.stale("here/1", "near/") == []  # its new owner's lease runs
    assert await store.leases.renew("far/away/2", 30) == {alive.id}
    # a waiting turn is taken once, by whichever process answers or dismisses it first
    taken = await asyncio.gather(*(store.leases.take_waiting(waiting.id, f"here/{i}", 30)
                                   for i in range(4)))
    assert [t for t in taken if t is not None] == [{"question": "?", "usage": {}}]
    turn = await store.turns.get(waiting.id)
    assert turn.status == "running" and turn.owner.startswith("here/")


# --- events -------------------------------------------------------------------------------------

async def test_events_come_back_in_seq_order_and_appending_is_idempotent(store: Store) -> None:
    session = await store.sessions.create()
    turn = await store.turns.start(session.id, "q")
    assert await store.events.last_seq(turn.id) == 0
    assert await store.events.list(turn.id) == []

    def ev(seq: int) -> dict:
        return {"seq": seq, "type": "code_output", "turn_id": "engine-id", "stdout": f"out {seq}"}

    assert await store.events.append_many(turn.id, [ev(s) for s in (5, 1, 3, 2, 4)]) == 5
    assert await store.events.append_many(turn.id, [ev(s) for s in (4, 5, 6, 7)]) == 2
    assert await store.events.append_many(turn.id, []) == 0
    events = await store.events.list(turn.id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert events[0].payload == ev(1) and events[0].type == "code_output"
    assert [e.seq for e in await store.events.list(turn.id, after_seq=3, limit=2)] == [4, 5]
    assert await store.events.last_seq(turn.id) == 7


class _Event(BaseModel):
    seq: int
    type: str = "answer_delta"
    text: str


async def test_recorder_lands_events_from_eight_threads_in_seq_order(store: Store) -> None:
    session = await store.sessions.create()
    turn = await store.turns.start(session.id, "q")
    recorder = EventRecorder(store, turn.id)
    threads_n, per_thread = 8, 150
    barrier = threading.Barrier(threads_n)

    def emit(offset: int) -> None:
        barrier.wait()
        for k in range(per_thread):
            seq = 1 + offset + k * threads_n
            recorder(_Event(seq=seq, text=f"t{offset}-{k}"))

    def run_threads() -> None:
        threads = [threading.Thread(target=emit, args=(i,)) for i in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    await asyncio.to_thread(run_threads)
    await recorder.flush()
    total = threads_n * per_thread
    assert await store.events.last_seq(turn.id) == total
    recorder(_Event(seq=total + 1, text="last"))
    await recorder.close()
    events = await store.events.list(turn.id)
    assert [e.seq for e in events] == list(range(1, total + 2))
    assert events[-1].payload == {"seq": total + 1, "type": "answer_delta", "text": "last"}
    with pytest.raises(RuntimeError, match="closed"):
        recorder(_Event(seq=total + 2, text="late"))


async def test_recorder_subscribed_to_an_event_stream(store: Store) -> None:
    session = await store.sessions.create()
    turn = await store.turns.start(session.id, "q")
    recorder = EventRecorder(store, turn.id)
    stream = EventStream(turn_id=turn.id, sinks=[recorder])
    root = NodeRef.root()

    def emit() -> None:
        threads = [threading.Thread(target=lambda: [
            stream.emit("answer_delta", root, text="x") for _ in range(25)]) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    await asyncio.to_thread(emit)
    await recorder.close()
    events = await store.events.list(turn.id)
    assert [e.seq for e in events] == list(range(1, 201))
    assert events[0].payload == stream.events[0].model_dump(mode="json")


async def test_recorder_reports_a_failed_write(store: Store) -> None:
    recorder = EventRecorder(store, "no-such-turn")
    recorder(_Event(seq=1, text="x"))
    with pytest.raises(RuntimeError, match="no-such-turn") as info:
        await recorder.close()
    assert isinstance(info.value.__cause__, NotFound)


async def test_recorders_share_one_writer_and_store_an_outcome_with_its_events(
        store: Store) -> None:
    one = await store.turns.start((await store.sessions.create()).id, "a")
    two = await store.turns.start((await store.sessions.create()).id, "b")
    finished = lambda batch: ({"status": "ok", "answer": "42"}  # noqa: E731
                              if any(e["type"] == "turn_finished" for e in batch) else None)
    rec_one = EventRecorder(store, one.id, outcome=finished)
    rec_two = EventRecorder(store, two.id)
    lost = EventRecorder(store, "no-such-turn")
    assert rec_one._writer is rec_two._writer is lost._writer
    # Buffered before the writer runs: one transaction for all three, which fails on the
    # unknown turn; the other two turns still get their events.
    rec_one(_Event(seq=1, text="x"))
    rec_two(_Event(seq=1, text="y"))
    lost(_Event(seq=1, text="z"))
    rec_one(_Event(seq=2, type="turn_finished", text=""))
    await rec_one.flush()
    await rec_two.close()
    with pytest.raises(RuntimeError, match="no-such-turn"):
        await lost.close()
    assert [e.seq for e in await store.events.list(one.id)] == [1, 2]
    assert [e.payload["text"] for e in await store.events.list(two.id)] == ["y"]
    turn = await store.turns.get(one.id)
    assert (turn.status, turn.answer) == ("ok", "42")
    assert (await store.turns.get(two.id)).status == "running"
    await rec_one.close()


# --- documents and memory -----------------------------------------------------------------------

async def test_documents_share_one_blob_per_sha_and_gc_it(store: Store) -> None:
    s1, s2 = await store.sessions.create("one"), await store.sessions.create("two")
    text = "héllo wörld\n" * 10
    a = await store.documents.add(s1.id, "a.md", "markdown", 130, len(text), SHA_A, text=text)
    b = await store.documents.add(s2.id, "copy.md", "markdown", 130, len(text), SHA_A, text=text)
    assert a.sha256 == b.sha256 and a.created_at.tzinfo is UTC
    assert [p.name for p in store.blobs.root.rglob("*") if p.is_file()] == [f"{SHA_A}.txt"]
    assert await store.documents.read(a.id, start=1, length=4) == "éllo"

    with pytest.raises(Conflict, match="a.md"):
        await store.documents.add(s1.id, "a.md", "text", 1, 1, SHA_B, text="b")
    assert not store.blobs.exists(SHA_B)  # the refused document's blob did not linger
    with pytest.raises(ValueError, match="kind"):
        await store.documents.add(s1.id, "x.doc", "word", 1, 1, SHA_A)
    with pytest.raises(NotFound, match="blob"):
        await store.documents.add(s1.id, "c.txt", "text", 1, 1, SHA_B)  # blob never stored

    assert [d.name for d in await store.documents.list(s1.id)] == ["a.md"]
    await store.documents.delete(a.id)
    assert store.blobs.exists(SHA_A)  # still used by the copy
    await store.documents.delete(b.id)
    assert not store.blobs.exists(SHA_A)
    assert await store.documents.list(s1.id) == []


async def test_memory_blocks_set_and_get(store: Store) -> None:
    session = await store.sessions.create()
    assert await store.memory.get_all(session.id) == {}
    await store.memory.set(session.id, "persona", "a careful analyst")
    await store.memory.set(session.id, "scratchpad", "v1")
    await store.memory.set(session.id, "scratchpad", "v2")
    assert await store.memory.get_all(session.id) == {
        "persona": "a careful analyst", "scratchpad": "v2"}
    with pytest.raises(ValueError, match="label"):
        await store.memory.set(session.id, "diary", "x")


# --- errors -------------------------------------------------------------------------------------

async def test_unknown_ids_raise_not_found(store: Store) -> None:
    calls = {
        "session": [
            store.sessions.get("nope"), store.sessions.rename("nope", "t"),
            store.sessions.archive("nope"), store.sessions.delete("nope"),
            store.turns.start("nope", "m"),
            store.turns.list("nope"), store.documents.list("nope"),
            store.documents.add("nope", "n", "text", 1, 1, SHA_A, text="a"),
            store.memory.get_all("nope"), store.memory.set("nope", "human", "v"),
        ],
        "turn": [
            store.turns.get("nope"), store.turns.finish("nope", "ok"),
            store.turns.set_pending("nope", {}),
            store.events.list("nope"), store.events.last_seq("nope"),
            store.events.append_many("nope", [{"seq": 1, "type": "x"}]),
        ],
        "document": [store.documents.get("nope"), store.documents.delete("nope"),
                     store.documents.read("nope")],
        "user": [store.sessions.create("t", user_id="nope")],
    }
    for kind, coroutines in calls.items():
        for coroutine in coroutines:
            with pytest.raises(NotFound) as info:
                await coroutine
            assert info.value.kind == kind, coroutine
            assert info.value.id == "nope" and str(info.value) == f"no {kind} with id 'nope'"


# --- SQLite specifics and the command line ------------------------------------------------------

async def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    async with Store(None, tmp_path) as store:
        await store.upgrade()
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    assert (tmp_path / "fleet.db").is_file()


async def test_sqlite_reads_never_wait_for_a_writer_and_writers_queue_in_process(
        tmp_path: Path) -> None:
    async with Store(None, tmp_path) as store:
        await store.upgrade()
        session = await store.sessions.create("s")
        turn = await store.turns.start(session.id, "hi")
        holding, release = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with store.transaction() as db:  # holds SQLite's write lock until released
                db.add(Event(turn_id=turn.id, seq=1, type="x", payload={"seq": 1},
                             created_at=turn.created_at))
                await db.flush()
                holding.set()
                await release.wait()

        task = asyncio.create_task(writer())
        await holding.wait()
        # Reads see the last committed state at once, although a write is open.
        assert await asyncio.wait_for(store.events.last_seq(turn.id), 2) == 0
        assert [t.id for t in await asyncio.wait_for(store.turns.list(session.id), 2)] == [turn.id]
        # A second writer of this process queues on the store's lock, not on SQLite's busy
        # handler, and goes through once the first commits.
        second = asyncio.create_task(store.events.append_many(
            turn.id, [{"seq": 2, "type": "x"}]))
        await asyncio.sleep(0.2)
        assert not second.done() and store.write_lock.locked()
        release.set()
        await task
        assert await asyncio.wait_for(second, 2) == 1
        assert await store.events.last_seq(turn.id) == 2
        # Many concurrent writers all land.
        await asyncio.gather(*(store.events.append_many(turn.id, [{"seq": n, "type": "x"}])
                               for n in range(3, 103)))
        assert await store.events.last_seq(turn.id) == 102


def test_fleet_db_upgrade_creates_the_sqlite_file_in_wal_mode(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLEET_DATABASE_URL"}
    env.update(FLEET_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    fleet = [sys.executable, "-m", "fleet_rlm.cli", "db"]

    def run(*args: str) -> str:
        done = subprocess.run([*fleet, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "empty" in run("current")
    assert f"revision {head_revision()}" in run("upgrade")
    database = tmp_path / "data" / "fleet.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert names >= TABLES
        assert conn.execute("SELECT id FROM users").fetchall() == [("local",)]
    assert f"revision {head_revision()}" in run("current")
    assert "empty" in run("downgrade", "base")


async def test_turns_recorded_before_attachments_get_them_from_their_note(store: Store) -> None:
    session = await store.sessions.create("old")
    a = await store.documents.add(session.id, "a.txt", "text", 3, 3, SHA_A, text="aaa")
    await store.documents.add(session.id, "b.txt", "text", 3, 3, SHA_B, text="bbb")
    noted = await store.turns.start(session.id, "sum\n\n(Attached documents: a.txt, b.txt)")
    await store.turns.finish(noted.id, "ok", answer="x")
    gone = await store.turns.start(session.id, "read\n\n(Attached documents: a.txt, gone.txt)")
    await store.turns.finish(gone.id, "ok", answer="x")
    plain = await store.turns.start(session.id, "hello")
    await store.downgrade("0004")
    await store.upgrade()
    by_id = {t.id: t.attachments for t in await store.turns.list(session.id)}
    b = next(d for d in await store.documents.list(session.id) if d.name == "b.txt")
    assert by_id[noted.id] == [{"id": a.id, "name": "a.txt"}, {"id": b.id, "name": "b.txt"}]
    assert by_id[gone.id] is None and by_id[plain.id] is None


async def test_turn_rows_and_stored_limits_move_to_one_vocabulary(store: Store) -> None:
    """Migration 0006: done -> ok; failed -> budget where the turn_finished event (or, its
    events lost, the error) says a limit stopped it, else error; max_lm_calls -> max_calls."""
    session = await store.sessions.create("old")
    tenant = (await store.ensure_local_user()).tenant_id
    await store.downgrade("0005")

    async def add(status: str, error: str | None = None, finished: str | None = None,
                  pending: dict | None = None) -> str:
        turn_id = uuid.uuid4().hex[:16]
        async with store.engine.begin() as conn:
            index = (await conn.execute(sa.text(
                "SELECT count(*) FROM turns WHERE session_id = :s"), {"s": session.id})).scalar()
            await conn.execute(sa.insert(Turn.__table__).values(
                id=turn_id, session_id=session.id, index=index + 1, user_message="q",
                status=status, error=error, pending=pending, created_at=session.created_at))
            if finished is not None:
                for seq, status_said in ((1, "waiting"), (2, finished)):
                    await conn.execute(sa.insert(Event.__table__).values(
                        turn_id=turn_id, seq=seq, type="turn_finished",
                        payload={"type": "turn_finished", "status": status_said},
                        created_at=session.created_at))
        return turn_id

    done = await add("done")
    budget = await add("failed", "budget exceeded: calls 3/3", finished="budget")
    budget_no_events = await add("failed", "BudgetExceeded: budget exceeded: usd 1/1")
    error = await add("failed", "LMError: boom", finished="error")
    error_no_events = await add("failed", "Interrupted: the server stopped")
    cancelled = await add("cancelled", "cancelled by the user", finished="cancelled")
    waiting = await add("waiting", pending={"question": "?", "limits": {"max_lm_calls": 3}})
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO tenant_limits (tenant_id, limits, updated_at) "
                                   "VALUES (:t, :l, :u)"),
                           {"t": tenant, "l": '{"max_lm_calls": 7, "max_usd": 1.5}',
                            "u": session.created_at})
        with pytest.raises(sa.exc.IntegrityError):  # before 0006 the new words are refused
            async with conn.begin_nested():
                await conn.execute(sa.update(Turn.__table__).where(
                    Turn.__table__.c.id == done).values(status="budget"))

    await store.upgrade()
    statuses = {t.id: t.status for t in await store.turns.list(session.id)}
    assert statuses == {done: "ok", budget: "budget", budget_no_events: "budget",
                        error: "error", error_no_events: "error", cancelled: "cancelled",
                        waiting: "waiting"}
    assert (await store.turns.get(waiting)).pending["limits"] == {"max_calls": 3}
    assert await store.tenant_limits.get(tenant) == {"max_calls": 7, "max_usd": 1.5}
    with pytest.raises(sa.exc.IntegrityError):  # the old words are refused now
        async with store.engine.begin() as conn:
            await conn.execute(sa.update(Turn.__table__).where(
                Turn.__table__.c.id == done).values(status="failed"))

    await store.downgrade("0005")
    async with store.engine.connect() as conn:
        rows = dict((await conn.execute(sa.text("SELECT id, status FROM turns"))).all())
        limits = (await conn.execute(sa.text("SELECT limits FROM tenant_limits"))).scalar()
    assert rows == {done: "done", budget: "failed", budget_no_events: "failed", error: "failed",
                    error_no_events: "failed", cancelled: "cancelled", waiting: "waiting"}
    assert (limits if isinstance(limits, dict) else __import__("json").loads(limits)) == {
        "max_lm_calls": 7, "max_usd": 1.5}
    await store.upgrade()
