"""Route helpers: the service, and lookups that treat another tenant's rows as missing."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..sessions import SessionService
from ..store import Document, NotFound, Session, Turn
from .auth import Principal, current_user


def get_service(request: Request) -> SessionService:
    return request.app.state.svc


Service = Annotated[SessionService, Depends(get_service)]
User = Annotated[Principal, Depends(current_user)]
# The largest integer every store's integer columns hold (PostgreSQL's `integer`): offsets and
# seqs past it are refused as invalid input instead of failing in the database.
MAX_INT = 2**31 - 1


async def session_of(svc: SessionService, user: Principal, session_id: str) -> Session:
    session = await svc.store.sessions.get(session_id)
    if session.tenant_id != user.tenant_id:
        raise NotFound("session", session_id)
    return session


async def turn_of(svc: SessionService, user: Principal, turn_id: str) -> Turn:
    await svc.stored(turn_id=turn_id)
    turn = await svc.store.turns.get(turn_id)
    try:
        await session_of(svc, user, turn.session_id)
    except NotFound:
        raise NotFound("turn", turn_id) from None
    return turn


async def document_of(svc: SessionService, user: Principal, document_id: str) -> Document:
    document = await svc.store.documents.get(document_id)
    try:
        await session_of(svc, user, document.session_id)
    except NotFound:
        raise NotFound("document", document_id) from None
    return document
