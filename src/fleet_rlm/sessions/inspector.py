"""The trace inspector's reads: one model call's request and reply, turns found across a
tenant's sessions, turn tags, and usage by model and role.

The bodies here are what the REST API returns (its response models) and what the web app's
types are generated from.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, field_validator

from ..attachments import typed_text
from ..status import TurnStatus
from ..store import NotFound, Store
from ..store import Turn as TurnRow
from ..store.search import TurnQuery, TurnSearch, TurnSort

ANSWER_CHARS = 500  # of an answer in a search result
MAX_TAGS, TAG_CHARS = 32, 64
NOT_KEPT = "the call's request and reply are no longer stored"


class CallMessage(BaseModel):
    role: str
    content: str


class LmCallDetail(BaseModel):
    """One model call (one attempt) as sent and answered."""

    call_id: str
    turn_id: str
    node_id: str
    parent_id: str | None = None
    role: str = Field(description="root, sub, extract, agent or summary.")
    model: str
    params: dict[str, Any] = Field(description="The request's arguments (no credentials).")
    messages: list[CallMessage] = Field(description="The request's messages, in order.")
    reply: str | None = Field(description="The reply's text; None when the attempt failed.")
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_s: float
    finish_reason: str | None
    attempt: int
    error: str | None
    http_status: int | None = None
    retry_in_s: float | None = None
    usage_estimated: bool = False
    iteration: int | None = None
    ts: float = Field(0.0, description="When the call ended (Unix seconds).")
    captured: bool = Field(description="Its messages and reply were kept.")
    missing_reason: str | None = Field(description="Why they were not, when not captured.")


class TurnSummary(BaseModel):
    turn_id: str
    session_id: str
    session_title: str
    question: str
    answer: str | None = Field(description=f"Its first {ANSWER_CHARS} characters.")
    status: TurnStatus
    models: list[str]
    cost_usd: float | None
    calls: int
    duration_s: float | None
    started_at: datetime
    tags: list[str]

    @classmethod
    def of(cls, turn: TurnRow, title: str, models: list[str]) -> TurnSummary:
        usage = turn.usage or {}
        names = [a["name"] for a in turn.attachments or ()]
        answer = turn.answer
        if answer is not None and len(answer) > ANSWER_CHARS:
            answer = answer[:ANSWER_CHARS] + "…"
        return cls(turn_id=turn.id, session_id=turn.session_id, session_title=title,
                   question=typed_text(turn.user_message, names), answer=answer,
                   status=TurnStatus(turn.status), models=models, cost_usd=usage.get("usd"),
                   calls=int(usage.get("calls") or 0), duration_s=usage.get("elapsed_s"),
                   started_at=turn.created_at, tags=list(turn.tags or ()))


class TurnSearchPage(BaseModel):
    items: list[TurnSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None at "
                                    "the end.")


class TurnTags(BaseModel):
    tags: list[str] = Field(max_length=MAX_TAGS)

    @field_validator("tags")
    @classmethod
    def _clean(cls, tags: list[str]) -> list[str]:
        cleaned = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
        for tag in cleaned:
            if len(tag) > TAG_CHARS:
                raise ValueError(f"a tag has at most {TAG_CHARS} characters: {tag[:20]!r}…")
        return cleaned


class ModelUsageRow(BaseModel):
    model: str
    role: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    unpriced_calls: int = Field(0, description="Attempts whose model has no known price: "
                                "cost_usd leaves them out (0 and all unpriced: not known).")


class ModelUsageReport(BaseModel):
    rows: list[ModelUsageRow]


# -- reads -----------------------------------------------------------------------------------
async def call_detail(store: Store, turn_id: str, call_id: str) -> LmCallDetail:
    """The call of `turn_id` (whose tenancy the caller checked); NotFound when unknown."""
    event = await store.events.find_call(turn_id, call_id)
    if event is None:
        raise NotFound("call", call_id)
    record = await asyncio.to_thread(store.calls.read, turn_id, call_id)
    missing = event.get("capture_missing") or (None if record else NOT_KEPT)
    record = record or {}
    fields = ("node_id", "parent_id", "role", "model", "prompt_tokens", "completion_tokens",
              "cost_usd", "latency_s", "finish_reason", "attempt", "error", "http_status",
              "retry_in_s", "usage_estimated", "iteration", "ts")
    return LmCallDetail.model_validate({
        **{name: event[name] for name in fields if name in event},
        "call_id": call_id, "turn_id": turn_id, "params": record.get("params") or {},
        "messages": record.get("messages") or [], "reply": record.get("reply"),
        "captured": missing is None, "missing_reason": missing})


def parse_when(value: str | None, *, end: bool = False) -> datetime | None:
    """An ISO date or date-time, as aware UTC (a naive one is UTC). A bare date as an end is
    the end of that day (`until=2026-12-07` includes the 7th)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        when = datetime.fromisoformat(value)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"not an ISO date or date-time: {value!r} (e.g. 2026-12-07 or "
                         "2026-12-07T13:00:00Z)") from None


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        kind, _, number = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "o" and number.isdigit() and len(number) <= 12:
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ValueError(f"not a cursor this API gave: {cursor!r}")


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


async def search_turns(store: Store, query: TurnQuery, *, limit: int,
                       cursor: str | None) -> TurnSearchPage:
    offset = _offset(cursor)
    found = await TurnSearch(store).find(query, limit=limit + 1, offset=offset)
    items = [TurnSummary.of(turn, title, models) for turn, title, models in found[:limit]]
    return TurnSearchPage(items=items,
                          next_cursor=_cursor(offset + limit) if len(found) > limit else None)


async def model_usage(store: Store, tenant_id: str, **scope: Any) -> ModelUsageReport:
    rows = await TurnSearch(store).model_usage(tenant_id, **scope)
    return ModelUsageReport(rows=[ModelUsageRow(**row) for row in rows])


__all__ = ["CallMessage", "LmCallDetail", "ModelUsageReport", "ModelUsageRow", "TurnQuery",
           "TurnSearchPage", "TurnSort", "TurnSummary", "TurnTags", "call_detail",
           "model_usage", "parse_when", "search_turns"]
