"""Turns and sessions as files: JSON (everything, every event included) or Markdown (a transcript
for reading: the question, the agent's steps, each RLM node nested under what started it, its
iterations with their code and output, the answer and the usage).

    text = await export_turn(store, turn_id, "markdown")
    text = await export_session(store, session_id, "json")
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from .events import parse_event
from .tracing import Span, build_tree

if TYPE_CHECKING:  # the session service passes its store in; this module reads through it
    from .store import Store

ExportFormat = Literal["json", "markdown"]
FORMATS: tuple[str, ...] = ("json", "markdown")
FORMAT_VERSION = 1
OUTPUT_CHARS = 4_000  # code output and tool results kept per block in Markdown; JSON keeps all


# -- the data ----------------------------------------------------------------------------------
async def turn_data(store: Store, turn_id: str) -> dict[str, Any]:
    """The turn with its question, answer, status, usage and every event. NotFound if unknown."""
    turn = await store.turns.get(turn_id)
    return {
        "id": turn.id, "session_id": turn.session_id, "index": turn.index,
        "status": turn.status, "user_message": turn.user_message, "answer": turn.answer,
        "error": turn.error, "question": (turn.pending or {}).get("question"),
        "usage": turn.usage, "trace_id": turn.trace_id, "created_at": _iso(turn.created_at),
        "finished_at": _iso(turn.finished_at),
        "events": [e.payload for e in await store.events.list(turn.id)],
    }


async def session_data(store: Store, session_id: str) -> dict[str, Any]:
    """The session with its documents, memory and turns (each with its events)."""
    session = await store.sessions.get(session_id)
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
        "turns": [await turn_data(store, t.id) for t in await store.turns.list(session_id)],
    }


async def export_turn(store: Store, turn_id: str, format: ExportFormat = "json") -> str:
    _check(format)
    turn = await turn_data(store, turn_id)
    if format == "json":
        return _json({"format": "fleet-rlm-turn", "version": FORMAT_VERSION, "turn": turn})
    return "\n".join(turn_markdown(turn, level=1)) + "\n"


async def export_session(store: Store, session_id: str, format: ExportFormat = "json") -> str:
    _check(format)
    data = await session_data(store, session_id)
    if format == "json":
        return _json(data)
    session = data["session"]
    out = [f"# {session['title']}", "",
           f"Session `{session['id']}`, created {session['created_at']}, "
           f"{len(data['turns'])} turn(s)."]
    if data["documents"]:
        out += ["", "Documents:", ""] + [f"- {d['name']} ({d['kind']}, {d['chars']:,} characters)"
                                         for d in data["documents"]]
    for turn in data["turns"]:
        out += ["", *turn_markdown(turn, level=2)]
    return "\n".join(out) + "\n"


def _check(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, not {format!r}")


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# -- Markdown ----------------------------------------------------------------------------------
def turn_markdown(turn: dict[str, Any], level: int = 1) -> list[str]:
    """The lines of one turn's transcript, its title a heading of `level`."""
    h = _heading(level)
    out = [f"{h} Turn {turn['index']} — {turn['status']}", "",
           f"Turn `{turn['id']}` of session `{turn['session_id']}`, started "
           f"{turn['created_at']}" + (f", finished {turn['finished_at']}."
                                      if turn["finished_at"] else ".")]
    if turn["trace_id"]:
        out += ["", f"MLflow trace: `{turn['trace_id']}`"]
    out += ["", f"{_heading(level + 1)} Question", "", _quote(turn["user_message"])]
    if turn["events"]:
        tree = build_tree(parse_event(e) for e in turn["events"])
        steps = [line for child in tree.children for line in _span(child, level + 2)]
        if steps:
            out += ["", f"{_heading(level + 1)} Steps", *steps]
    if turn["question"]:
        out += ["", f"**Waiting for the user to answer:** {turn['question']}"]
    if turn["answer"] is not None:
        out += ["", f"{_heading(level + 1)} Answer", "", turn["answer"]]
    if turn["error"]:
        out += ["", f"**Error:** {turn['error']}"]
    if turn["usage"]:
        out += ["", f"{_heading(level + 1)} Usage", "", *usage_lines(turn["usage"])]
    return out


def _span(span: Span, level: int) -> list[str]:
    """A step, tool or RLM node and what it contains; LM calls are summed, not listed."""
    a = span.attributes
    if span.kind in ("step", "tool"):
        out = ["", f"{_heading(level)} {span.name.capitalize()}"]
        if span.inputs:
            out += ["", _quote(span.inputs["thought"]), "", "Arguments:", "",
                    _fence(_json(span.inputs["tool_args"]), "json")]
        out += [line for kind, _, note in span.notes if kind == "ask_user"
                for line in ("", f"Asked the user: **{note['question']}**")]
        for child in span.children:
            out += _span(child, level + 1)
        if span.outputs is not None:
            flag = " (error)" if span.error else ""
            out += ["", f"Result{flag}:", "", _fence(_clip(span.outputs["output"]))]
        return out
    if span.kind == "rlm":
        out = ["", f"{_heading(level)} RLM `{a['fleet.node_id']}` — depth {a['fleet.depth']}, "
               f"{a['fleet.model']}", "",
               f"`{a['fleet.signature']}`; inputs: " + ", ".join(
                   f"{name} ({info['type']}, {info['chars']:,} chars)"
                   for name, info in (span.inputs or {}).items())]
        for child in span.children:
            out += _iteration(child, level + 1, a) if child.kind == "iteration" else []
        out += _notes(span)
        if "fleet.status" in a:
            out += ["", f"Finished: **{a['fleet.status']}** after {a['fleet.iterations']} "
                    "iteration(s)."]
            if span.outputs:
                out += ["", _fence(_json(span.outputs), "json")]
        return out
    return []  # LM calls at the turn level (history summary, the final answer) are in the usage


def _iteration(span: Span, level: int, rlm: dict[str, Any]) -> list[str]:
    title = "Extract" if span.attributes.get("fleet.phase") == "extract" else "Iteration"
    title += f" {span.attributes['fleet.iteration']}"
    if level > 6:  # past the deepest heading: say whose iteration it is
        title += f" of RLM `{rlm['fleet.node_id']}` (depth {rlm['fleet.depth']})"
    out = ["", f"{_heading(level)} {title}"]
    if span.outputs:
        out += ["", span.outputs["reasoning"]]
    for cell in (c for c in span.children if c.kind == "code"):
        out += ["", _fence((cell.inputs or {}).get("code", ""), "python")]
        calls = sum(1 for c in cell.children if c.kind == "lm")
        if calls:
            out += ["", f"*{calls} sub-model call(s)*"]
        for child in cell.children:
            out += _span(child, level + 1)
        if cell.outputs:
            text = cell.outputs["stdout"] + cell.outputs["stderr"] + cell.outputs.get("error", "")
            out += ["", "Output:", "", _fence(_clip(text) or "(no output)")]
        out += _notes(cell)
    return out


def _notes(span: Span) -> list[str]:
    return [line for kind, _, note in span.notes if kind == "error"
            for line in ("", f"**{note['error_type']}:** {note['message']}")]


def usage_lines(usage: dict[str, Any]) -> list[str]:
    cost = f"${usage.get('usd', 0.0):.4f}"
    if usage.get("usd_unknown_calls"):
        cost += f" (+{usage['usd_unknown_calls']} call(s) of unknown price)"
    out = [f"{usage.get('calls', 0)} model call(s), {usage.get('prompt_tokens', 0):,} prompt + "
           f"{usage.get('completion_tokens', 0):,} completion tokens, {cost}, "
           f"{usage.get('elapsed_s', 0.0):.1f} s."]
    by_model = usage.get("by_model") or {}
    if by_model:
        out += ["", "| model | calls | tokens | USD |", "|---|---:|---:|---:|"]
        out += [f"| {model} | {u['calls']} | {u['tokens']:,} | {u['usd']:.4f} |"
                for model, u in by_model.items()]
    return out


def _heading(level: int) -> str:
    return "#" * min(level, 6)


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _clip(text: str) -> str:
    if len(text) <= OUTPUT_CHARS:
        return text
    return f"{text[:OUTPUT_CHARS]}\n… ({len(text) - OUTPUT_CHARS:,} more characters)"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])
