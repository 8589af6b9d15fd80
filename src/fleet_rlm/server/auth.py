"""Who is asking, and which tenant's rows they may see.

FLEET_AUTH=local (the default): one local user, and still a token on every request, so other
users of the machine cannot drive the workspace: the server's token (FLEET_TOKEN, else generated
at start and printed as a URL, `/?token=...`, which the web app keeps). FLEET_AUTH=token: users
and their API tokens, one tenant per user group. FLEET_AUTH=none: no token at all; anyone who can
reach the port is the local user, without admin rights (the settings are read-only). Both local
modes answer only requests whose Host is a loopback name and refuse cross-site writes and
WebSockets, so a web page elsewhere cannot drive the local workspace. Tokens travel as a bearer
header (REST) or the header or `?token=` (WebSocket, for browsers).

The caller becomes a `Principal` (sessions/tenancy.py) passed to the session service, which shows
it only its tenant's sessions; every request also acts for that tenant (`sessions.act_as`), so on
PostgreSQL row-level security (migration 0002) hides other tenants' rows underneath.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import Request
from starlette.requests import HTTPConnection

from ..config import Settings
from ..redaction import redact_logs, remember
from ..sessions import (  # noqa: F401 - the tenancy names, where the server's callers look
    ANONYMOUS,
    LOCAL,
    TENANT,
    Principal,
    act_as,
    install_tenant_guard,
    tenant_scope,
    unavailable,
)
from .errors import ApiError
from .local_auth import is_loopback_host

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PRINCIPAL = "fleet.principal"  # scope key: the caller, when the request guard found it already


def redact_tokens_in_logs(settings: Settings) -> None:
    """Tokens (browsers pass the WebSocket's as ?token=) and keys stay out of the logs."""
    remember(settings.api_key, settings.daytona_api_key, settings.token, settings.mcp_token)
    redact_logs("uvicorn.error", "uvicorn.access", "fleet_rlm")


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
    """The caller, or ApiError 401/403. The rest of the request acts for its tenant."""
    settings = conn.app.state.svc.settings
    if settings.auth == "token":
        secret = _bearer(conn, allow_query=websocket)
        if not secret:
            raise ApiError(401, "unauthorized", "a bearer token is required: "
                           "Authorization: Bearer <token> (create one with `fleet tokens create`)")
        principal = await conn.app.state.svc.authenticate(secret)
        if principal is None:
            raise ApiError(401, "unauthorized", "the token is unknown or revoked")
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
    act_as(principal)
    return principal


async def still_authenticated(conn: HTTPConnection) -> bool:
    """Whether the credentials a WebSocket opened with still hold (a token may be revoked).
    While the database is away this cannot be told: the socket stays, and what its frames ask
    of the store is answered `unavailable` until the check can be made again."""
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
