"""The HTTP server's own limits, on uvicorn: `fleet web` and the tests that run a real server
build their uvicorn config here.

uvicorn caps header size, idle keep-alive time (`timeout_keep_alive`) and connections
(`limit_concurrency`: requests past it get 503), but has no deadline for a request's headers: a
client that connects and sends nothing, or a header line now and then (slowloris), holds a
connection for ever. `header_deadline` adds one to uvicorn's HTTP protocol class. It relies on
uvicorn's protocol internals (`loop`, `transport`, `cycle`, `on_response_complete`), named only
here; tests/integration/test_server_limits.py fails when they move. Bodies are timed in the ASGI
middleware (`guard.py`), where the app's reads are.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ..config import Settings

KEEP_ALIVE_S = 5  # uvicorn's default idle time between requests on one connection


def header_deadline(protocol: type[asyncio.Protocol], timeout: float) -> type[asyncio.Protocol]:
    """`protocol` that closes a connection whose next request's headers are not complete
    `timeout` seconds after it opened or after its previous response."""

    class HeaderDeadline(protocol):  # type: ignore[valid-type, misc]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._await_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _await_headers(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(timeout, self._overdue, self.cycle)

        def _overdue(self, cycle: Any) -> None:
            # No request started since (a new one replaces `cycle`), none is in progress, and
            # the connection was not handed to the WebSocket protocol.
            idle = self.cycle is cycle and (cycle is None or cycle.response_complete)
            if idle and self.transport.get_protocol() is self:
                self.transport.close()

    HeaderDeadline.__name__ = f"HeaderDeadline{protocol.__name__}"
    return HeaderDeadline


def uvicorn_config(app: Any, settings: Settings, host: str, port: int,
                   **options: Any) -> uvicorn.Config:
    """The server for `app` with the limits of `settings` (FLEET_HEADER_TIMEOUT_S,
    FLEET_MAX_CONNECTIONS); `options` are uvicorn's own (log level...)."""
    return uvicorn.Config(app, host=host, port=port, ws="websockets-sansio",
                          http=header_deadline(AutoHTTPProtocol, settings.header_timeout_s),
                          limit_concurrency=settings.max_connections,
                          timeout_keep_alive=KEEP_ALIVE_S, **options)
