"""FLEET_AUTH=token: users and tokens from the CLI, bearer tokens on REST and the WebSocket,
tenants that cannot see each other, revocation; and on PostgreSQL, row-level security as a
second wall for a server connected as a role that does not own the tables.

PostgreSQL must be running on 127.0.0.1:5432 (trust auth): without it these tests fail."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from starlette.websockets import WebSocketDisconnect
from test_server_support import API, app_client, quick, settings_for, until_finished, ws_url
from typer.testing import CliRunner

from fleet_rlm.cli import app as cli_app
from fleet_rlm.redaction import RedactSecrets
from fleet_rlm.server.auth import tenant_scope
from fleet_rlm.server.ws import REVOKED, TOKEN_RECHECK_S
from fleet_rlm.store import NotFound, Store
from fleet_rlm.store.repos import TokenRepo, UserRepo

PG = {"host": "127.0.0.1", "port": 5432}


def _fleet(data_dir, *args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args), env={"FLEET_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0, result.output
    return result.output


def _token(data_dir, user: str) -> str:
    return re.search(r"fleet_\S+", _fleet(data_dir, "tokens", "create", user)).group()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _run_turn(client, session_id: str, token: str, text: str) -> list[dict]:
    with client.websocket_connect(ws_url(session_id, token=token)) as ws:
        ws.receive_json()
        ws.send_json({"type": "message", "text": text})
        return until_finished(ws.receive_json)


def _ws_close_code(client, url: str, **kwargs) -> int:
    with (pytest.raises(WebSocketDisconnect) as closed,
          client.websocket_connect(url, **kwargs) as ws):
        ws.receive_json()
    return closed.value.code


def test_tokens_tenants_admin_and_revocation(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi"))
    data = tmp_path / "data"
    assert "tenant alpha, admin" in _fleet(data, "users", "add", "alice", "--tenant", "alpha",
                                           "--admin")
    _fleet(data, "users", "add", "carol", "--tenant", "alpha")
    _fleet(data, "users", "add", "bob")  # a tenant of his own
    alice, bob, carol = (_token(data, u) for u in ("alice", "bob", "carol"))
    listed = _fleet(data, "tokens", "list")
    assert listed.count("user ") == 3 and "fleet_" not in listed  # never the secrets

    with app_client(settings_for(server, data, auth="token")) as client:
        refused = client.get(f"{API}/sessions")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"] == "unauthorized"
        assert client.get(f"{API}/sessions", headers=_bearer("fleet_wrong")).status_code == 401
        assert client.get(f"{API}/health").status_code == 200  # liveness needs no token

        # Any Host once requests carry tokens.
        headers = {**_bearer(alice), "host": "fleet.example.org"}
        session = client.post(f"{API}/sessions", json={"title": "alpha's"}, headers=headers)
        assert session.status_code == 201
        session_id = session.json()["id"]
        document = client.post(f"{API}/sessions/{session_id}/documents", headers=_bearer(alice),
                               files={"file": ("a.txt", b"alpha text")}).json()
        frames = _run_turn(client, session_id, alice, "hello")
        turn_id = frames[-1]["turn_id"]
        assert frames[-1]["answer"] == "hi"

        # Carol shares alice's tenant; bob sees nothing of it, as if it did not exist.
        assert client.get(f"{API}/sessions/{session_id}", headers=_bearer(carol)).status_code == 200
        for method, path in [
            ("GET", f"/sessions/{session_id}"), ("PATCH", f"/sessions/{session_id}"),
            ("DELETE", f"/sessions/{session_id}"), ("GET", f"/sessions/{session_id}/turns"),
            ("GET", f"/sessions/{session_id}/export"), ("GET", f"/turns/{turn_id}"),
            ("GET", f"/turns/{turn_id}/events"), ("GET", f"/sessions/{session_id}/documents"),
            ("GET", f"/documents/{document['id']}"), ("DELETE", f"/documents/{document['id']}"),
            ("GET", f"/sessions/{session_id}/workspace"),
            ("PUT", f"/sessions/{session_id}/workspace/file?path=x.txt"),
        ]:
            response = client.request(method, API + path, headers=_bearer(bob),
                                      json={"title": "mine"} if method == "PATCH" else None)
            assert response.status_code == 404, (method, path)
        assert client.get(f"{API}/sessions", headers=_bearer(bob)).json()["total"] == 0
        assert client.get(f"{API}/usage", headers=_bearer(bob)).json()["items"] == []
        assert client.get(f"{API}/usage", headers=_bearer(alice)).json()["total"]["calls"] == 2
        assert _ws_close_code(client, ws_url(session_id, token=bob)) == 4404
        assert _ws_close_code(client, ws_url(session_id)) == 4401
        with client.websocket_connect(ws_url(session_id), headers=_bearer(alice)) as ws:
            assert ws.receive_json()["type"] == "session"  # the header works too

        # The server's settings: admins only.
        assert client.patch(f"{API}/settings", json={"sub_model": "openai/x"},
                            headers=_bearer(bob)).status_code == 403
        assert client.post(f"{API}/settings/test-sandbox", headers=_bearer(carol)
                           ).status_code == 403
        assert client.patch(f"{API}/settings", json={"sub_model": "openai/x"},
                            headers=_bearer(alice)).status_code == 200
        assert client.get(f"{API}/settings", headers=_bearer(bob)).status_code == 200

        token_id = re.search(r"^(\w+)\s+user", _fleet(data, "tokens", "list", "alice"),
                             re.M).group(1)
        assert "revoked" in _fleet(data, "tokens", "revoke", token_id)
        assert client.get(f"{API}/sessions", headers=_bearer(alice)).status_code == 401
        assert _ws_close_code(client, ws_url(session_id, token=alice)) == 4401
        assert client.get(f"{API}/sessions", headers=_bearer(carol)).json()["total"] == 1

        # Tokens in WebSocket URLs stay out of the server's log.
        record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1,
                                   '%s - "WebSocket %s" [accepted]',
                                   ("127.0.0.1:5", f"/api/v1/x/ws?token={carol}&a=1"), None)
        assert any(isinstance(f, RedactSecrets)
                   for f in logging.getLogger("uvicorn.error").filters)
        RedactSecrets().filter(record)
        assert carol not in record.getMessage() and "token=***&a=1" in record.getMessage()


# -- row-level security on PostgreSQL ------------------------------------------------------------

async def _admin() -> asyncpg.Connection:
    for user in ("postgres", "root"):
        try:
            return await asyncpg.connect(**PG, user=user, database="postgres", timeout=5)
        except Exception:  # noqa: BLE001 - the next user, then a clear failure
            continue
    pytest.fail("PostgreSQL is required at 127.0.0.1:5432 (trust auth, user postgres or root)",
                pytrace=False)


@pytest.fixture
def pg_app_role() -> Iterator[tuple[str, str, str]]:
    """A fresh database migrated by its owner, and a login role that does not own the tables
    (the role a server runs as): (owner url, app url, app role)."""
    suffix = uuid.uuid4().hex[:10]
    name, role = f"fleet_srv_{suffix}", f"fleet_app_{suffix}"

    async def setup() -> str:
        admin = await _admin()
        owner = await admin.fetchval("SELECT current_user")
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.close()
        url = f"postgresql+asyncpg://{owner}@127.0.0.1:5432/{name}"
        store = Store(url, "/tmp")
        async with store:
            await store.upgrade()
        conn = await asyncpg.connect(**PG, user=owner, database=name)
        await conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public '
                           f'TO "{role}"; GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public '
                           f'TO "{role}"')
        await conn.close()
        return url

    async def teardown() -> None:
        admin = await _admin()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()

    owner_url = asyncio.run(setup())
    try:
        yield owner_url, f"postgresql+asyncpg://{role}@127.0.0.1:5432/{name}", role
    finally:
        asyncio.run(teardown())


async def _users(owner_url: str, data_dir) -> dict[str, tuple[str, str]]:
    """name -> (tenant id, token)"""
    out = {}
    async with Store(owner_url, data_dir) as store:
        for name in ("alice", "bob"):
            user = await UserRepo(store).add(name)
            out[name] = (user.tenant_id, (await TokenRepo(store).create(user.id))[1])
    return out


async def _counts(role: str, database: str, tenant: str | None) -> dict[str, int]:
    conn = await asyncpg.connect(**PG, user=role, database=database)
    try:
        async with conn.transaction():
            if tenant is not None:
                await conn.execute("SELECT set_config('fleet.tenant_id', $1, true)", tenant)
            return {t: await conn.fetchval(f"SELECT count(*) FROM {t}")  # noqa: S608
                    for t in ("sessions", "turns", "events", "documents", "memory_blocks")}
    finally:
        await conn.close()


def test_row_level_security_is_a_second_wall_on_postgresql(scripted_lm, tmp_path, pg_app_role):
    owner_url, app_url, role = pg_app_role
    database = app_url.rsplit("/", 1)[1]
    server = scripted_lm(quick("hello", "hi"))
    users = asyncio.run(_users(owner_url, tmp_path))
    (alpha, alice), (beta, bob) = users["alice"], users["bob"]

    settings = settings_for(server, tmp_path, auth="token", database_url=app_url)
    with app_client(settings) as client:
        # The whole path works under RLS: the turn's events and outcome are recorded.
        session_id = client.post(f"{API}/sessions", headers=_bearer(alice), json={}).json()["id"]
        client.post(f"{API}/sessions/{session_id}/documents", headers=_bearer(alice),
                    files={"file": ("a.txt", b"alpha")})
        frames = _run_turn(client, session_id, alice, "hello")
        turn = client.get(f"{API}/turns/{frames[-1]['turn_id']}", headers=_bearer(alice)).json()
        assert (turn["status"], turn["answer"]) == ("ok", "hi")
        stored = client.get(f"{API}/turns/{turn['id']}/events", headers=_bearer(alice)).json()
        assert stored["events"] == frames
        bob_session = client.post(f"{API}/sessions", headers=_bearer(bob), json={}).json()["id"]
        assert client.get(f"{API}/sessions/{session_id}", headers=_bearer(bob)).status_code == 404

        # Past the server's own tenant checks, the database itself hides the other tenant.
        svc = client.app.state.svc

        async def read_as(tenant: str, session: str):
            with tenant_scope(tenant):
                return await svc.store.sessions.get(session)

        assert client.portal.call(read_as, beta, bob_session).id == bob_session
        with pytest.raises(NotFound):
            client.portal.call(read_as, beta, session_id)
        with pytest.raises(NotFound):
            client.portal.call(svc.store.sessions.get, session_id)  # no tenant: no rows

    # The server's role without the setting sees no rows; with one, that tenant's rows only.
    assert asyncio.run(_counts(role, database, None)) == dict.fromkeys(
        ("sessions", "turns", "events", "documents", "memory_blocks"), 0)
    alpha_rows = asyncio.run(_counts(role, database, alpha))
    assert (alpha_rows["sessions"], alpha_rows["turns"], alpha_rows["documents"]) == (1, 1, 1)
    assert alpha_rows["events"] == len(frames)
    assert asyncio.run(_counts(role, database, beta)) == {
        "sessions": 1, "turns": 0, "events": 0, "documents": 0, "memory_blocks": 0}


def test_revoking_a_token_closes_its_open_sockets(scripted_lm, tmp_path):
    server = scripted_lm(quick("hello", "hi"))
    data = tmp_path / "data"
    _fleet(data, "users", "add", "dora")
    dora = _token(data, "dora")
    token_id = re.search(r"^(\w+)\s+user", _fleet(data, "tokens", "list", "dora"), re.M).group(1)
    with app_client(settings_for(server, data, auth="token")) as client:
        session_id = client.post(f"{API}/sessions", json={}, headers=_bearer(dora)).json()["id"]
        with (client.websocket_connect(ws_url(session_id, token=dora)) as idle,
              client.websocket_connect(ws_url(session_id, token=dora)) as talking):
            assert idle.receive_json()["type"] == talking.receive_json()["type"] == "session"
            assert "revoked" in _fleet(data, "tokens", "revoke", token_id)
            revoked = time.monotonic()
            talking.send_json({"type": "message", "text": "hello"})  # no turn for it
            with pytest.raises(WebSocketDisconnect) as closed:
                talking.receive_json()
            assert (closed.value.code, closed.value.reason) == (4401, REVOKED)
            with pytest.raises(WebSocketDisconnect) as closed:  # one that only listens, too
                idle.receive_json()
            assert closed.value.code == 4401
            assert time.monotonic() - revoked < TOKEN_RECHECK_S + 5
    assert server.stats()["calls"] == 0
