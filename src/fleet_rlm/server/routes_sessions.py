"""Sessions, their turns and events, and the session export."""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Query, Response

from .. import export
from .deps import MAX_INT, Service, User, session_of, turn_of
from .schemas import EventList, SessionCreate, SessionList, SessionOut, SessionPatch, TurnOut

router = APIRouter(tags=["sessions"])


@router.get("/sessions", response_model=SessionList)
async def list_sessions(
    svc: Service, user: User,
    q: str | None = Query(None, description="Part of the title, any case."),
    limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_INT),
    include_archived: bool = False,
) -> SessionList:
    sessions = svc.store.sessions
    items = await sessions.list(user.tenant_id, q, limit=limit, offset=offset,
                                include_archived=include_archived)
    total = await sessions.count(user.tenant_id, q, include_archived=include_archived)
    return SessionList(items=[SessionOut.of(s) for s in items], total=total, limit=limit,
                       offset=offset)


@router.post("/sessions", response_model=SessionOut, status_code=201)
async def create_session(svc: Service, user: User, body: SessionCreate | None = None
                         ) -> SessionOut:
    title = body.title if body else "New session"
    session = await svc.store.sessions.create(title, tenant_id=user.tenant_id,
                                              user_id=user.user_id)
    return SessionOut.of(session)


@router.get("/sessions/{session_id}", response_model=SessionOut)
async def get_session(svc: Service, user: User, session_id: str) -> SessionOut:
    return SessionOut.of(await session_of(svc, user, session_id))


@router.patch("/sessions/{session_id}", response_model=SessionOut)
async def patch_session(svc: Service, user: User, session_id: str, body: SessionPatch
                        ) -> SessionOut:
    session = await session_of(svc, user, session_id)
    if body.title is not None:
        session = await svc.store.sessions.rename(session_id, body.title)
    if body.archived is not None:
        session = await svc.store.sessions.archive(session_id, body.archived)
    return SessionOut.of(session)


@router.delete("/sessions/{session_id}", status_code=204)
async def delete_session(svc: Service, user: User, session_id: str) -> Response:
    """409 while a turn is in flight (running or waiting on the user): cancel it first."""
    await session_of(svc, user, session_id)
    await svc.delete_session(session_id)
    return Response(status_code=204)


@router.get("/sessions/{session_id}/export")
async def export_session(svc: Service, user: User, session_id: str,
                         format: Literal["json", "markdown"] = "json") -> Response:
    """The session with its documents, turns, answers and every event: JSON, or a Markdown
    transcript."""
    session = await session_of(svc, user, session_id)
    await svc.stored(session_id)
    text = await export.export_session(svc.store, session_id, format)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", session.title).strip("-").lower()[:60] or "session"
    name = f"{slug}-{session.id}.{'md' if format == 'markdown' else 'json'}"
    media_type = "text/markdown; charset=utf-8" if format == "markdown" else "application/json"
    return Response(text, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/sessions/{session_id}/turns", response_model=list[TurnOut])
async def list_turns(svc: Service, user: User, session_id: str) -> list[TurnOut]:
    await session_of(svc, user, session_id)
    await svc.stored(session_id)
    return [TurnOut.of(t) for t in await svc.store.turns.list(session_id)]


@router.get("/turns/{turn_id}", response_model=TurnOut)
async def get_turn(svc: Service, user: User, turn_id: str) -> TurnOut:
    return TurnOut.of(await turn_of(svc, user, turn_id))


@router.get("/turns/{turn_id}/events", response_model=EventList)
async def list_events(svc: Service, user: User, turn_id: str,
                      after_seq: int = Query(0, ge=0, le=MAX_INT),
                      limit: int | None = Query(None, ge=1, le=10_000)) -> EventList:
    """The stored events of a turn after `after_seq` (live ones stream on the WebSocket)."""
    await turn_of(svc, user, turn_id)
    live = svc.live.get(turn_id)
    if live is not None:  # what the turn emitted so far is in the store
        await live.recorder.flush()
    records = await svc.store.events.list(turn_id, after_seq=after_seq, limit=limit)
    events = [r.payload for r in records]
    return EventList(turn_id=turn_id, events=events,
                     last_seq=events[-1]["seq"] if events else after_seq)
