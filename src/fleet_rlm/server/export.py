"""A session as a file: JSON (everything, events included) or Markdown (for reading).

Plain functions so the CLI can use them too:

    data = await collect(store, session_id)
    Path("s.md").write_text(to_markdown(data))
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from ..store import Store

FORMAT_VERSION = 1
OUTPUT_CHARS = 2_000  # code output kept per block in Markdown; the JSON keeps all of it


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def collect(store: Store, session_id: str) -> dict[str, Any]:
    """The session with its documents, turns (answers, usage) and every turn's events."""
    session = await store.sessions.get(session_id)
    turns = []
    for turn in await store.turns.list(session_id):
        events = [e.payload for e in await store.events.list(turn.id)]
        turns.append({
            "id": turn.id, "index": turn.index, "status": turn.status,
            "user_message": turn.user_message, "answer": turn.answer, "error": turn.error,
            "question": (turn.pending or {}).get("question"), "usage": turn.usage,
            "created_at": _iso(turn.created_at), "finished_at": _iso(turn.finished_at),
            "events": events,
        })
    documents = [{"id": d.id, "name": d.name, "kind": d.kind, "size_bytes": d.size_bytes,
                  "chars": d.chars, "sha256": d.sha256, "created_at": _iso(d.created_at)}
                 for d in await store.documents.list(session_id)]
    return {
        "format": "fleet-rlm-session", "version": FORMAT_VERSION,
        "session": {"id": session.id, "title": session.title, "archived": session.archived,
                    "created_at": _iso(session.created_at),
                    "updated_at": _iso(session.updated_at)},
        "memory": await store.memory.get_all(session_id),
        "documents": documents,
        "turns": turns,
    }


def to_json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


def file_name(data: dict[str, Any], format: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", data["session"]["title"]).strip("-").lower()[:60]
    return f"{slug or 'session'}-{data['session']['id']}.{'md' if format == 'markdown' else 'json'}"


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _clip(text: str) -> str:
    if len(text) <= OUTPUT_CHARS:
        return text
    return f"{text[:OUTPUT_CHARS]}\n… ({len(text) - OUTPUT_CHARS} more characters)"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _event_lines(event: dict[str, Any]) -> list[str]:
    """The Markdown of one event; bookkeeping events (lm_call, budget, deltas) are left out."""
    kind, indent = event["type"], "  " * event.get("depth", 0)
    if kind == "agent_step":
        args = json.dumps(event.get("tool_args") or {}, ensure_ascii=False)
        return [f"{indent}- **{event['tool_name']}** {args} — {event['thought']}"]
    if kind == "tool_result":
        flag = " (error)" if event.get("error") else ""
        return [f"{indent}- result of {event['tool_name']}{flag}:", "",
                _fence(_clip(event["output"]))]
    if kind == "rlm_started":
        return [f"{indent}- RLM started on {event['model']} (sub-model {event['sub_model']}): "
                f"`{event['signature']}`"]
    if kind == "rlm_iteration":
        return [f"{indent}- iteration {event['iteration']}: {event['reasoning']}", "",
                _fence(event["code"], "python")]
    if kind == "code_output":
        text = event.get("stdout", "") + event.get("stderr", "")
        if event.get("error_type"):
            text += f"\n{event['error_type']}: {event.get('error_message')}"
        return ["", _fence(_clip(text))] if text.strip() else []
    if kind == "rlm_finished":
        return [f"{indent}- RLM finished: {event['status']} after {event['iterations']} "
                "iteration(s)"]
    if kind == "ask_user":
        return [f"{indent}- asked the user: {event['question']}"]
    if kind == "error":
        return [f"{indent}- error: {event['error_type']}: {event['message']}"]
    if kind == "cancelled":
        return [f"{indent}- cancelled: {event['reason']}"]
    return []


def _usage_line(usage: dict[str, Any] | None) -> str:
    if not usage:
        return ""
    return (f"*{usage.get('calls', 0)} model calls, {usage.get('tokens', 0)} tokens, "
            f"${usage.get('usd', 0.0):.4f}*")


def to_markdown(data: dict[str, Any]) -> str:
    session = data["session"]
    out = [f"# {session['title']}", "", f"Session `{session['id']}`, created "
           f"{session['created_at']}, {len(data['turns'])} turn(s)."]
    if data["documents"]:
        out += ["", "Documents:"] + [f"- {d['name']} ({d['kind']}, {d['chars']} characters)"
                                     for d in data["documents"]]
    for turn in data["turns"]:
        out += ["", f"## Turn {turn['index']} — {turn['status']}", "", _quote(turn["user_message"])]
        steps = [line for event in turn["events"] for line in _event_lines(event)]
        if steps:
            out += ["", "<details><summary>Steps</summary>", "", *steps, "", "</details>"]
        if turn["question"]:
            out += ["", f"**Waiting for an answer to:** {turn['question']}"]
        if turn["answer"]:
            out += ["", "### Answer", "", turn["answer"]]
        if turn["error"]:
            out += ["", f"**Error:** {turn['error']}"]
        if usage := _usage_line(turn["usage"]):
            out += ["", usage]
    return "\n".join(out) + "\n"
