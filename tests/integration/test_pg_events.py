"""The live events' short path on PostgreSQL (`store/pgevents.py`), as the server's role that
row-level security binds: a batch and its notice are one transaction, so no process hears of an
event it cannot read yet; a turn another process took gets nothing and announces nothing; each
statement acts for its own tenant on connections that serve several in turn; a lost connection
is an outage the writer waits out, and the next batch makes another.

PostgreSQL must be running on 127.0.0.1:5432 (trust auth): without it these tests fail."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from pg_deployment import PG, Deployment, add_users, cut_login

from fleet_rlm.sessions.live import Reads
from fleet_rlm.sessions.tenancy import TENANT
from fleet_rlm.status import TurnStatus
from fleet_rlm.store import NotFound, Store
from fleet_rlm.store.db import ALL_TENANTS
from fleet_rlm.store.faults import unavailable
from fleet_rlm.store.leases import session_channel
from fleet_rlm.store.models import User

pytestmark = pytest.mark.timeout(60)


def events(*seqs: int) -> list[dict]:
    return [{"seq": seq, "type": "agent_step", "text": f"step {seq}"} for seq in seqs]


async def open_stores(deployment: Deployment, tmp_path):
    """The server's store (explicit tenants per call) and an admin one acting for all, and
    alice's and bob's tenants, each with a running turn owned by "me"."""
    users = await add_users(deployment.url(deployment.app), tmp_path / "users")
    server = Store(deployment.url(deployment.app), tmp_path / "server")
    admin = Store(deployment.url(deployment.app), tmp_path / "admin", tenant=ALL_TENANTS)
    await server.open()
    await admin.open()
    turns = {}
    for name, (tenant, _) in users.items():
        session = await admin.sessions.create(name, tenant_id=tenant,
                                              user_id=await _user_of(admin, tenant))
        turn = await admin.turns.start(session.id, "hi", owner="me", lease_s=30)
        turns[name] = (tenant, session.id, turn.id)
    return server, admin, turns


async def _user_of(admin: Store, tenant: str) -> str:
    async with admin.reading() as db:
        return (await db.execute(User.__table__.select().where(User.tenant_id == tenant))
                ).first().id


class Listener:
    """A LISTENing connection, as another process's relay: the payloads it heard."""

    def __init__(self, deployment: Deployment, channel: str) -> None:
        self.deployment, self.channel = deployment, channel
        self.heard: list[str] = []

    async def __aenter__(self) -> Listener:
        self.conn = await asyncpg.connect(**PG, user="postgres",
                                          database=self.deployment.database)
        await self.conn.add_listener(self.channel, lambda *a: self.heard.append(a[-1]))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()


async def stored_seqs(deployment: Deployment, turn_id: str) -> list[int]:
    conn = await asyncpg.connect(**PG, user="postgres", database=deployment.database)
    try:
        return [r[0] for r in await conn.fetch(
            "SELECT seq FROM events WHERE turn_id = $1 ORDER BY seq", turn_id)]
    finally:
        await conn.close()


async def test_a_batch_is_announced_only_once_its_events_are_committed(deployment, tmp_path):
    server, admin, turns = await open_stores(deployment, tmp_path)
    tenant, session_id, turn_id = turns["alice"]
    try:
        async with Listener(deployment, session_channel(session_id)) as listener:
            # Another transaction holds the turn's row: the batch waits for it, uncommitted.
            blocker = await asyncpg.connect(**PG, user="postgres",
                                            database=deployment.database)
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("SELECT 1 FROM turns WHERE id = $1 FOR UPDATE", turn_id)
            writing = asyncio.create_task(server.events.append_batches(
                [(turn_id, events(1, 2, 3), None)], tenant=tenant, owners={turn_id: "me"}))
            await asyncio.sleep(0.5)
            assert not writing.done()
            assert listener.heard == []  # nothing announced before the commit
            assert await stored_seqs(deployment, turn_id) == []
            await transaction.rollback()
            await blocker.close()
            assert await asyncio.wait_for(writing, 10) == 3
            deadline = asyncio.get_running_loop().time() + 5
            while not listener.heard:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            assert listener.heard == [f"{turn_id}:3"]  # a pointer, never the event
            assert await stored_seqs(deployment, turn_id) == [1, 2, 3]
    finally:
        await server.close()
        await admin.close()


async def test_a_turn_another_process_took_gets_no_events_and_no_notice(deployment, tmp_path):
    server, admin, turns = await open_stores(deployment, tmp_path)
    tenant, session_id, turn_id = turns["alice"]
    try:
        async with Listener(deployment, session_channel(session_id)) as listener:
            assert await server.events.append_batches(
                [(turn_id, events(1), None)], tenant=tenant, owners={turn_id: "me"}) == 1
            conn = await asyncpg.connect(**PG, user="postgres", database=deployment.database)
            await conn.execute("UPDATE turns SET owner = 'other' WHERE id = $1", turn_id)
            await conn.close()
            assert await server.events.append_batches(
                [(turn_id, events(2), {"status": "ok"})], tenant=tenant,
                owners={turn_id: "me"}) == 0
            await asyncio.sleep(0.3)
            assert listener.heard == [f"{turn_id}:1"]
            assert await stored_seqs(deployment, turn_id) == [1]
            assert (await admin.turns.get(turn_id)).status == TurnStatus.RUNNING
            with pytest.raises(NotFound):  # no owner to check: a missing turn is an error
                await server.events.append_batches([("no-such-turn", events(1), None)],
                                                   tenant=tenant)
    finally:
        await server.close()
        await admin.close()


async def test_each_statement_acts_for_its_own_tenant(deployment, tmp_path):
    server, admin, turns = await open_stores(deployment, tmp_path)
    alice, _, alice_turn = turns["alice"]
    bob, bob_session, bob_turn = turns["bob"]
    try:
        assert await server.events.append_batches(
            [(alice_turn, events(1, 2), None)], tenant=alice, owners={alice_turn: "me"}) == 2
        async with Listener(deployment, session_channel(bob_session)) as listener:
            # alice's writer may not write into bob's turn, nor announce it
            with pytest.raises(NotFound):
                await server.events.append_batches([(bob_turn, events(1), None)],
                                                   tenant=alice)
            assert await server.events.append_batches(
                [(bob_turn, events(1), None)], tenant=alice, owners={bob_turn: "me"}) == 0
            await asyncio.sleep(0.3)
            assert listener.heard == []
        assert await server.events.append_batches(
            [(bob_turn, events(1), None)], tenant=bob, owners={bob_turn: "me"}) == 1
        wanted = {alice_turn: 0, bob_turn: 0}
        for _ in range(2):  # the same connection, switched back and forth
            as_alice = await server.events.payloads_many(wanted, tenant=alice)
            as_bob = await server.events.payloads_many(wanted, tenant=bob)
            assert [e["seq"] for e in as_alice[alice_turn]] == [1, 2]
            assert as_alice[bob_turn] == []
            assert as_bob[alice_turn] == []
            assert [e["text"] for e in as_bob[bob_turn]] == ["step 1"]
    finally:
        await server.close()
        await admin.close()


async def test_the_outcome_is_written_with_the_events_of_a_turn_still_in_flight(deployment,
                                                                                tmp_path):
    server, admin, turns = await open_stores(deployment, tmp_path)
    tenant, _, turn_id = turns["alice"]
    try:
        update = {"status": "ok", "answer": "done", "usage": {"lm_calls": 2}, "pending": None,
                  "error": None}
        assert await server.events.append_batches(
            [(turn_id, events(1), update)], tenant=tenant, owners={turn_id: "me"}) == 1
        turn = await admin.turns.get(turn_id)
        assert (turn.status, turn.answer, turn.usage) == ("ok", "done", {"lm_calls": 2})
        assert turn.user_message == "hi"  # columns the update does not name are kept
        await server.events.append_batches(  # a finished turn's row is not changed again
            [(turn_id, events(2), {"status": "error", "error": "late"})], tenant=tenant)
        turn = await admin.turns.get(turn_id)
        assert (turn.status, turn.error) == ("ok", None)
    finally:
        await server.close()
        await admin.close()


async def test_a_lost_connection_is_an_outage_and_the_next_batch_reconnects(deployment,
                                                                            tmp_path):
    server, admin, turns = await open_stores(deployment, tmp_path)
    tenant, _, turn_id = turns["alice"]
    try:
        assert await server.events.append_batches(
            [(turn_id, events(1), None)], tenant=tenant, owners={turn_id: "me"}) == 1
        await cut_login(deployment, False)  # its connections ended, no new ones
        try:
            for _ in range(2):  # the lost connection, then a refused one
                with pytest.raises(Exception) as lost:
                    await server.events.append_batches(
                        [(turn_id, events(2), None)], tenant=tenant, owners={turn_id: "me"})
                assert unavailable(lost.value)  # the writer keeps the batch, tries again
        finally:
            await cut_login(deployment, True)
        assert await server.events.append_batches(
            [(turn_id, events(2), None)], tenant=tenant, owners={turn_id: "me"}) == 1
        found = await server.events.payloads_many({turn_id: 0}, tenant=tenant)
        assert [e["seq"] for e in found[turn_id]] == [1, 2]
    finally:
        await server.close()
        await admin.close()


async def test_the_turns_a_burst_of_notices_names_are_looked_up_in_one_query(deployment,
                                                                            tmp_path):
    """A socket that hears of a turn run elsewhere looks it up (its session and status) before
    following it; fifty at once are one query, as the follower's tenant: another tenant's turn
    is missing, and a read that fails reaches every asker."""
    server, admin, turns = await open_stores(deployment, tmp_path)
    alice, alice_session, alice_turn = turns["alice"]
    _, _, bob_turn = turns["bob"]
    reads = Reads(server)
    queries: list[list[str]] = []
    states = server.turns.states

    async def counted(turn_ids, *, tenant=None):
        queries.append(list(turn_ids))
        return await states(turn_ids, tenant=tenant)

    server.turns.states = counted  # the real query, counted
    token = TENANT.set(alice)
    try:
        found = await asyncio.gather(*(reads.turn(alice_turn) for _ in range(50)),
                                     reads.turn(bob_turn), return_exceptions=True)
        assert found[:50] == [(alice_session, TurnStatus.RUNNING)] * 50
        assert isinstance(found[50], NotFound)  # bob's turn, unseen by alice's tenant
        assert queries == [[alice_turn, bob_turn]]
        await server.pg_events.close()
        await cut_login(deployment, False)
        try:
            failed = await asyncio.gather(reads.turn(alice_turn), reads.payloads(alice_turn, 0),
                                          return_exceptions=True)
            assert all(isinstance(error, Exception) and unavailable(error) for error in failed)
        finally:
            await cut_login(deployment, True)
        assert await reads.turn(alice_turn) == (alice_session, TurnStatus.RUNNING)
    finally:
        TENANT.reset(token)
        await server.close()
        await admin.close()
