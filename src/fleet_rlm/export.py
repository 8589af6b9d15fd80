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

from .events import ErrorEvent, parse_event
from .tree import Cell, EventTree, Node, Step, fold

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
        tree = fold(parse_event(e) for e in turn["events"])
        numbers = {id(s): n for n, s in enumerate(
            (s for _, s in tree.steps() if not s.orphan), 1)}
        steps = [line for item in tree.top() for line in (
            _step(tree, item, numbers.get(id(item), 0), level + 2) if isinstance(item, Step)
            else _rlm(tree, item, level + 2))]
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


def _step(tree: EventTree, step: Step, number: int, level: int) -> list[str]:
    """An agent step (or a tool result whose step is not in the stream) and the RLM nodes it
    started; LM calls are summed in the usage, not listed."""
    title = f"step {number}: {step.tool_name}" if not step.orphan else f"tool {step.tool_name}"
    out = ["", f"{_heading(level)} {title.capitalize()}"]
    if not step.orphan:
        out += ["", _quote(step.thought), "", "Arguments:", "",
                _fence(_json(step.tool_args), "json")]
    out += [line for ask in step.asks for line in ("", f"Asked the user: **{ask.question}**")]
    for child in step.children:
        out += _rlm(tree, tree.node(child), level + 1)
    if step.result is not None:
        flag = " (error)" if step.error else ""
        out += ["", f"Result{flag}:", "", _fence(_clip(step.result))]
    return out


def _rlm(tree: EventTree, node: Node, level: int) -> list[str]:
    out = ["", f"{_heading(level)} RLM `{node.id}` — depth {node.depth}, {node.model or '?'}", "",
           f"`{node.signature or ''}`; inputs: " + ", ".join(
               f"{name} ({info.type}, {info.chars:,} chars)" for name, info in node.inputs.items())]
    for cell in node.cells:
        out += _iteration(tree, node, cell, level + 1)
    out += _errors([e for e in node.errors if not any(e in c.errors for c in node.cells)])
    if node.finished is not None:
        out += ["", f"Finished: **{node.finished.status}** after {node.finished.iterations} "
                "iteration(s)."]
        if node.finished.answer:
            out += ["", _fence(_json(node.finished.answer), "json")]
    return out


def _iteration(tree: EventTree, node: Node, cell: Cell, level: int) -> list[str]:
    title = "Extract" if cell.seen and cell.phase == "extract" else "Iteration"
    title += f" {cell.iteration}"
    if level > 6:  # past the deepest heading: say whose iteration it is
        title += f" of RLM `{node.id}` (depth {node.depth})"
    out = ["", f"{_heading(level)} {title}"]
    if cell.seen:
        out += ["", cell.reasoning]
    if cell.has_code:
        out += ["", _fence(cell.code if cell.seen and cell.phase == "action" else "", "python")]
        if cell.sub_calls:
            out += ["", f"*{len(cell.sub_calls)} sub-model call(s)*"]
        for child in cell.children:
            out += _rlm(tree, tree.node(child), level + 1)
        if cell.output is not None:
            o = cell.output
            text = o.stdout + o.stderr
            if o.error_type:
                text += o.traceback or f"{o.error_type}: {o.error_message}"
            out += ["", "Output:", "", _fence(_clip(text) or "(no output)")]
        out += _errors(cell.errors)
    return out


def _errors(errors: list[ErrorEvent]) -> list[str]:
    return [line for e in errors for line in ("", f"**{e.error_type}:** {e.message}")]


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
