"""The trace inspector: a model call's request and reply, turns found across sessions, turn
tags, usage by model and role, and the import of the RLM reference implementation's logs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile

from ..sessions.inspector import (
    LmCallDetail,
    ModelUsageReport,
    TurnQuery,
    TurnSearchPage,
    TurnSort,
    TurnTags,
    parse_when,
)
from ..status import TurnStatus
from .deps import Service, User
from .errors import ApiError
from .guard import MB, body_limit
from .schemas import SessionOut, TurnOut

router = APIRouter(tags=["traces"])


def _when(name: str, value: str | None, *, end: bool = False):
    try:
        return parse_when(value, end=end)
    except ValueError as exc:
        raise ApiError(422, "invalid", f"{name}: {exc}", field=name) from None


@router.get("/turns/{turn_id}/calls/{call_id}", response_model=LmCallDetail)
async def get_call(svc: Service, user: User, turn_id: str, call_id: str) -> LmCallDetail:
    """One model call (the `call_id` of its lm_call event): the messages sent, the reply, the
    model, parameters, tokens, cost, latency, finish reason and attempt. `captured` false:
    only what the event holds, and `missing_reason` says why."""
    return await svc.call(user, turn_id, call_id)


@router.get("/turns", response_model=TurnSearchPage)
async def search_turns(
    svc: Service, user: User,
    q: str | None = Query(None, max_length=500,
                          description="Text in the question or the answer, any case."),
    status: TurnStatus | None = None,
    model: str | None = Query(None, description="A model one of its calls used."),
    min_cost: float | None = Query(None, ge=0), max_cost: float | None = Query(None, ge=0),
    min_duration_s: float | None = Query(None, ge=0),
    max_duration_s: float | None = Query(None, ge=0),
    since: str | None = Query(None, description="Started at or after (ISO date or time)."),
    until: str | None = Query(None, description="Started before (a bare date: through it)."),
    tag: str | None = None,
    sort: TurnSort = "started_at", order: Literal["asc", "desc"] = "desc",
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page."),
) -> TurnSearchPage:
    """The caller's tenant's turns across its sessions, filtered and sorted."""
    query = TurnQuery(tenant_id="", q=q, status=status.value if status else None, model=model,
                      min_cost=min_cost, max_cost=max_cost, min_duration_s=min_duration_s,
                      max_duration_s=max_duration_s, since=_when("since", since),
                      until=_when("until", until, end=True), tag=tag, sort=sort, order=order)
    try:
        return await svc.search_turns(user, query, limit=limit, cursor=cursor)
    except ValueError as exc:  # a cursor this API did not give
        raise ApiError(422, "invalid", f"cursor: {exc}", field="cursor") from None


@router.put("/turns/{turn_id}/tags", response_model=TurnOut)
async def put_tags(svc: Service, user: User, turn_id: str, body: TurnTags) -> TurnOut:
    """Replace the turn's tags."""
    return TurnOut.of(await svc.set_tags(user, turn_id, body.tags))


@router.post("/imports/rlm-log", response_model=SessionOut, status_code=201,
             tags=["sessions"])
@body_limit(lambda s: (s.max_upload_mb * MB, "FLEET_MAX_UPLOAD_MB"))
async def import_rlm_log(svc: Service, user: User, file: Annotated[UploadFile, File()],
                         title: Annotated[str | None, Form(max_length=500)] = None
                         ) -> SessionOut:
    """A trajectory log of the RLM paper's reference implementation (JSON lines) as a
    read-only session, one turn per run. A malformed log or one of another version is 422
    `invalid_log` with the `line` and what was `expected` there; nothing is stored."""
    data = await file.read()
    return SessionOut.of(await svc.import_rlm_log(user, file.filename or "log.jsonl", data,
                                                  title))


@router.get("/usage/models", response_model=ModelUsageReport, tags=["usage"])
async def usage_by_model(svc: Service, user: User, turn_id: str | None = None,
                         session_id: str | None = None, since: str | None = None,
                         until: str | None = None) -> ModelUsageReport:
    """Calls, tokens and cost per model and role, in exactly one scope: `turn_id`,
    `session_id`, or a date range (`since` and/or `until`)."""
    scopes = [turn_id is not None, session_id is not None,
              since is not None or until is not None]
    if sum(scopes) != 1:
        raise ApiError(422, "invalid", "give exactly one scope: turn_id, session_id, or "
                       "since/until", field="scope")
    return await svc.model_usage(user, turn_id=turn_id, session_id=session_id,
                                 since=_when("since", since),
                                 until=_when("until", until, end=True))
