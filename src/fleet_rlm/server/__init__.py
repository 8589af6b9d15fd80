"""FastAPI server: REST under /api/v1, the session WebSocket, auth, and the built web app."""

from .app import create_app

__all__ = ["create_app"]
