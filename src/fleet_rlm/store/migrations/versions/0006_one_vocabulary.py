"""One vocabulary: a turn's row holds the status its turn_finished event says, and the calls
limit is named `max_calls` wherever a limit is stored.

Statuses: `done` becomes `ok`; `failed` becomes `budget` where the turn's last turn_finished
event says `budget` (or, its events lost, its error is a budget's), else `error`. Limits: the
key `max_lm_calls` becomes `max_calls` in a tenant's limits and in a waiting turn's overrides.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OLD = ("running", "waiting", "done", "cancelled", "failed", "interrupted")
NEW = ("running", "waiting", "ok", "budget", "cancelled", "error", "interrupted")
BUDGET_ERRORS = ("BudgetExceeded:", "budget exceeded:")
LIMIT_NAMES = {"max_lm_calls": "max_calls"}

turns = sa.table("turns", sa.column("id", sa.String), sa.column("status", sa.String),
                 sa.column("error", sa.Text), sa.column("pending", JSON))
events = sa.table("events", sa.column("turn_id", sa.String), sa.column("seq", sa.Integer),
                  sa.column("type", sa.String), sa.column("payload", JSON))
tenant_limits = sa.table("tenant_limits", sa.column("tenant_id", sa.String),
                         sa.column("limits", JSON))


def _check(values: tuple[str, ...]) -> str:
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def _set_check(values: tuple[str, ...], remap: Any) -> None:
    """Drop the status check, move the rows (`remap(bind)`), check the new set. 0001 named the
    check ck_turns_ck_turns_status; the models, and from here the database, ck_turns_status."""
    bind = op.get_bind()
    names = [check["name"] for check in sa.inspect(bind).get_check_constraints("turns")
             if "status" in check["sqltext"] and check["name"]]
    with op.batch_alter_table("turns") as batch:
        for name in names:
            batch.drop_constraint(op.f(name), type_="check")
    remap(bind)
    with op.batch_alter_table("turns") as batch:
        batch.create_check_constraint(op.f("ck_turns_status"), _check(values))


def _budget_stopped(bind: sa.Connection) -> list[str]:
    """The `failed` turns a limit stopped: their last turn_finished says so, or (no such event
    stored) their error is a BudgetExceeded."""
    failed = dict(bind.execute(sa.select(turns.c.id, turns.c.error)
                               .where(turns.c.status == "failed")).all())
    last: dict[str, Any] = {}
    for turn_id, payload in bind.execute(
            sa.select(events.c.turn_id, events.c.payload)
            .select_from(events.join(turns, turns.c.id == events.c.turn_id))
            .where(turns.c.status == "failed", events.c.type == "turn_finished")
            .order_by(events.c.turn_id, events.c.seq)):
        last[turn_id] = (payload or {}).get("status")
    return [turn_id for turn_id, error in failed.items()
            if last.get(turn_id) == "budget"
            or (turn_id not in last and (error or "").startswith(BUDGET_ERRORS))]


def _rename_limits(bind: sa.Connection, names: dict[str, str]) -> None:
    def renamed(limits: dict[str, Any]) -> dict[str, Any]:
        return {names.get(key, key): value for key, value in limits.items()}

    for tenant_id, limits in bind.execute(sa.select(tenant_limits.c.tenant_id,
                                                    tenant_limits.c.limits)).all():
        if isinstance(limits, dict) and set(limits) & set(names):
            bind.execute(tenant_limits.update().where(tenant_limits.c.tenant_id == tenant_id)
                         .values(limits=renamed(limits)))
    for turn_id, pending in bind.execute(sa.select(turns.c.id, turns.c.pending)
                                         .where(turns.c.status == "waiting")).all():
        overrides = (pending or {}).get("limits")
        if isinstance(overrides, dict) and set(overrides) & set(names):
            bind.execute(turns.update().where(turns.c.id == turn_id)
                         .values(pending={**pending, "limits": renamed(overrides)}))


def upgrade() -> None:
    def remap(bind: sa.Connection) -> None:
        budget = _budget_stopped(bind)
        if budget:
            bind.execute(turns.update().where(turns.c.id.in_(budget)).values(status="budget"))
        bind.execute(turns.update().where(turns.c.status == "failed").values(status="error"))
        bind.execute(turns.update().where(turns.c.status == "done").values(status="ok"))
        _rename_limits(bind, LIMIT_NAMES)

    _set_check(NEW, remap)


def downgrade() -> None:
    def remap(bind: sa.Connection) -> None:
        bind.execute(turns.update().where(turns.c.status.in_(("budget", "error")))
                     .values(status="failed"))
        bind.execute(turns.update().where(turns.c.status == "ok").values(status="done"))
        _rename_limits(bind, {new: old for old, new in LIMIT_NAMES.items()})

    _set_check(OLD, remap)
