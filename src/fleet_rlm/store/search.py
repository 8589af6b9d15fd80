"""Turns found across a tenant's sessions, and model usage summed from the lm_call events.

A turn's cost, call count and duration are those its usage records (`usd`, `calls`,
`elapsed_s`); the models it used are those of its lm_call events. Queries read JSON fields
with SQLAlchemy's JSON operators, which SQLite and PostgreSQL both spell.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from .models import Event, Session, Turn

if TYPE_CHECKING:
    from .db import Store

TurnSort = Literal["started_at", "cost_usd", "duration_s", "calls", "status"]


@dataclass(frozen=True)
class TurnQuery:
    """Which of a tenant's turns to find; every filter left None matches all."""

    tenant_id: str
    q: str | None = None
    status: str | None = None
    model: str | None = None
    min_cost: float | None = None
    max_cost: float | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    tag: str | None = None
    sort: TurnSort = "started_at"
    order: Literal["asc", "desc"] = "desc"


def _cost() -> Any:
    return Turn.usage["usd"].as_float()


def _duration() -> Any:
    return Turn.usage["elapsed_s"].as_float()


def _calls() -> Any:
    return Turn.usage["calls"].as_integer()


def _has_tag(dialect: str, tag: str) -> Any:
    if dialect == "postgresql":
        return Turn.tags.op("@>")(sa.cast(sa.literal([tag], sa.JSON), Turn.tags.type))
    each = sa.func.json_each(Turn.tags).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))


def _used_model(model: str) -> Any:
    return sa.exists(sa.select(1).where(
        Event.turn_id == Turn.id, Event.type == "lm_call",
        Event.payload["model"].as_string() == model))


class TurnSearch:
    def __init__(self, store: Store) -> None:
        self._store = store

    def _where(self, query: TurnQuery, dialect: str) -> list[Any]:
        where: list[Any] = [Session.tenant_id == query.tenant_id]
        if query.q:
            where.append(sa.or_(Turn.user_message.icontains(query.q, autoescape=True),
                                Turn.answer.icontains(query.q, autoescape=True)))
        if query.status:
            where.append(Turn.status == query.status)
        if query.model:
            where.append(_used_model(query.model))
        bounds = ((_cost(), query.min_cost, query.max_cost),
                  (_duration(), query.min_duration_s, query.max_duration_s))
        for column, low, high in bounds:
            if low is not None:
                where.append(column >= low)
            if high is not None:
                where.append(column <= high)
        if query.since is not None:
            where.append(Turn.created_at >= query.since)
        if query.until is not None:
            where.append(Turn.created_at < query.until)
        if query.tag:
            where.append(_has_tag(dialect, query.tag))
        return where

    async def find(self, query: TurnQuery, *, limit: int, offset: int
                   ) -> list[tuple[Turn, str, list[str]]]:
        """A page of the matching turns: (turn, its session's title, the models it used)."""
        column = {"started_at": Turn.created_at, "cost_usd": _cost(),
                  "duration_s": _duration(), "calls": _calls(), "status": Turn.status}[query.sort]
        direction = sa.asc if query.order == "asc" else sa.desc
        async with self._store.reading() as db:
            dialect = db.get_bind().dialect.name
            stmt = (sa.select(Turn, Session.title).join(Session, Session.id == Turn.session_id)
                    .where(*self._where(query, dialect))
                    .order_by(direction(column).nulls_last(), direction(Turn.id))
                    .limit(limit).offset(offset))
            rows = [(turn, title) for turn, title in (await db.execute(stmt)).all()]
            models: dict[str, list[str]] = {}
            if rows:
                used = await db.execute(
                    sa.select(Event.turn_id, Event.payload["model"].as_string()).distinct()
                    .where(Event.turn_id.in_([t.id for t, _ in rows]), Event.type == "lm_call"))
                for turn_id, model in used.all():
                    if model:
                        models.setdefault(turn_id, []).append(model)
        return [(turn, title, sorted(models.get(turn.id, []))) for turn, title in rows]

    async def model_usage(self, tenant_id: str, *, turn_id: str | None = None,
                          session_id: str | None = None, since: datetime | None = None,
                          until: datetime | None = None) -> list[dict[str, Any]]:
        """Calls, tokens and cost per (model, role) of the tenant's lm_call events in one
        scope: a turn, a session, or turns started in [since, until). A call is an attempt
        that counted in its budget; tokens and cost are every attempt's (`unpriced_calls`: the
        attempts whose model has no known price, so the cost is a floor)."""
        payload = Event.payload
        stmt = (sa.select(payload["model"].as_string(), payload["role"].as_string(),
                          payload["prompt_tokens"].as_integer(),
                          payload["completion_tokens"].as_integer(),
                          payload["cost_usd"].as_float(), payload["counted"].as_boolean())
                .join(Turn, Turn.id == Event.turn_id)
                .join(Session, Session.id == Turn.session_id)
                .where(Session.tenant_id == tenant_id, Event.type == "lm_call"))
        if turn_id is not None:
            stmt = stmt.where(Turn.id == turn_id)
        if session_id is not None:
            stmt = stmt.where(Turn.session_id == session_id)
        if since is not None:
            stmt = stmt.where(Turn.created_at >= since)
        if until is not None:
            stmt = stmt.where(Turn.created_at < until)
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        async with self._store.reading() as db:
            for model, role, prompt, completion, cost, counted in (await db.execute(stmt)):
                row = rows.setdefault((model or "", role or ""), {
                    "model": model or "", "role": role or "", "calls": 0, "prompt_tokens": 0,
                    "completion_tokens": 0, "cost_usd": 0.0, "unpriced_calls": 0})
                row["calls"] += 0 if counted is not None and not counted else 1
                row["prompt_tokens"] += prompt or 0
                row["completion_tokens"] += completion or 0
                row["cost_usd"] += cost or 0.0
                row["unpriced_calls"] += cost is None
        return sorted(rows.values(), key=lambda r: (-r["cost_usd"], r["model"], r["role"]))
