"""Trajectory logs of the RLM paper's reference implementation (alexzhang13/rlm), read into our
events and written from them. The format, as its logger writes it (docs/rlm-log.md): JSON
lines, a `metadata` line first (root_model, max_depth, max_iterations, backend, ...), then per
run an optional `run_context` line (prompt, root_prompt) and one `iteration` line per
iteration: the messages sent (`prompt`), the model's `response`, its `code_blocks` (code, and a
result with stdout, stderr, locals, execution_time and the `rlm_calls` its code made), the
`final_answer` and `iteration_time`.

Reading checks every line before anything is made: a line that is not what the format holds
there raises `RlmLogError` with its number and what was expected. Each run becomes one turn:
an agent node holding one RLM node (depth 1) whose iterations, code cells and sub-calls are our
events, and whose requests and replies are calls for the call store. Writing draws the first
RLM node of a turn from the event fold, its sub-calls and child RLMs as the cell's
`rlm_calls`, with the full requests and replies where the call store kept them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .budget import Limits, Usage
from .capture import CapturedCall
from .events import ERROR_TEXTS, EVENT_TYPES, Event, NodeRef
from .redaction import redact

KNOWN_TYPES = ("metadata", "run_context", "iteration")
PREVIEW_CHARS = 600
_FENCE = re.compile(r"```[^\n]*\n.*?```", re.DOTALL)


class RlmLogError(ValueError):
    """The log is not one this reader takes: where, and what was expected there."""

    def __init__(self, line: int, expected: str, found: str = "") -> None:
        super().__init__(f"line {line}: expected {expected}" + (f"; {found}" if found else ""))
        self.line, self.expected, self.found = line, expected, found


# -- the format ------------------------------------------------------------------------------
Count = Annotated[int, Field(ge=0, le=10**12)]  # tokens and calls
Seconds = Annotated[float, Field(ge=0, le=10**7)]  # a step's time (under four months)

class _Line(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class Metadata(_Line):
    type: Literal["metadata"]
    root_model: str
    max_iterations: int
    max_depth: int | None = None
    recursive_max_depth: int | None = None  # an older logger's name for max_depth
    backend: str | None = None
    backend_kwargs: dict[str, Any] | None = None
    environment_type: str | None = None
    environment_kwargs: dict[str, Any] | None = None
    other_backends: list[str] | None = None
    timestamp: str | None = None


class RunContext(_Line):
    type: Literal["run_context"]
    prompt: Any = None
    root_prompt: Any = None
    timestamp: str | None = None


class ModelUsage(_Line):
    total_calls: Count = 0
    total_input_tokens: Count = 0
    total_output_tokens: Count = 0


class UsageSummary(_Line):
    model_usage_summaries: dict[str, ModelUsage] = {}


class SubCall(_Line):
    root_model: str | None = None
    prompt: str | list[Any] | dict[str, Any]
    response: str | dict[str, Any] | None
    usage_summary: UsageSummary | None = None
    prompt_tokens: Count | None = None  # an older logger's usage
    completion_tokens: Count | None = None
    execution_time: Seconds = 0.0
    error: str | None = None
    error_type: str | None = None
    status_code: int | None = None


class ReplResult(_Line):
    stdout: str
    stderr: str
    locals: dict[str, Any] = {}
    execution_time: Seconds | None = None
    rlm_calls: list[SubCall] = []


class CodeBlock(_Line):
    code: str
    result: ReplResult


class Message(_Line):
    role: str
    content: Any


class Iteration(_Line):
    type: Literal["iteration"] = "iteration"  # the oldest logs wrote iterations untyped
    iteration: int | None = None
    timestamp: str | None = None
    prompt: list[Message] | str | dict[str, Any]
    response: str
    code_blocks: list[CodeBlock]
    final_answer: str | list[Any] | None = None
    iteration_time: Seconds | None = None


EXPECTED = {
    "metadata": 'the metadata line {"type": "metadata", "root_model": ..., '
                '"max_iterations": ...}',
    "run_context": 'a run_context line {"type": "run_context", "prompt": ...}',
    "iteration": 'an iteration line {"type": "iteration", "prompt": [...], "response": ..., '
                 '"code_blocks": [...]}',
}


@dataclass
class Run:
    context: RunContext | None
    iterations: list[tuple[int, Iteration]] = field(default_factory=list)


@dataclass
class ImportedRun:
    """One run of the log as a turn: its question, answer and status, its events (turn id
    included) and the calls for the call store."""

    turn_id: str
    question: str
    answer: str | None
    status: Literal["ok", "error"]
    started: datetime
    finished: datetime
    events: list[Event]
    calls: list[CapturedCall]
    usage: Usage


def parse(lines: Iterable[str]) -> tuple[Metadata, list[Run]]:
    """The metadata and the runs of a log; RlmLogError on the first line that is not what the
    format holds there."""
    metadata: Metadata | None = None
    runs: list[Run] = []
    number = last = 0
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        last = number
        try:
            data = json.loads(raw, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise RlmLogError(number, "a JSON object", f"not JSON: {exc.msg}") from None
        except ValueError as exc:
            raise RlmLogError(number, "a JSON object", f"not JSON: {exc}") from None
        except RecursionError:
            raise RlmLogError(number, "a JSON object", "nested too deeply") from None
        if not isinstance(data, dict):
            raise RlmLogError(number, "a JSON object", f"found {type(data).__name__}")
        kind = data.get("type", "iteration")
        if metadata is None:
            if kind != "metadata":
                raise RlmLogError(number, EXPECTED["metadata"], f"found type {kind!r}")
            for key in ("version", "format_version", "log_version"):
                if key in data:
                    raise RlmLogError(number, "a log of the reference implementation's "
                                      "format (its metadata has no version)",
                                      f"found {key} {data[key]!r}, a version this reader "
                                      "does not know")
            metadata = _valid(Metadata, data, number, "metadata")
            continue
        if kind not in KNOWN_TYPES or kind == "metadata":
            raise RlmLogError(number, "a run_context or iteration line (the metadata line comes "
                              "once, first)", f"found type {kind!r}")
        if kind == "run_context":
            runs.append(Run(_valid(RunContext, data, number, "run_context")))
            continue
        if not runs:
            runs.append(Run(None))
        runs[-1].iterations.append((number, _valid(Iteration, data, number, "iteration")))
    if metadata is None:
        raise RlmLogError(1, EXPECTED["metadata"], "the file is empty")
    if not any(run.iterations for run in runs):
        raise RlmLogError(last + 1, "at least one iteration line", "the log ends")
    for run in runs:
        if not run.iterations:
            raise RlmLogError(last + 1, "an iteration line after each run_context line",
                              "a run has none")
    return metadata, runs


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _valid(model: type[Any], data: dict, number: int, kind: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or kind
        raise RlmLogError(number, EXPECTED[kind], f"{where}: {first['msg']}") from None


# -- reading: a run as our events ----------------------------------------------------------
def read(lines: Iterable[str], new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:16]
         ) -> tuple[Metadata, list[ImportedRun]]:
    metadata, runs = parse(lines)
    imported = []
    for run in runs:
        try:
            imported.append(_imported(metadata, run, new_id()))
        except (OverflowError, ValueError, OSError) as exc:  # a time or a count out of range
            raise RlmLogError(run.iterations[0][0], "times and counts in range",
                              f"{type(exc).__name__}: {exc}") from None
    return metadata, imported


def _when(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return default
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _messages(prompt: Any) -> list[dict[str, str]]:
    if isinstance(prompt, list):
        return [{"role": str(m.role if isinstance(m, Message) else m.get("role", "user")),
                 "content": _text(m.content if isinstance(m, Message) else m.get("content"))}
                if isinstance(m, Message | dict) else {"role": "user", "content": _text(m)}
                for m in prompt]
    return [{"role": "user", "content": _text(prompt)}]


def _question(context: RunContext | None, first: Iteration) -> str:
    for value in (context and context.root_prompt, context and context.prompt):
        if value:
            return _text(value)[:4000]
    users = [m["content"] for m in _messages(first.prompt) if m["role"] == "user"]
    return (users[-1] if users else "(an imported run)")[:4000]


class _Emitter:
    def __init__(self, turn_id: str) -> None:
        self.turn_id = turn_id
        self.events: list[Event] = []

    def emit(self, kind: str, node: NodeRef, ts: float, **fields: Any) -> Event:
        for name in ERROR_TEXTS.get(kind, ()):
            if isinstance(fields.get(name), str):
                fields[name] = redact(fields[name])
        event = cast(Event, EVENT_TYPES[kind](
            turn_id=self.turn_id, node_id=node.node_id, parent_id=node.parent_id,
            depth=node.depth, seq=len(self.events) + 1, ts=ts, **fields))
        self.events.append(event)
        return event


def _imported(metadata: Metadata, run: Run, turn_id: str) -> ImportedRun:
    first = run.iterations[0][1]
    end = _when(first.timestamp, datetime.now(UTC))
    start = _when(run.context.timestamp if run.context else None,
                  datetime.fromtimestamp(end.timestamp() - (first.iteration_time or 0), UTC))
    out = _Emitter(turn_id)
    agent = NodeRef(uuid.uuid4().hex[:12], None, 0)
    node = agent.child()
    question = _question(run.context, first)
    sub_model = (metadata.other_backends or [metadata.root_model])[0]
    context = run.context.prompt if run.context else None
    out.emit("turn_started", agent, start.timestamp(), question=question)
    out.emit("rlm_started", node, start.timestamp(), model=metadata.root_model,
             sub_model=sub_model, signature="context, query -> answer",
             inputs={} if context is None else {"context": {"type": type(context).__name__,
                                                            "chars": len(_text(context))}},
             max_iterations=metadata.max_iterations, query=question)
    calls: list[CapturedCall] = []
    costs: list[tuple[str, int, int]] = []
    answer: str | None = None
    previous = start.timestamp()
    for k, (_, it) in enumerate(run.iterations, 1):
        done = _when(it.timestamp, datetime.fromtimestamp(previous, UTC)).timestamp()
        code_time = sum(b.result.execution_time or 0.0 for b in it.code_blocks)
        took = it.iteration_time if it.iteration_time is not None else done - previous
        replied = max(done - code_time, done - took)
        call_id = uuid.uuid4().hex[:16]
        messages = _messages(it.prompt)
        out.emit("lm_call", node, replied, role="root", model=metadata.root_model,
                 prompt_tokens=0, completion_tokens=0, cost_usd=None,
                 latency_s=round(max(replied - (done - took), 0.0), 4), iteration=k,
                 prompt_preview=(messages[-1]["content"] if messages else "")[-PREVIEW_CHARS:],
                 response_preview=it.response[:PREVIEW_CHARS], usage_estimated=True,
                 call_id=call_id)
        calls.append(CapturedCall(call_id, turn_id, node.node_id, "root", metadata.root_model,
                                  dict(metadata.backend_kwargs or {}), messages, it.response))
        costs.append((metadata.root_model, 0, 0))
        code = "\n\n".join(b.code for b in it.code_blocks)
        out.emit("rlm_iteration", node, replied, iteration=k,
                 reasoning=_FENCE.sub("", it.response).strip(), code=code)
        for block in it.code_blocks:
            for sub in block.result.rlm_calls:
                calls.append(_sub_call(out, node, k, replied, sub, metadata, turn_id, costs))
        if it.code_blocks:
            out.emit("code_output", node, done, iteration=k,
                     stdout="".join(b.result.stdout for b in it.code_blocks),
                     stderr="".join(b.result.stderr for b in it.code_blocks),
                     duration_s=round(code_time, 6))
        if it.final_answer:
            final = it.final_answer
            answer = _text(final[-1]) if isinstance(final, list) and final else _text(final)
        previous = done
    status: Literal["ok", "error"] = "ok" if answer is not None else "error"
    usage = _usage(costs, previous - start.timestamp())
    if answer is None:
        out.emit("error", node, previous, error_type="NoFinalAnswer",
                 message="the log ends without a final answer", detail=None)
    out.emit("rlm_finished", node, previous, status=status,
             answer=None if answer is None else {"answer": answer},
             iterations=len(run.iterations), usage=usage)
    out.emit("turn_finished", agent, previous, status=status, answer=answer, usage=usage)
    return ImportedRun(turn_id, question, answer, status, start,
                       datetime.fromtimestamp(previous, UTC), out.events, calls, usage)


def _sub_call(out: _Emitter, node: NodeRef, iteration: int, ts: float, sub: SubCall,
              metadata: Metadata, turn_id: str, costs: list[tuple[str, int, int]]
              ) -> CapturedCall:
    model = sub.root_model or (metadata.other_backends or [metadata.root_model])[0]
    summaries = (sub.usage_summary.model_usage_summaries if sub.usage_summary else {})
    prompt_tokens = sum(u.total_input_tokens for u in summaries.values()) \
        if summaries else int(sub.prompt_tokens or 0)
    completion_tokens = sum(u.total_output_tokens for u in summaries.values()) \
        if summaries else int(sub.completion_tokens or 0)
    costs.append((model, prompt_tokens, completion_tokens))
    messages = _messages(sub.prompt)
    reply = None if sub.response is None else _text(sub.response)
    error = None if sub.error is None else f"{sub.error_type or 'Error'}: {sub.error}"
    call_id = uuid.uuid4().hex[:16]
    out.emit("lm_call", node, ts + sub.execution_time, role="sub", model=model,
             prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=None,
             latency_s=round(sub.execution_time, 4), iteration=iteration,
             prompt_preview=(messages[-1]["content"] if messages else "")[-PREVIEW_CHARS:],
             response_preview=(reply or "")[:PREVIEW_CHARS], error=error,
             http_status=sub.status_code, call_id=call_id)
    return CapturedCall(call_id, turn_id, node.node_id, "sub", model, {}, messages, reply,
                        prompt_tokens, completion_tokens, None, round(sub.execution_time, 4),
                        error=error)


def _usage(costs: list[tuple[str, int, int]], elapsed: float) -> Usage:
    from .budget import CallCost

    return Usage.of_calls([CallCost(m, p, c, None) for m, p, c in costs],
                          max(elapsed, 0.0), Limits())
