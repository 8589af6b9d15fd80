"""Turns and sessions as files: JSON (everything, every event included) or Markdown (a transcript
for reading: the question, the agent's steps, each RLM node nested under what started it, its
iterations with their code and output, the answer and the usage).

    text = render_turn(turn_data, "markdown")         # the data: sessions/exports.py
    text = render_session(session_data, "json")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from .events import ErrorEvent, parse_event
from .tree import Cell, EventTree, Node, Step, fold

ExportFormat = Literal["json", "markdown", "rlm-log"]
FORMATS: tuple[str, ...] = ("json", "markdown", "rlm-log")  # rlm-log: a turn (rlm_log_writer.py)
FORMAT_VERSION = 1
OUTPUT_CHARS = 4_000  # code output and tool results kept per block in Markdown; JSON keeps all


# -- the files -------------------------------------------------------------------------------
def render_turn(turn: dict[str, Any], format: ExportFormat = "json",
                record: Callable[[str], dict[str, Any] | None] = lambda _: None) -> str:
    """A turn's export from its data (sessions/exports.py reads it from the store); `record`:
    a kept model call by its id (the call store's), for the rlm-log format."""
    check_format(format)
    if format == "rlm-log":
        from .rlm_log_writer import write

        return write((parse_event(e) for e in turn["events"]), record)
    if format == "json":
        return _json({"format": "fleet-rlm-turn", "version": FORMAT_VERSION, "turn": turn})
    return "\n".join(turn_markdown(turn, level=1)) + "\n"


def render_session(data: dict[str, Any], format: ExportFormat = "json") -> str:
    """A session's export from its data: the session, its documents, memory and turns."""
    check_format(format)
    if format == "rlm-log":
        raise ValueError("the rlm-log format holds one run: export a turn of the session")
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


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, not {format!r}")


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


def iso(value: datetime | None) -> str | None:
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
    tree = fold(parse_event(e) for e in turn["events"]) if turn["events"] else None
    if tree is not None and tree.programs:
        out += ["", "Program versions: " + ", ".join(
            f"{target} `{version}`" for target, version in sorted(tree.programs.items()))]
    out += ["", f"{_heading(level + 1)} Question", "", _quote(turn["user_message"])]
    if tree is not None:
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
    if step.artifacts:
        out += ["", "Files written:", ""]
        out += [f"- `{a.path}` ({a.media_type}, {a.size_bytes:,} bytes)" for a in step.artifacts]
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
