"""A turn's or a session's export read from the store (export.py draws the files): every event,
the question, answer, status and usage, and for a session its documents and memory."""

from __future__ import annotations

import asyncio
from typing import Any

from ..export import FORMAT_VERSION, ExportFormat, check_format, iso, render_session, render_turn
from ..store import Store


async def turn_data(store: Store, turn_id: str) -> dict[str, Any]:
    """The turn with its question, answer, status, usage and every event. NotFound if unknown."""
    turn = await store.turns.get(turn_id)
    return {
        "id": turn.id, "session_id": turn.session_id, "index": turn.index,
        "status": turn.status, "user_message": turn.user_message, "answer": turn.answer,
        "error": turn.error, "question": (turn.pending or {}).get("question"),
        "usage": turn.usage, "trace_id": turn.trace_id, "created_at": iso(turn.created_at),
        "finished_at": iso(turn.finished_at),
        "events": [e.payload for e in await store.events.list(turn.id)],
    }


async def session_data(store: Store, session_id: str) -> dict[str, Any]:
    """The session with its documents, memory and turns (each with its events)."""
    session = await store.sessions.get(session_id)
    documents = [{"id": d.id, "name": d.name, "kind": d.kind, "size_bytes": d.size_bytes,
                  "chars": d.chars, "sha256": d.sha256, "created_at": iso(d.created_at)}
                 for d in await store.documents.list(session_id)]
    return {
        "format": "fleet-rlm-session", "version": FORMAT_VERSION,
        "session": {"id": session.id, "title": session.title, "archived": session.archived,
                    "created_at": iso(session.created_at),
                    "updated_at": iso(session.updated_at)},
        "memory": await store.memory.get_all(session_id),
        "documents": documents,
        "turns": [await turn_data(store, t.id) for t in await store.turns.list(session_id)],
    }


async def export_turn(store: Store, turn_id: str, format: ExportFormat = "json") -> str:
    check_format(format)  # before the store is read
    data = await turn_data(store, turn_id)
    if format == "rlm-log":  # with each call's whole request and reply, where they were kept
        return await asyncio.to_thread(render_turn, data, format,
                                       lambda call_id: store.calls.read(turn_id, call_id))
    return render_turn(data, format)


async def export_session(store: Store, session_id: str, format: ExportFormat = "json") -> str:
    check_format(format)
    return render_session(await session_data(store, session_id), format)
