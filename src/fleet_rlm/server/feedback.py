"""A person's thumbs up or down on a turn, recorded on the turn's MLflow trace."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from .. import tracing
from ..config import Settings
from .deps import Service, User
from .errors import ApiError

router = APIRouter(tags=["feedback"])


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thumbs_up: bool
    comment: str | None = Field(None, max_length=10_000)


class FeedbackOut(BaseModel):
    turn_id: str
    trace_id: str
    assessment_id: str


@router.post("/turns/{turn_id}/feedback", response_model=FeedbackOut, status_code=201)
async def give_feedback(svc: Service, user: User, turn_id: str, body: FeedbackIn
                        ) -> FeedbackOut:
    """Logged as an assessment on the turn's trace. 409 when tracing is not configured
    (FLEET_MLFLOW_TRACKING_URI) or the turn has no trace (not finished, or finished while
    tracing was off); 502 when the MLflow store fails."""
    turn = await svc.turn(user, turn_id, complete=True)  # one that just finished: its trace
    if not svc.settings.mlflow_tracking_uri:
        raise ApiError(409, "tracing_off", "tracing is not configured: set "
                       "FLEET_MLFLOW_TRACKING_URI so turns are traced and feedback is recorded")
    if not turn.trace_id:
        raise ApiError(409, "no_trace", f"turn {turn_id} has no trace: only a turn that "
                       "finished while tracing was configured has one")
    try:
        assessment_id = await asyncio.to_thread(_log, svc.settings, turn.trace_id, body,
                                                user.name)
    except Exception as exc:  # noqa: BLE001 - the tracking store's failure, reported as such
        raise ApiError(502, "tracking_store", f"the MLflow store did not record the feedback: "
                       f"{type(exc).__name__}: {exc}") from None
    return FeedbackOut(turn_id=turn_id, trace_id=turn.trace_id, assessment_id=assessment_id)


def _log(settings: Settings, trace_id: str, body: FeedbackIn, user: str) -> str:
    # This process wrote the turn's trace in MLflow's background exporter: a thumbs up given
    # right after the answer would otherwise find no trace yet.
    tracing.import_mlflow().flush_trace_async_logging()
    return tracing.log_feedback(settings, trace_id, body.thumbs_up, body.comment, user=user)
