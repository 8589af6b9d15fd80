"""A tenant's own limits: its admin lowers them below the server's, every turn of the tenant
stops at them, other tenants' turns do not; nobody else sets them, nobody raises them past the
server's; and on PostgreSQL, as a role that owns nothing, another tenant can neither read nor
write them.

PostgreSQL must be running on 127.0.0.1:5432 (trust auth): without it those tests fail."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from pg_deployment import PG, Deployment
from test_server_support import (
    API,
    app_client,
    asking,
    quick,
    settings_for,
    until_finished,
    ws_url,
)
from typer.testing import CliRunner

from fleet_rlm.cli import app as cli_app
from fleet_rlm.store import Store
from fleet_rlm.store.repos import TokenRepo, UserRepo

LIMITS = f"{API}/tenant/limits"
SERVER_CALLS = 5


def _fleet(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args), env={"FLEET_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0, result.output
    return result.output


def _sqlite_users(data_dir: Path) -> dict[str, dict[str, str]]:
    """alice (admin) and carol in tenant alpha; bob, admin of a tenant of his own."""
    _fleet(data_dir, "users", "add", "alice", "--tenant", "alpha", "--admin")
    _fleet(data_dir, "users", "add", "carol", "--tenant", "alpha")
    _fleet(data_dir, "users", "add", "bob", "--admin")
    return {name: {"Authorization": "Bearer " + re.search(
        r"fleet_\S+", _fleet(data_dir, "tokens", "create", name)).group()}
        for name in ("alice", "carol", "bob")}


async def _pg_users(url: str, data_dir: Path) -> dict[str, dict[str, str]]:
    """The same users on PostgreSQL; also the tenant ids, under "tenant"."""
    out: dict[str, dict[str, str]] = {}
    async with Store(url, data_dir) as store:
        for name, tenant, admin in (("alice", "alpha", True), ("carol", "alpha", False),
                                    ("bob", "bob", True)):
            user = await UserRepo(store).add(name, tenant, admin=admin)
            secret = (await TokenRepo(store).create(user.id))[1]
            out[name] = {"Authorization": f"Bearer {secret}", "tenant": user.tenant_id}
    return out


def _turn(client, headers: dict[str, str], text: str) -> list[dict]:
    token = headers["Authorization"].removeprefix("Bearer ")
    session_id = client.post(f"{API}/sessions", json={}, headers=headers).json()["id"]
    with client.websocket_connect(ws_url(session_id, token=token)) as ws:
        ws.receive_json()
        ws.send_json({"type": "message", "text": text})
        return until_finished(ws.receive_json)


def _only_alphas_turns_stop_at_its_limit(client, users) -> None:
    alice, carol, bob = (
        {"Authorization": users[n]["Authorization"]} for n in ("alice", "carol", "bob"))
    before = client.get(LIMITS, headers=carol).json()
    assert before["tenant"]["max_calls"] is None
    assert before["server"]["max_calls"] == before["effective"]["max_calls"] == SERVER_CALLS

    put = client.put(LIMITS, json={"max_lm_calls": 1}, headers=alice)  # its deprecated name
    assert put.status_code == 200, put.text
    seen = client.get(LIMITS, headers=carol).json()  # any user of the tenant reads them
    assert seen["tenant"]["max_calls"] == seen["effective"]["max_calls"] == 1
    assert seen["server"]["max_calls"] == SERVER_CALLS

    stopped = _turn(client, carol, "alpha question")[-1]
    assert stopped["status"] == "budget" and stopped["answer"] is None
    assert stopped["usage"]["limits"]["max_calls"] == 1 and stopped["usage"]["calls"] == 1
    row = client.get(f"{API}/turns/{stopped['turn_id']}", headers=carol).json()
    assert row["status"] == "budget"  # the stored turn says what its events say

    others = client.get(LIMITS, headers=bob).json()  # bob's tenant is untouched
    assert others["tenant"]["max_calls"] is None
    assert others["effective"]["max_calls"] == SERVER_CALLS
    finished = _turn(client, bob, "beta question")[-1]
    assert (finished["status"], finished["answer"]) == ("ok", "beta answer")
    assert finished["usage"]["limits"]["max_calls"] == SERVER_CALLS


def test_a_tenant_admin_lowers_its_limits_and_only_its_turns_stop_at_them(scripted_lm,
                                                                          tmp_path):
    lm = scripted_lm(quick("alpha question", "alpha answer") + quick("beta question",
                                                                     "beta answer"))
    data = tmp_path / "data"
    users = _sqlite_users(data)
    with app_client(settings_for(lm, data, auth="token", max_calls=SERVER_CALLS)) as client:
        _only_alphas_turns_stop_at_its_limit(client, users)

        # A message may lower the tenant's limit further, never raise it.
        carol = users["carol"]
        session_id = client.post(f"{API}/sessions", json={}, headers=carol).json()["id"]
        token = carol["Authorization"].removeprefix("Bearer ")
        with client.websocket_connect(ws_url(session_id, token=token)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "alpha question",
                          "limits": {"max_calls": 3}})
            refused = ws.receive_json()
        assert (refused["code"], refused["field"], refused["tenant_limit"]) == (
            "invalid", "max_calls", 1)
        assert "above the tenant's limit of 1" in refused["message"]


def test_only_the_tenants_admin_sets_its_limits_and_never_above_the_servers(tmp_path):
    data = tmp_path / "data"
    users = _sqlite_users(data)
    with app_client(settings_for(None, data, auth="token", max_calls=SERVER_CALLS,
                                 max_usd=2.0)) as client:
        refused = client.put(LIMITS, json={"max_calls": 1}, headers=users["carol"])
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"

        raised = client.put(LIMITS, json={"max_calls": 2, "max_usd": 2.5},
                            headers=users["alice"])
        assert raised.status_code == 422
        body = raised.json()
        assert (body["error"], body["field"], body["server_limit"]) == ("invalid", "max_usd", 2.0)
        assert "max_usd: 2.5 is above the server's limit of 2.0" in body["message"]
        assert client.put(LIMITS, json={"max_cats": 1}, headers=users["alice"]).status_code == 422

        # Nothing of the refused requests was kept.
        for name in ("alice", "carol"):
            kept = client.get(LIMITS, headers=users[name]).json()["tenant"]
            assert set(kept.values()) == {None}

        # Each admin sets their own tenant's; null goes back to the server's.
        assert client.put(LIMITS, json={"max_calls": 2}, headers=users["alice"]).is_success
        assert client.put(LIMITS, json={"max_usd": 1.0}, headers=users["bob"]).is_success
        alpha = client.get(LIMITS, headers=users["carol"]).json()["tenant"]
        assert (alpha["max_calls"], alpha["max_usd"]) == (2, None)
        reset = client.put(LIMITS, json={"max_calls": None}, headers=users["alice"]).json()
        assert reset["tenant"]["max_calls"] is None
        assert reset["effective"]["max_calls"] == SERVER_CALLS
        assert client.get(LIMITS, headers=users["bob"]).json()["tenant"]["max_usd"] == 1.0


def test_a_paused_turn_resumes_within_the_tenants_limits_as_they_are_now(scripted_lm,
                                                                          tmp_path):
    lm = scripted_lm(asking("plan my day", "Morning or evening?", "Evening it is."))
    with app_client(settings_for(lm, tmp_path, max_lm_calls=SERVER_CALLS)) as client:
        session_id = client.post(f"{API}/sessions", json={}).json()["id"]
        with client.websocket_connect(ws_url(session_id)) as ws:
            ws.receive_json()
            ws.send_json({"type": "message", "text": "plan my day"})
            first = until_finished(ws.receive_json)
            assert first[-1]["status"] == "waiting" and first[-1]["usage"]["calls"] == 1
            # The local user is the local tenant's admin; two calls are left for the rest.
            assert client.put(LIMITS, json={"max_calls": 2}).is_success
            ws.send_json({"type": "answer", "turn_id": first[-1]["turn_id"], "text": "evening"})
            second = until_finished(ws.receive_json)
    assert second[-1]["status"] == "budget" and second[-1]["answer"] is None
    assert second[-1]["usage"]["limits"]["max_calls"] == 2 and second[-1]["usage"]["calls"] == 2


# -- PostgreSQL, the server connected as a role that owns nothing -----------------------------

def test_tenant_limits_hold_on_postgresql_as_the_servers_role(scripted_lm, tmp_path,
                                                             deployment):
    lm = scripted_lm(quick("alpha question", "alpha answer") + quick("beta question",
                                                                     "beta answer"))
    url = deployment.url(deployment.app)
    users = asyncio.run(_pg_users(url, tmp_path))
    settings = settings_for(lm, tmp_path / "data", auth="token", database_url=url,
                            max_calls=SERVER_CALLS)
    with app_client(settings) as client:
        _only_alphas_turns_stop_at_its_limit(client, users)
        refused = client.put(LIMITS, json={"max_calls": 1},
                             headers={"Authorization": users["carol"]["Authorization"]})
        assert refused.status_code == 403


async def _rows(deployment: Deployment, role: str, tenant: str | None) -> int:
    conn = await asyncpg.connect(**PG, user=role, database=deployment.database)
    try:
        async with conn.transaction():
            if tenant is not None:
                await conn.execute("SELECT set_config('fleet.tenant_id', $1, true)", tenant)
            return await conn.fetchval("SELECT count(*) FROM tenant_limits")
    finally:
        await conn.close()


def test_row_security_keeps_a_tenants_limits_from_other_tenants(tmp_path, deployment):
    url = deployment.url(deployment.app)
    users = asyncio.run(_pg_users(url, tmp_path))
    alpha, beta = users["alice"]["tenant"], users["bob"]["tenant"]

    async def as_tenants() -> None:
        async with Store(url, tmp_path, tenant=alpha) as store:
            await store.tenant_limits.set(alpha, {"max_calls": 1})
            assert await store.tenant_limits.get(alpha) == {"max_calls": 1}
        async with Store(url, tmp_path, tenant=beta) as store:
            assert await store.tenant_limits.get(alpha) == {}  # not seen
            with pytest.raises(sa.exc.DBAPIError, match="row-level security"):
                await store.tenant_limits.set(alpha, {"max_calls": 100})
            await store.tenant_limits.set(beta, {"max_usd": 1.0})
        async with Store(url, tmp_path, tenant=alpha) as store:
            assert await store.tenant_limits.get(alpha) == {"max_calls": 1}  # unchanged

    asyncio.run(as_tenants())
    for role in (deployment.app, deployment.owner):  # forced: the owner is bound too
        assert asyncio.run(_rows(deployment, role, alpha)) == 1
        assert asyncio.run(_rows(deployment, role, beta)) == 1
        assert asyncio.run(_rows(deployment, role, None)) == 0


# -- MCP: rlm_query runs within the caller's tenant's limits ----------------------------------

async def test_mcp_rlm_query_runs_within_the_tenants_limits(scripted_lm, tmp_path):
    pytest.importorskip("mcp")
    from mcp import Client, StdioServerParameters
    from test_mcp import FLEET, server_env

    from fleet_rlm.testing import dspy_reply

    lm = scripted_lm([{"match": r"iteration ## \]\]\n1/", "model": "root",
                       "reply": dspy_reply(reasoning="r", code="SUBMIT(answer='done')")}])
    async with Store(None, tmp_path / "data") as store:  # the local tenant's admin set these
        await store.prepare()
        await store.ensure_local_user()
        await store.tenant_limits.set("local", {"max_calls": 3})
    params = StdioServerParameters(command=FLEET, args=["serve-mcp", "--transport", "stdio"],
                                   env=server_env(tmp_path, lm.api_base), cwd=tmp_path)
    async with Client(params, read_timeout_seconds=120) as client:
        refused = await client.call_tool("rlm_query", {"question": "q", "max_calls": 10})
        assert refused.is_error
        assert "max_calls: 10 is above the tenant's limit of 3" in refused.content[0].text
        ran = await client.call_tool("rlm_query", {"question": "q"})
        assert not ran.is_error, ran.content[0].text
        result = ran.structured_content
        assert result["answer"] == "done"
        assert result["usage"]["limits"]["max_calls"] == 3
