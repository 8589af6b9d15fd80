"""Optimisation in the web app: the tenant's datasets and program versions (scores, prompt
diff, score curve, cost), and promotion and rollback by its admin."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..sessions import NotFound
from ..sessions.programs import Incompatible
from .deps import Service, User
from .errors import ApiError
from .routes_limits import TenantAdmin

router = APIRouter(tags=["optimise"])


class DatasetOut(BaseModel):
    name: str
    source: Literal["feedback", "jsonl", "bench"]
    benchmark: str | None
    examples: int
    created_at: datetime


class ProgramVersionOut(BaseModel):
    id: str
    target: Literal["agent", "rlm"]
    number: int
    dataset: str
    metric: str
    score_before: float = Field(description="The baseline's score on the validation split.")
    score_after: float = Field(description="The version's score on the validation split.")
    stopped: str | None = Field(description="Why the run stopped early (a limit), if it did.")
    compatible: bool = Field(description="Made for the program this release runs.")
    promoted: bool
    instructions: dict[str, str]
    baseline: dict[str, str]
    prompt_diff: str
    curve: list[dict[str, Any]] = Field(description="Each validated candidate's score.")
    usage: dict[str, Any] | None = Field(description="What the run spent.")
    created_at: datetime


class ProgramsOut(BaseModel):
    versions: list[ProgramVersionOut]
    promoted: dict[str, str | None] = Field(
        description="The version new turns run, by target (null: the baseline).")


@router.get("/optimise/datasets", response_model=list[DatasetOut])
async def list_datasets(svc: Service, user: User) -> list[DatasetOut]:
    return [DatasetOut(name=d.name, source=d.source, benchmark=d.benchmark,
                       examples=len(d.examples), created_at=d.created_at)
            for d in await svc.datasets(user)]


@router.get("/programs", response_model=ProgramsOut)
async def list_programs(svc: Service, user: User) -> ProgramsOut:
    versions, promoted = await svc.program_versions(user)
    live = {target: v.id for target, v in promoted.items()}
    return ProgramsOut(
        versions=[ProgramVersionOut(
            id=v.id, target=v.target, number=v.number, dataset=v.dataset, metric=v.metric,
            score_before=v.score_before, score_after=v.score_after, stopped=v.stopped,
            compatible=v.release == svc.programs.release(v.target),
            promoted=live.get(v.target) == v.id, instructions=v.instructions,
            baseline=v.baseline, prompt_diff=v.detail.get("prompt_diff", ""),
            curve=v.detail.get("curve", []), usage=v.detail.get("usage"),
            created_at=v.created_at) for v in versions],
        promoted={target: live.get(target) for target in ("agent", "rlm")})


@router.post("/programs/{version_id}/promote", response_model=ProgramsOut)
async def promote(svc: Service, user: TenantAdmin, version_id: str) -> ProgramsOut:
    """New turns of the tenant run this version. 409 for a version of another release."""
    try:
        await svc.promote(user, version_id)
    except Incompatible as exc:
        raise ApiError(409, "incompatible", str(exc)) from None
    return await list_programs(svc, user)


@router.post("/programs/targets/{target}/rollback", response_model=ProgramsOut)
async def rollback(svc: Service, user: TenantAdmin, target: Literal["agent", "rlm"]
                   ) -> ProgramsOut:
    """Put back what the promotion in force replaced. 404 when nothing was promoted."""
    try:
        await svc.rollback(user, target)
    except NotFound:
        raise ApiError(404, "not_found", f"nothing promoted for {target}: the baseline runs",
                       kind="promotion", id=target) from None
    return await list_programs(svc, user)
