"""Sessions, their turns and events, and the session export."""

from __future__ import annotations

import asyncio
import re
from typing import Literal

from fastapi import APIRouter, Query, Response

from ..config import Settings
from ..sessions import Principal
from . import checks
from .deps import MAX_INT, Service, User
from .errors import ApiError
from .schemas import (
    CheckResult,
    EventList,
    SessionCreate,
    SessionList,
    SessionModels,
    SessionOut,
    SessionPatch,
    TurnOut,
)

router = APIRouter(tags=["sessions"])


@router.get("/sessions", response_model=SessionList)
async def list_sessions(
    svc: Service, user: User,
    q: str | None = Query(None, description="Part of the title, any case."),
    limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=MAX_INT),
    include_archived: bool = False,
) -> SessionList:
    items = await svc.list_sessions(user, q, limit=limit, offset=offset,
                                    include_archived=include_archived)
    total = await svc.count_sessions(user, q, include_archived=include_archived)
    counts = await svc.turn_counts(items)
    return SessionList(items=[SessionOut.of(s, counts.get(s.id, 0)) for s in items],
                       total=total, limit=limit, offset=offset)


@router.post("/sessions", response_model=SessionOut, status_code=201)
async def create_session(svc: Service, user: User, body: SessionCreate | None = None
                         ) -> SessionOut:
    title = body.title if body else "New session"
    session = await svc.create_session(title, principal=user)
    return SessionOut.of(session)


@router.get("/sessions/{session_id}", response_model=SessionOut)
async def get_session(svc: Service, user: User, session_id: str) -> SessionOut:
    return SessionOut.of(await svc.session(user, session_id))


@router.patch("/sessions/{session_id}", response_model=SessionOut)
async def patch_session(svc: Service, user: User, session_id: str, body: SessionPatch
                        ) -> SessionOut:
    """`root_model` and `sub_model` (either sets both; null is the server's) apply from the
    session's next turn. The server's API key goes only where it was set for: models of another
    provider (without an api_base) run without it."""
    fields = body.model_fields_set
    models = ((body.root_model, body.sub_model) if {"root_model", "sub_model"} & fields
              else None)
    if models is not None:
        _destination_allowed(svc.settings, user, svc.settings.with_models(*models))
    return SessionOut.of(await svc.update_session(user, session_id, title=body.title,
                                                  archived=body.archived, models=models))


def _destination_allowed(server: Settings, user: Principal, chosen: Settings) -> None:
    """A session's models that send calls elsewhere than the server's (another api_base, or
    without one another provider) are an admin's choice: a user picks among what the server's
    endpoint or providers serve, and never makes the server call a new destination."""
    if user.admin or chosen.key_destination == server.key_destination:
        return
    raise ApiError(403, "forbidden", f"these models would send calls to "
                   f"{', '.join(chosen.key_destination)}; the server's go to "
                   f"{', '.join(server.key_destination)}, and only an admin chooses models of "
                   "another provider or endpoint")


@router.post("/sessions/{session_id}/test-model", response_model=CheckResult)
async def test_session_model(svc: Service, user: User, session_id: str,
                             body: SessionModels | None = None) -> CheckResult:
    """One tiny call to each of the session's models (or those given, before saving them):
    what "Test connection" shows."""
    session = await svc.session(user, session_id)
    given = body or SessionModels()
    settings = svc.settings.with_models(given.root_model or session.root_model,
                                        given.sub_model or session.sub_model)
    _destination_allowed(svc.settings, user, settings)
    root = await asyncio.to_thread(checks.check_model, settings)
    if not root.ok or settings.effective_sub_model == settings.root_model:
        return root
    sub = await asyncio.to_thread(checks.check_model,
                                  settings.model_copy(update={"root_model":
                                                              settings.effective_sub_model}))
    return sub if not sub.ok else root.model_copy(
        update={"message": f"{root.message}; {sub.message}"})


@router.delete("/sessions/{session_id}", status_code=204)
async def delete_session(svc: Service, user: User, session_id: str) -> Response:
    """409 while a turn is in flight (running or waiting on the user): cancel it first."""
    await svc.delete_session(session_id, principal=user)
    return Response(status_code=204)


@router.get("/sessions/{session_id}/export", responses={200: {
    "description": "The export, as a download",
    "content": {"application/json": {"schema": {"type": "object"}},
                "text/markdown": {"schema": {"type": "string"}}}}})
async def export_session(svc: Service, user: User, session_id: str,
                         format: Literal["json", "markdown"] = "json") -> Response:
    """The session with its documents, turns, answers and every event: JSON, or a Markdown
    transcript."""
    session, text = await svc.export_session(user, session_id, format)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", session.title).strip("-").lower()[:60] or "session"
    name = f"{slug}-{session.id}.{'md' if format == 'markdown' else 'json'}"
    media_type = "text/markdown; charset=utf-8" if format == "markdown" else "application/json"
    return Response(text, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/sessions/{session_id}/turns", response_model=list[TurnOut])
async def list_turns(svc: Service, user: User, session_id: str) -> list[TurnOut]:
    turns = await svc.turns(user, session_id)
    asked = await svc.asked(turns)
    return [TurnOut.of(t, asked.get(t.id, ())) for t in turns]


@router.get("/turns/{turn_id}", response_model=TurnOut)
async def get_turn(svc: Service, user: User, turn_id: str) -> TurnOut:
    turn = await svc.turn(user, turn_id)
    return TurnOut.of(turn, (await svc.asked([turn])).get(turn.id, ()))


@router.get("/turns/{turn_id}/export", responses={200: {
    "description": "The export, as a download",
    "content": {"application/json": {"schema": {"type": "object"}},
                "text/markdown": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}}}}})
async def export_turn(svc: Service, user: User, turn_id: str,
                      format: Literal["json", "markdown", "rlm-log"] = "json") -> Response:
    """The turn with every event (JSON), a Markdown transcript, or its first RLM as a
    trajectory log of the RLM paper's reference implementation (rlm-log, JSON lines; 422 for
    a turn that ran no RLM)."""
    try:
        text = await svc.export_turn(user, turn_id, format)
    except ValueError as exc:  # nothing to write in that format
        raise ApiError(422, "invalid", str(exc), field="format") from None
    extension, media_type = {"json": ("json", "application/json"),
                             "markdown": ("md", "text/markdown; charset=utf-8"),
                             "rlm-log": ("jsonl", "application/x-ndjson")}[format]
    return Response(text, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="turn-{turn_id}.{extension}"'})


@router.get("/turns/{turn_id}/events", response_model=EventList)
async def list_events(svc: Service, user: User, turn_id: str,
                      after_seq: int = Query(0, ge=0, le=MAX_INT),
                      limit: int | None = Query(None, ge=1, le=10_000)) -> EventList:
    """The stored events of a turn after `after_seq` (live ones stream on the WebSocket)."""
    events = await svc.turn_events(user, turn_id, after_seq, limit)
    return EventList(turn_id=turn_id, events=events,
                     last_seq=events[-1]["seq"] if events else after_seq)
