"""FastAPI server: REST under /api/v1, the session WebSocket, auth, and the built web app.

`create_app` is imported on first use: `fleet web` reads `local_auth` and prints its URL before
the app (and with it the session service and dspy) loads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
