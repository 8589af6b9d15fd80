"""Who is asking, and which tenant's rows they may see.

FLEET_AUTH=none (the default): one local user, no login; the server only answers requests whose
Host is a loopback name and refuses cross-site writes and WebSockets, so a web page elsewhere
cannot drive the local workspace. FLEET_AUTH=token: a bearer token on every request (REST:
Authorization header; WebSocket: the header or `?token=` for browsers).

Every request runs with its tenant in `TENANT`; on PostgreSQL each transaction sets
`fleet.tenant_id` from it, so row-level security (migration 0002) hides other tenants' rows.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.engine import Engine
from starlette.requests import HTTPConnection

from ..store import LOCAL_TENANT_ID, LOCAL_USER_ID
from ..store.repos import TokenRepo
from .errors import ApiError

SYSTEM_TENANT = "*"  # the server's own background work (startup recovery) sees every tenant
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


class RedactTokens(logging.Filter):
    """Browsers pass the WebSocket token as ?token=: keep it out of the server's logs."""

    PATTERN = re.compile(r"([?&]token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1***", record.msg)
        return True


def redact_tokens_in_logs() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


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
    if settings.auth == "none":
        check_local_origin(conn, websocket)
        principal = LOCAL
    else:
        secret = _bearer(conn, allow_query=websocket)
        if not secret:
            raise ApiError(401, "unauthorized", "a bearer token is required: "
                           "Authorization: Bearer <token> (create one with `fleet tokens create`)")
        user = await TokenRepo(conn.app.state.svc.store).authenticate(secret)
        if user is None:
            raise ApiError(401, "unauthorized", "the token is unknown or revoked")
        principal = Principal(user.id, user.tenant_id, user.name, user.admin)
    TENANT.set(principal.tenant_id)
    return principal


async def current_user(request: Request) -> Principal:
    """The FastAPI dependency of every authenticated route."""
    return request.scope.get(PRINCIPAL) or await authenticate(request)


async def admin_user(request: Request) -> Principal:
    principal = await current_user(request)
    if not principal.admin:
        raise ApiError(403, "forbidden", "changing the server's settings needs an admin user "
                       "(`fleet users add NAME --admin`)")
    return principal
