"""Route helpers: the service and the caller. Which sessions the caller may see is the service's
rule (`SessionService.session`, `.turn`, `.document` take the caller)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..sessions import SessionService
from .auth import Principal, current_user


def get_service(request: Request) -> SessionService:
    return request.app.state.svc


Service = Annotated[SessionService, Depends(get_service)]
User = Annotated[Principal, Depends(current_user)]
# The largest integer every store's integer columns hold (PostgreSQL's `integer`): offsets and
# seqs past it are refused as invalid input instead of failing in the database.
MAX_INT = 2**31 - 1
