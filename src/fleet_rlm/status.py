"""A turn's status: one vocabulary for its events, its row in the store, the API and the web app.

A turn is `running`, or `waiting` on the user's answer; it ends `ok` (answered), `budget` (a
limit, the wall time's too, ran out: the answer is partial), `cancelled`, `error`, or
`interrupted` (the server stopped while it ran). Its `turn_finished` event says the same word
its row holds.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class TurnStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    OK = "ok"
    BUDGET = "budget"
    CANCELLED = "cancelled"
    ERROR = "error"
    INTERRUPTED = "interrupted"


# What a turn_finished event announces: an end, or a pause on the user (`waiting`).
FinishStatus = Literal[TurnStatus.OK, TurnStatus.WAITING, TurnStatus.BUDGET,
                       TurnStatus.CANCELLED, TurnStatus.ERROR, TurnStatus.INTERRUPTED]
# A turn in flight: its session takes no other message.
ActiveStatus = Literal[TurnStatus.RUNNING, TurnStatus.WAITING]

TURN_STATUSES: tuple[str, ...] = tuple(s.value for s in TurnStatus)
ACTIVE_STATUSES: tuple[str, ...] = ("running", "waiting")
FINISHED_STATUSES: tuple[str, ...] = ("ok", "budget", "cancelled", "error", "interrupted")
