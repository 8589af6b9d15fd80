"""Who is asking, and which tenant's rows they may see.

FLEET_AUTH=local (the default): one local user, and still a token on every request, so other
users of the machine cannot drive the workspace: the server's token (FLEET_TOKEN, else generated
at start and printed as a URL, `/?token=...`, which the web app keeps). FLEET_AUTH=token: users
and their API tokens, one tenant per user group. FLEET_AUTH=none: no token at all; anyone who can
reach the port is the local user, without admin rights (the settings are read-only). Both local
modes answer only requests whose Host is a loopback name and refuse cross-site writes and
WebSockets, so a web page elsewhere cannot drive the local workspace. Tokens travel as a bearer
header (REST) or the header or `?token=` (WebSocket, for browsers).

Every request runs with its tenant in `TENANT`; on PostgreSQL each transaction sets
`fleet.tenant_id` from it, so row-level security (migration 0002) hides other tenants' rows.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.engine import Engine
from starlette.requests import HTTPConnection

from ..config import Settings
from ..redaction import redact_logs, remember
from ..store import LOCAL_TENANT_ID, LOCAL_USER_ID
from ..store.repos import TokenRepo
from .errors import ApiError

TENANT: ContextVar[str | None] = ContextVar("fleet_tenant", default=None)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PRINCIPAL = "fleet.principal"  # scope key: the caller, when the request guard found it already


@dataclass(frozen=True)
class Principal:
    user_id: str
    tenant_id: str
    name: str
    admin: bool


LOCAL = Principal(LOCAL_USER_ID, LOCAL_TENANT_ID, "local", admin=True)
# FLEET_AUTH=none: whoever reaches the port; not an admin, so no one changes settings anonymously.
ANONYMOUS = Principal(LOCAL_USER_ID, LOCAL_TENANT_ID, "local", admin=False)


def with_server_token(settings: Settings) -> Settings:
    """FLEET_AUTH=local: the settings with the server's token, a new one when none is set."""
    if settings.auth != "local" or settings.token:
        return settings
    return settings.model_copy(update={"token": secrets.token_urlsafe(32)})


def _set_tenant(connection: sa.Connection) -> None:
    tenant = TENANT.get()
    if tenant is not None and connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.set_config("fleet.tenant_id", tenant, True)))


def install_tenant_guard() -> None:
    """From now on, every PostgreSQL transaction in this process begins by setting
    fleet.tenant_id (transaction-local) to the current TENANT, if one is set. Without it,
    row-level security shows no rows."""
    if not sa.event.contains(Engine, "begin", _set_tenant):
        sa.event.listen(Engine, "begin", _set_tenant)


def redact_tokens_in_logs(settings: Settings) -> None:
    """Tokens (browsers pass the WebSocket's as ?token=) and keys stay out of the logs."""
    remember(settings.api_key, settings.daytona_api_key, settings.token, settings.mcp_token)
    redact_logs("uvicorn.error", "uvicorn.access", "fleet_rlm")


@contextmanager
def tenant_scope(tenant_id: str) -> Iterator[None]:
    token = TENANT.set(tenant_id)
    try:
        yield
    finally:
        TENANT.reset(token)


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(netloc: str) -> str:
    return urlsplit(f"//{netloc}").hostname or ""


def check_local_origin(conn: HTTPConnection, websocket: bool) -> None:
    """No-login mode: answer loopback Host names only (no DNS rebinding), and refuse writes and
    WebSockets from pages of other origins."""
    if not is_loopback_host(_host_of(conn.headers.get("host", ""))):
        raise ApiError(403, "forbidden", "this server answers on a loopback address only "
                       "(set FLEET_AUTH=token to serve other hosts)")
    origin = conn.headers.get("origin")
    writes = websocket or conn.scope.get("method", "GET") not in SAFE_METHODS
    if writes and origin and origin != "null" and not is_loopback_host(urlsplit(origin).hostname):
        raise ApiError(403, "forbidden", f"requests from {origin} are not allowed")


def _bearer(conn: HTTPConnection, allow_query: bool) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query:
        return conn.query_params.get("token")
    return None


async def authenticate(conn: HTTPConnection, websocket: bool = False) -> Principal:
    """The caller, or ApiError 401/403. Sets TENANT for the rest of the request."""
    settings = conn.app.state.svc.settings
    if settings.auth == "token":
        secret = _bearer(conn, allow_query=websocket)
        if not secret:
            raise ApiError(401, "unauthorized", "a bearer token is required: "
                           "Authorization: Bearer <token> (create one with `fleet tokens create`)")
        user = await TokenRepo(conn.app.state.svc.store).authenticate(secret)
        if user is None:
            raise ApiError(401, "unauthorized", "the token is unknown or revoked")
        principal = Principal(user.id, user.tenant_id, user.name, user.admin)
    else:
        check_local_origin(conn, websocket)
        principal = LOCAL if settings.auth == "local" else ANONYMOUS
        if settings.auth == "local":
            secret, expected = _bearer(conn, allow_query=websocket), settings.token
            if not (secret and expected and hmac.compare_digest(secret.encode(),
                                                                 expected.encode())):
                raise ApiError(401, "unauthorized", (
                    "the token is wrong" if secret else "this server wants its token") +
                    ": open the URL `fleet web` printed (http://127.0.0.1:PORT/?token=...), or "
                    "send Authorization: Bearer <token> (FLEET_TOKEN sets it)")
    TENANT.set(principal.tenant_id)
    return principal


async def still_authenticated(conn: HTTPConnection) -> bool:
    """Whether the credentials a WebSocket opened with still hold (a token may be revoked).
    While the database is away this cannot be told: the socket stays, and what its frames ask
    of the store is answered `unavailable` until the check can be made again."""
    from ..store.faults import unavailable

    try:
        await authenticate(conn, websocket=True)
    except ApiError:
        return False
    except Exception as exc:
        if not unavailable(exc):
            raise
    return True


async def current_user(request: Request) -> Principal:
    """The FastAPI dependency of every authenticated route."""
    return request.scope.get(PRINCIPAL) or await authenticate(request)


async def admin_user(request: Request) -> Principal:
    principal = await current_user(request)
    if not principal.admin:
        raise ApiError(403, "forbidden", "changing the server's settings needs an admin: "
                       "with FLEET_AUTH=token an admin user (`fleet users add NAME --admin`); "
                       "with FLEET_AUTH=none nobody (use the default FLEET_AUTH=local)")
    return principal
