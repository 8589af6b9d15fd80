"""Logs of other tools read into read-only sessions: the RLM paper's reference implementation's
trajectory logs (`rlm_log.py`). The whole file is checked before anything is stored, and the
session, its turns and events are stored in one transaction: a log is imported whole or not
at all."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import rlm_log
from ..events import LmCallEvent
from ..store import Session, Store
from ..store.models import LOCAL_TENANT_ID, LOCAL_USER_ID, new_id


def read_lines(data: bytes) -> list[str]:
    """The lines as text; RlmLogError naming the first line that is not UTF-8."""
    lines = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise rlm_log.RlmLogError(number, "UTF-8 text", f"byte {exc.start} is not") from None
    return lines


async def import_rlm_log(store: Store, name: str, data: bytes, *, title: str | None = None,
                         tenant_id: str = LOCAL_TENANT_ID, user_id: str = LOCAL_USER_ID
                         ) -> Session:
    """A read-only session holding each run of the log (`data`, the file `name`) as a
    finished turn, its model calls in the call store. RlmLogError (nothing stored) when the
    log is not one this reader takes."""
    lines = await asyncio.to_thread(read_lines, data)
    metadata, runs = rlm_log.read(lines, new_id)
    turns: list[dict[str, Any]] = []
    for run in runs:
        missing: dict[str, str] = {}
        for call in run.calls:
            reason = await asyncio.to_thread(store.calls.save, call)
            if reason is not None:
                missing[call.call_id] = reason
        events = [e.model_copy(update={"capture_missing": missing[e.call_id]})
                  if isinstance(e, LmCallEvent) and e.call_id in missing else e
                  for e in run.events]
        turns.append({"id": run.turn_id, "user_message": run.question, "answer": run.answer,
                      "status": run.status,
                      "error": None if run.answer is not None else
                      "NoFinalAnswer: the log ends without a final answer",
                      "usage": run.usage.model_dump(mode="json"), "created_at": run.started,
                      "finished_at": run.finished,
                      "events": [e.model_dump(mode="json") for e in events]})
    try:
        return await store.sessions.create_imported(
            title or f"{name} ({metadata.root_model})", name, turns,
            tenant_id=tenant_id, user_id=user_id)
    except BaseException:
        await asyncio.to_thread(store.calls.remove_turns, [t["id"] for t in turns])
        raise
