"""A turn's record in the store: its outcome written with its turn_finished event, and the closing
events of a turn no engine runs any more (a crash cut it short, it was dismissed while waiting)."""

from __future__ import annotations

from typing import Any

from ..budget import CallCost, Limits, Usage
from ..config import Settings
from ..events import EventStream, NodeRef
from ..status import FINISHED_STATUSES, TurnStatus
from ..store import Store
from ..store.models import utcnow


class TurnOutcome:
    """The recorder's `outcome`: a finished turn's status, answer, usage and error, stored on the
    turn's row in the transaction that stores its turn_finished event."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.written: dict[str, Any] | None = None

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any] | None:
        update = None
        for record in batch:
            if record["type"] == "error":
                self.error = f"{record['error_type']}: {record['message']}"
            elif record["type"] == "cancelled":
                self.error = record["reason"]
            elif record["type"] == "turn_finished" and record["status"] in FINISHED_STATUSES:
                status = record["status"]
                update = {"status": status, "answer": record["answer"],
                          "usage": record["usage"], "pending": None, "finished_at": utcnow(),
                          "error": None if status == "ok" else self.error}
                self.written = update
        return update


async def close_failed(store: Store, settings: Settings, turn_id: str, error_type: str,
                       message: str, after_seq: int = 0, status: TurnStatus = TurnStatus.ERROR
                       ) -> dict[str, Any]:
    """End the record of a turn that stopped without a stored turn_finished (a crash cut it
    short, its events could not all be recorded) as any failed turn ends: an error, then
    turn_finished with `status` (error, or interrupted) after `after_seq`, its usage added up
    from the model calls it recorded. Returns the usage its record ends with."""
    stored = await store.events.list(turn_id)
    records = [r.payload for r in stored]
    if records and records[-1]["type"] == "turn_finished":
        return records[-1]["usage"]
    calls = [CallCost(r["model"], r["prompt_tokens"], r["completion_tokens"], r["cost_usd"])
             for r in records if r["type"] == "lm_call" and r.get("counted", True)]
    snapshots = [r["usage"] for r in records if "usage" in r]
    limits = (Limits.model_validate(snapshots[-1]["limits"]) if snapshots
              else Limits.from_settings(settings))
    elapsed = records[-1]["ts"] - records[0]["ts"] if records else 0.0
    usage = Usage.of_calls(calls, elapsed, limits)
    await end_record(store, turn_id, stored, "error", usage, after_seq=after_seq, status=status,
                     error_type=error_type, message=message, detail=None)
    return usage.model_dump(mode="json")


async def end_record(store: Store, turn_id: str, stored: list, kind: str, usage: Usage, *,
                     after_seq: int = 0, status: str | None = None, **fields: Any) -> None:
    """Append the closing events of a turn no engine runs any more: `kind` ("cancelled" or
    "error") with `fields`, then turn_finished (its status `kind`, or `status`), on the node of
    its first event; their seqs follow the last stored one, or `after_seq` if higher (events
    seen live, not stored)."""
    records = [r.payload for r in stored]
    node = (NodeRef(records[0]["node_id"], records[0]["parent_id"], records[0]["depth"])
            if records else NodeRef.root())
    stream = EventStream(turn_id, start_seq=max(records[-1]["seq"] if records else 0,
                                                after_seq))
    stream.emit(kind, node, **fields)
    stream.emit("turn_finished", node, status=status or kind, answer=None, usage=usage)
    await store.events.append_many(turn_id, [e.model_dump(mode="json") for e in stream.events])
