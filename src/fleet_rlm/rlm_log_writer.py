"""A turn written as a trajectory log of the RLM paper's reference implementation (the format:
rlm_log.py, docs/rlm-log.md), so its visualizer reads it.

The log holds one RLM: the turn's first RLM node (a `fleet run`'s root, or the one a chat
turn's agent delegated to). Each of its iterations is an iteration line: the messages the
call that wrote it sent and the reply (whole where the call store kept them, else the event's
previews), its code cell as one code block whose `rlm_calls` are the cell's `llm_query` calls
and child RLMs (the child's query and answer), and the final answer on the last line. No
run_context line: the visualizer reads every line but the metadata as an iteration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from .events import Event, LmCallEvent, RlmStartedEvent
from .tree import Cell, EventTree, Node, fold

CallRecord = Callable[[str], dict[str, Any] | None]  # call id -> the call store's record


class NothingToWrite(ValueError):
    """The turn ran no RLM node."""


def write(events: Iterable[Event], record: CallRecord) -> str:
    tree = fold(events)
    rlms = [n for n in tree.nodes.values() if n.kind == "rlm"]
    node = min(rlms, key=lambda n: (n.depth, n.seq)) if rlms else None
    if node is None:
        raise NothingToWrite("the turn ran no RLM node: the rlm-log format holds one RLM's "
                             "iterations, so there is nothing to write")
    lines = [_metadata(tree, node)]
    cells = [c for c in node.cells if c.seen or c.calls]
    for number, cell in enumerate(cells, 1):
        final = _final(node) if number == len(cells) else None
        lines.append(_iteration(tree, node, cell, number, record, final))
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None).isoformat()


def _depth(tree: EventTree, node: Node) -> int:
    deepest = max([node.depth, *(tree.node(c).depth for c in _descendants(tree, node))])
    return deepest - node.depth + 1


def _descendants(tree: EventTree, node: Node) -> list[str]:
    found = []
    for child in node.children:
        found += [child, *_descendants(tree, tree.node(child))]
    return found


def _metadata(tree: EventTree, node: Node) -> dict[str, Any]:
    model = node.model or ""
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    return {"type": "metadata", "timestamp": _iso(node.start_ts), "root_model": model,
            "max_depth": _depth(tree, node), "max_iterations": node.max_iterations,
            "backend": provider, "backend_kwargs": {"model_name": model},
            "environment_type": "fleet-rlm", "environment_kwargs": {},
            "other_backends": [node.sub_model] if node.sub_model and node.sub_model != model
            else None}


def _final(node: Node) -> str | None:
    if node.finished is None or node.finished.status not in ("ok", "extract"):
        return None
    answer = node.finished.answer or {}
    value = answer.get("answer", answer) if isinstance(answer, dict) else answer
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _iteration(tree: EventTree, node: Node, cell: Cell, number: int, record: CallRecord,
               final: str | None) -> dict[str, Any]:
    call = cell.calls[-1] if cell.calls else None  # the attempt whose reply was used
    kept = record(call.call_id) if call is not None and call.call_id else None
    if kept is not None:
        prompt, response = kept["messages"], kept["reply"] or ""
    else:
        prompt = [{"role": "user", "content": call.prompt_preview if call else ""}]
        response = call.response_preview if call and call.response_preview else \
            f"{cell.reasoning}\n\n```repl\n{cell.code}\n```" if cell.code else cell.reasoning
    started = call.ts - call.latency_s if call is not None else cell.ts
    ended = cell.output.ts if cell.output is not None else (call.ts if call else cell.ts)
    blocks = []
    if cell.has_code and cell.phase == "action":
        output = cell.output
        stderr = output.stderr if output else ""
        if output is not None and output.error_type:
            stderr += output.traceback or f"{output.error_type}: {output.error_message}\n"
        calls = [_sub_call(c, record) for c in cell.sub_calls]
        calls += [_child(tree, tree.node(c)) for c in cell.children]
        blocks.append({"code": cell.code, "result": {
            "stdout": output.stdout if output else "", "stderr": stderr, "locals": {},
            "execution_time": output.duration_s if output else 0.0, "rlm_calls": calls}})
    return {"type": "iteration", "iteration": number, "timestamp": _iso(ended),
            "prompt": prompt, "response": response, "code_blocks": blocks,
            "final_answer": final, "iteration_time": round(max(ended - started, 0.0), 6)}


def _usage(model: str, calls: int, prompt: int, completion: int) -> dict[str, Any]:
    return {"model_usage_summaries": {model: {
        "total_calls": calls, "total_input_tokens": prompt, "total_output_tokens": completion}}}


def _sub_call(call: LmCallEvent, record: CallRecord) -> dict[str, Any]:
    kept = record(call.call_id) if call.call_id else None
    prompt: Any = call.prompt_preview
    response = call.response_preview
    if kept is not None:
        messages = kept["messages"]
        prompt = messages[0]["content"] if len(messages) == 1 else messages
        response = kept["reply"] or ""
    entry: dict[str, Any] = {
        "root_model": call.model, "prompt": prompt, "response": response,
        "usage_summary": _usage(call.model, 1, call.prompt_tokens, call.completion_tokens),
        "prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens,
        "execution_time": call.latency_s}
    if call.error:
        entry.update(error=call.error, error_type=call.error.split(":", 1)[0])
        if call.http_status is not None:
            entry["status_code"] = call.http_status
    return entry


def _child(tree: EventTree, child: Node) -> dict[str, Any]:
    started = next((e for e in tree.events
                    if isinstance(e, RlmStartedEvent) and e.node_id == child.id), None)
    totals = tree.subtree_totals(child.id)
    model = child.model or ""
    return {"root_model": model, "prompt": (started.query if started else None) or "",
            "response": _final(child) or "",
            "usage_summary": _usage(model, totals.calls, totals.prompt_tokens,
                                    totals.completion_tokens),
            "prompt_tokens": totals.prompt_tokens, "completion_tokens": totals.completion_tokens,
            "execution_time": round(child.end_ts - child.start_ts, 6)}
