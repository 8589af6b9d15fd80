"""Shared pieces of the browser tests (no tests here): the token of the local-user server."""

from __future__ import annotations

import secrets
from typing import Any

# FLEET_TOKEN of the `fleet web` the Workbench tests drive (FLEET_AUTH=local, the default).
LOCAL_TOKEN = f"e2e-{secrets.token_urlsafe(16)}"
BEARER = {"Authorization": f"Bearer {LOCAL_TOKEN}"}


def sign_in(page: Any) -> None:
    """Open the address `fleet web` prints, as its user would: the app keeps the token and
    takes it out of the address bar."""
    page.goto(f"/?token={LOCAL_TOKEN}")
    page.wait_for_function("!location.search.includes('token')")
