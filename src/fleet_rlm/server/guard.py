"""The checks a request passes before the app reads a byte of its body.

FastAPI reads a JSON or multipart body (spooling uploads to disk) before any dependency runs, so
authentication in a route's dependencies comes too late to keep an anonymous client from making
the server read, parse or store a body. `RequestGuard` is an ASGI middleware in front of the app:
a request that carries a body is authenticated from its headers first (a token, or without login
a loopback Host and origin), and refused with 401/403 unread; its body is then capped by route (a
declared Content-Length past the cap is refused unread, a streamed one when it crosses the cap)
and must keep arriving (a body that stalls gets 408 and its connection is closed). Starlette's
own RequestBodyLimitMiddleware takes one fixed size; ours come from the settings, per route.

Requests without a body (RFC 9112: neither Content-Length nor Transfer-Encoding) are left to the
routes' dependencies, which authenticate as before and reuse the principal found here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from . import errors
from .auth import PRINCIPAL, authenticate
from .errors import ApiError

MB = 1024 * 1024
# Every JSON body of the API is small (titles, settings, feedback).
MAX_JSON_BYTES = MB
# A route's body cap from the settings: (bytes, what sets it).
BodyLimit = Callable[[Settings], tuple[int, str]]
Endpoint = TypeVar("Endpoint", bound=Callable)
# A refused body is never drained: the connection closes after the answer.
CLOSE = {"Connection": "close"}


def json_body(_: Settings) -> tuple[int, str]:
    return MAX_JSON_BYTES, "the API's limit for JSON bodies"


def body_limit(limit: BodyLimit) -> Callable[[Endpoint], Endpoint]:
    """Marks a route whose body may be larger than a JSON request's (apply it below the route
    decorator)."""
    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.body_limit = limit  # type: ignore[attr-defined]
        return endpoint
    return mark


def _has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


# (methods, path pattern, cap) of each route marked with @body_limit.
RouteLimits = list[tuple[set[str], re.Pattern[str], BodyLimit]]


def route_limits(routers: Iterable[APIRouter], prefix: str) -> RouteLimits:
    """The marked routes of `routers` as included under `prefix`: matched here by path, since
    included routers are not flattened into the app's route list."""
    return [(set(route.methods or ()), compile_path(prefix + route.path)[0],
             route.endpoint.body_limit)
            for router in routers for route in router.routes
            if isinstance(route, APIRoute) and hasattr(route.endpoint, "body_limit")]


def _route_limit(scope: Scope, limits: RouteLimits) -> BodyLimit:
    for methods, pattern, limit in limits:
        if scope["method"] in methods and pattern.fullmatch(scope["path"]):
            return limit
    return json_body


def _too_large(limit: int, source: str) -> str:
    size = f"{limit // MB} MB" if limit >= MB else f"{limit:,} bytes"
    return f"the request body is larger than {size} ({source})"


class RequestGuard:
    def __init__(self, app: ASGIApp, limits: RouteLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if not _has_body(headers):
            return await self.app(scope, receive, send)
        settings: Settings = scope["app"].state.svc.settings
        try:
            scope[PRINCIPAL] = await authenticate(HTTPConnection(scope))
            limit, source = _route_limit(scope, self.limits)(settings)
            declared = headers.get("content-length")
            if declared is not None and int(declared) > limit:
                raise ApiError(413, "too_large", _too_large(limit, source))
        except ApiError as exc:
            response = errors.response_of(exc)
            response.headers.update(CLOSE)
            return await response(scope, receive, send)
        await self.app(scope, _guarded(receive, limit, source, settings.body_timeout_s), send)


def _guarded(receive: Receive, limit: int, source: str, timeout: float) -> Receive:
    """`receive` that refuses a body past `limit` (413) or one that stalls for `timeout`
    seconds (408). Both raise inside the app's read, so FastAPI's error handlers answer."""
    received = 0
    complete = False

    async def guarded() -> Message:
        nonlocal received, complete
        if complete:  # later calls wait for a disconnect, for as long as a response streams
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), timeout)
        except TimeoutError:
            raise HTTPException(408, f"the request body stopped arriving for {timeout:g} s "
                                "(FLEET_BODY_TIMEOUT_S)", CLOSE) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, _too_large(limit, source), CLOSE)
            complete = not message.get("more_body", False)
        return message

    return guarded
