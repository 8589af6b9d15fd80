"""Row-level security on PostgreSQL as a deployment runs it: the schema migrated and granted by
`fleet db upgrade --url OWNER_URL --grant ROLE`, the server connected as a role that owns nothing,
policies forced on the owner too, and a server that refuses roles the policies do not bind.

PostgreSQL must be running on 127.0.0.1:5432 (trust auth): without it these tests fail."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from pg_deployment import PG, PREFIX, Deployment, add_users, fleet, superuser
from test_server_support import API, app_client, settings_for, slow, until_finished, ws_url
from typer.testing import CliRunner

from fleet_rlm.cli import app as cli_app
from fleet_rlm.store import Session, Store
from fleet_rlm.store.db import ALL_TENANTS
from fleet_rlm.store.errors import SchemaNotReady
from fleet_rlm.store.repos import UserRepo

TABLES = ("sessions", "turns", "events", "documents", "memory_blocks")


async def _counts(deployment: Deployment, role: str, tenant: str | None) -> dict[str, int]:
    conn = await asyncpg.connect(**PG, user=role, database=deployment.database)
    try:
        async with conn.transaction():
            if tenant is not None:
                await conn.execute("SELECT set_config('fleet.tenant_id', $1, true)", tenant)
            return {t: await conn.fetchval(f"SELECT count(*) FROM {t}")  # noqa: S608
                    for t in TABLES}
    finally:
        await conn.close()


def test_two_tenants_concurrent_turns_keep_all_their_events(scripted_lm, tmp_path, deployment):
    lm = scripted_lm(slow("alpha question", "alpha answer", 3, 150)
                     + slow("beta question", "beta answer", 3, 150))
    users = asyncio.run(add_users(deployment.url(deployment.app), tmp_path))
    settings = settings_for(lm, tmp_path / "data", auth="token",
                            database_url=deployment.url(deployment.app))
    with app_client(settings) as client:
        sockets, frames = {}, {}
        for name, text in (("alice", "alpha question"), ("bob", "beta question")):
            token = users[name][1]
            headers = {"Authorization": f"Bearer {token}"}
            session_id = client.post(f"{API}/sessions", headers=headers, json={}).json()["id"]
            ws = client.websocket_connect(ws_url(session_id, token=token)).__enter__()
            ws.receive_json()
            ws.send_json({"type": "message", "text": text})
            sockets[name] = (ws, headers)
        for name, (ws, _) in sockets.items():  # both turns ran at once; read them in turn
            frames[name] = until_finished(ws.receive_json)
            ws.__exit__(None, None, None)
        for name, answer in (("alice", "alpha answer"), ("bob", "beta answer")):
            headers = sockets[name][1]
            turn_id = frames[name][-1]["turn_id"]
            turn = client.get(f"{API}/turns/{turn_id}", headers=headers).json()
            assert (turn["status"], turn["answer"], turn["error"]) == ("ok", answer, None)
            stored = client.get(f"{API}/turns/{turn_id}/events", headers=headers).json()
            assert stored["events"] == frames[name]  # every event, in its tenant
    # Each tenant's rows are its own, seen through the server's role.
    for name in ("alice", "bob"):
        counts = asyncio.run(_counts(deployment, deployment.app, users[name][0]))
        assert (counts["sessions"], counts["turns"]) == (1, 1)
        assert counts["events"] == len([f for f in frames[name] if "seq" in f])


def test_policies_bind_the_tables_owner_too(tmp_path, deployment):
    users = asyncio.run(add_users(deployment.url(deployment.owner), tmp_path))
    (alpha, _), (beta, _) = users["alice"], users["bob"]

    async def alphas_session() -> None:
        async with Store(deployment.url(deployment.owner), tmp_path) as store:
            alice = await UserRepo(store).find("alice")
            async with store.transaction(alpha) as db:
                db.add(Session(tenant_id=alpha, user_id=alice.id, title="a", archived=False))

    asyncio.run(alphas_session())
    assert asyncio.run(_counts(deployment, deployment.owner, alpha))["sessions"] == 1
    # Forced: the owner without a tenant, or with another's, sees nothing.
    assert asyncio.run(_counts(deployment, deployment.owner, None))["sessions"] == 0
    assert asyncio.run(_counts(deployment, deployment.owner, beta))["sessions"] == 0


def test_command_line_tools_act_for_every_tenant_as_the_owner(tmp_path, deployment):
    owner_url = deployment.url(deployment.owner)
    users = asyncio.run(add_users(owner_url, tmp_path))

    async def a_turn() -> str:
        async with Store(owner_url, tmp_path, tenant=ALL_TENANTS) as store:
            alice = await UserRepo(store).find("alice")
            session = await store.sessions.create("alpha's", tenant_id=users["alice"][0],
                                                  user_id=alice.id)
            turn = await store.turns.start(session.id, "hello")
            await store.events.append_many(turn.id, [{"seq": 1, "type": "turn_started"}])
            return turn.id

    turn_id = asyncio.run(a_turn())
    out = fleet("export", turn_id, FLEET_DATABASE_URL=owner_url,
                FLEET_DATA_DIR=str(tmp_path / "cli"))
    assert turn_id in out and "turn_started" in out


def test_the_server_never_migrates_postgresql(tmp_path, empty_deployment):
    settings = settings_for(None, tmp_path / "data",
                            database_url=empty_deployment.url(empty_deployment.owner))
    with pytest.raises(SchemaNotReady, match="fleet db upgrade"), app_client(settings):
        pass

    async def tables() -> int:
        conn = await asyncpg.connect(**PG, user="postgres", database=empty_deployment.database)
        try:
            return await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = "
                                       "'public'")
        finally:
            await conn.close()

    assert asyncio.run(tables()) == 0


@pytest.mark.parametrize("command", [["web", "--port", "1"],
                                     ["serve-mcp", "--transport", "http", "--port", "1"]],
                         ids=["web", "mcp"])
@pytest.mark.parametrize("attribute", ["SUPERUSER", "BYPASSRLS"])
def test_token_mode_refuses_a_role_that_bypasses_row_security(tmp_path, deployment, attribute,
                                                               command):
    role = f"{PREFIX}_strong_{uuid.uuid4().hex[:8]}"
    asyncio.run(superuser(f'CREATE ROLE "{role}" LOGIN {attribute}'))
    try:
        env = {"FLEET_AUTH": "token", "FLEET_DATABASE_URL": deployment.url(role),
               "FLEET_DATA_DIR": str(tmp_path / "data")}
        result = CliRunner().invoke(cli_app, command, env=env)
        assert result.exit_code == 1
        said = " ".join(result.output.split())
        kind = "a superuser" if attribute == "SUPERUSER" else "a role with BYPASSRLS"
        assert f"'{role}' is {kind}" in said
        assert "CREATE ROLE fleet_app LOGIN" in said and "--grant fleet_app" in said
    finally:
        asyncio.run(superuser(f'DROP ROLE IF EXISTS "{role}"'))


def test_optimisation_rows_are_their_tenants_own(tmp_path, deployment):
    users = asyncio.run(add_users(deployment.url(deployment.owner), tmp_path))
    (alpha, _), (beta, _) = users["alice"], users["bob"]

    async def alphas_rows() -> None:
        async with Store(deployment.url(deployment.app), tmp_path, tenant=alpha) as store:
            await store.datasets.create(alpha, "d", "jsonl", [{"question": "q", "answer": "a"}])
            version = await store.programs.add(
                alpha, "agent", dataset="d", metric="exact", release="r", baseline={},
                instructions={}, score_before=0.0, score_after=1.0, stopped=None, detail={})
            await store.programs.promote(alpha, "agent", version.id, "alice")

    asyncio.run(alphas_rows())

    async def counts(tenant: str | None) -> dict[str, int]:
        conn = await asyncpg.connect(**PG, user=deployment.app, database=deployment.database)
        try:
            async with conn.transaction():
                if tenant is not None:
                    await conn.execute("SELECT set_config('fleet.tenant_id', $1, true)", tenant)
                return {t: await conn.fetchval(f"SELECT count(*) FROM {t}")  # noqa: S608
                        for t in ("datasets", "program_versions", "promotions", "feedback")}
        finally:
            await conn.close()

    assert asyncio.run(counts(alpha)) == {"datasets": 1, "program_versions": 1,
                                          "promotions": 1, "feedback": 0}
    assert set(asyncio.run(counts(beta)).values()) == {0}
    assert set(asyncio.run(counts(None)).values()) == {0}
