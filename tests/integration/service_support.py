"""The session-service fixture shared by the tests that drive turns through the service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.sessions import SessionService

Open = Callable[..., Awaitable[SessionService]]


@pytest.fixture
async def open_service() -> AsyncIterator[Open]:
    """`svc = await open_service(settings, **options)` (options: SessionService's, such as
    `tenant`); every service opened is closed when the test ends."""
    services: list[SessionService] = []

    async def start(settings: Settings, **options) -> SessionService:
        svc = SessionService(settings, **options)
        await svc.open()
        services.append(svc)
        return svc

    yield start
    for svc in services:
        await svc.close()
