"""What `fleet web` decides before the app is imported: the server's own token (FLEET_AUTH=local)
and whether an address is loopback. Standard library only, so the command prints its URL before
the app, the session service and dspy load (auth.py applies both to requests)."""

from __future__ import annotations

import ipaddress
import secrets

from ..config import Settings


def with_server_token(settings: Settings) -> Settings:
    """FLEET_AUTH=local: the settings with the server's token, a new one when none is set."""
    if settings.auth != "local" or settings.token:
        return settings
    return settings.model_copy(update={"token": secrets.token_urlsafe(32)})


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
