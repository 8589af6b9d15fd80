"""Optimisation in the web app: the tenant's datasets and program versions (scores, prompt
diff, score curve, cost), and promotion and rollback by its admin."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ..optimize.datasets import DatasetError
from ..sessions import LimitRaised, NotFound
from ..sessions.optimising import OptimisationRun
from ..sessions.programs import Incompatible
from .deps import Service, User
from .errors import ApiError
from .routes_limits import TenantAdmin
from .schemas import Limits

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
    releases = {t: await svc.programs.current_release(t) for t in {v.target for v in versions}}
    return ProgramsOut(
        versions=[ProgramVersionOut(
            id=v.id, target=v.target, number=v.number, dataset=v.dataset, metric=v.metric,
            score_before=v.score_before, score_after=v.score_after, stopped=v.stopped,
            compatible=v.release == releases[v.target],
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


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Literal["agent", "rlm"]
    dataset: str = Field(max_length=200)
    metric: str | None = Field(None, max_length=64, description="Default: bench for a "
                               "benchmark dataset, else normalised.")
    max_metric_calls: int | None = Field(
        None, gt=0, le=10_000, description="Runs of the program GEPA may make (default: "
        "GEPA's light budget).")
    limits: Limits | None = Field(None, description="Lower the run's budget below one turn's.")


class RunOut(BaseModel):
    id: str
    target: Literal["agent", "rlm"]
    dataset: str
    metric: str
    state: Literal["running", "done", "failed"]
    started_at: datetime
    metric_calls: int = Field(description="Runs of the program so far.")
    curve: list[dict[str, Any]] = Field(description="Each validated candidate's score.")
    version_id: str | None = Field(description="The version it saved (done).")
    error: str | None

    @classmethod
    def of(cls, run: OptimisationRun) -> RunOut:
        return cls(id=run.id, target=run.target, dataset=run.dataset,  # type: ignore[arg-type]
                   metric=run.metric, state=run.state, started_at=run.started_at,
                   metric_calls=run.metric_calls, curve=run.curve, version_id=run.version_id,
                   error=run.error)


@router.get("/optimise/runs", response_model=list[RunOut])
async def list_runs(svc: Service, user: User) -> list[RunOut]:
    """This server's optimisation runs of the tenant since it started, newest first."""
    runs = sorted(svc.optimisation_runs(user), key=lambda r: r.started_at, reverse=True)
    return [RunOut.of(r) for r in runs]


@router.post("/optimise/runs", response_model=RunOut, status_code=202)
async def start_run(svc: Service, user: TenantAdmin, body: RunIn) -> RunOut:
    """Start GEPA on a dataset of the tenant; its whole budget is at most one turn's. 422 for
    an unknown metric or a dataset too small, 409 while another run of the tenant is under
    way; all before any model call."""
    limits = body.limits.model_dump(exclude_none=True) if body.limits else None
    try:
        run = await svc.optimise(user, body.target, body.dataset, metric=body.metric,
                                 max_metric_calls=body.max_metric_calls, limits=limits)
    except (DatasetError, LimitRaised) as exc:
        raise ApiError(422, "invalid", str(exc)) from None
    except NotFound:
        raise
    except ValueError as exc:
        raise ApiError(409, "busy", str(exc)) from None
    return RunOut.of(run)
