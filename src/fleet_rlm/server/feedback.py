"""A person's thumbs up or down on a turn, with a comment and a corrected answer: kept in the
store (the feedback datasets of `fleet optimize` are made of it) and, with tracing configured,
on the turn's MLflow trace too."""

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
    corrected_answer: str | None = Field(
        None, max_length=100_000,
        description="With a thumbs-down: the answer the turn should have given.")


class FeedbackOut(BaseModel):
    turn_id: str
    trace_id: str | None = Field(description="The turn's trace, when tracing is configured.")
    assessment_id: str | None


@router.post("/turns/{turn_id}/feedback", response_model=FeedbackOut, status_code=201)
async def give_feedback(svc: Service, user: User, turn_id: str, body: FeedbackIn
                        ) -> FeedbackOut:
    """Stored on the turn; also logged as an assessment on its trace when tracing is
    configured (FLEET_MLFLOW_TRACKING_URI) and the turn has a trace. 409 while the turn runs
    or waits; 502 when the MLflow store fails (the feedback is stored all the same)."""
    try:
        turn = await svc.add_feedback(user, turn_id, body.thumbs_up, body.comment,
                                      body.corrected_answer)
    except ValueError as exc:
        raise ApiError(409, "not_finished", str(exc)) from None
    if not svc.settings.mlflow_tracking_uri or not turn.trace_id:
        return FeedbackOut(turn_id=turn_id, trace_id=None, assessment_id=None)
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
