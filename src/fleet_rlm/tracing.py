"""MLflow tracing: the event stream of one turn (or one `fleet run`) as one MLflow trace.

The trace is built once the run is over, from its events: a turn that paused on ask_user and
resumed (even in another process) is still one trace, and no MLflow call ever runs inside the
engine. `build_tree` draws the spans from the events' one fold (tree.py):

    turn / fleet run
      step N <tool>                  agent steps: the LM call that chose the tool, then the tool
        rlm <node>                   an RLM node, nested under what started it (parent_id)
          iteration K
            lm root                  the call that wrote the iteration's code
            code                     the code cell: code in, output out
              lm sub                 llm_query calls the code made
              rlm <child>            child RLMs the code started (rlm_query)

MLflow is an extra (`pip install 'fleet-rlm[mlflow]'`), imported only when a trace is written.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import Settings
from .events import ErrorEvent, Event, LmCallEvent
from .tree import Cell, EventTree, Node, Step, fold

SpanKind = Literal["turn", "step", "tool", "rlm", "iteration", "code", "lm"]
MLFLOW_SPAN_TYPES = {"turn": "AGENT", "step": "CHAIN", "tool": "TOOL", "rlm": "AGENT",
                     "iteration": "CHAIN", "code": "TOOL", "lm": "CHAT_MODEL"}
FEEDBACK_NAME = "user_feedback"
TRACE_WAIT_S = 30.0  # a healthy store takes well under a second (a new SQLite store ~10 s)

log = logging.getLogger(__name__)

# MLflow's tracking URI and its exporter are process-wide: one trace is written at a time.
_mlflow_lock = threading.Lock()


@dataclass
class Span:
    kind: SpanKind
    name: str
    start: float
    end: float | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    error: bool = False
    notes: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)
    children: list[Span] = field(default_factory=list)

    def add(self, child: Span) -> Span:
        self.children.append(child)
        return child

    def walk(self) -> Iterator[Span]:
        yield self
        for child in self.children:
            yield from child.walk()

    def settle(self) -> None:
        """Stretch every span over its children and notes, so the tree's times nest."""
        for child in self.children:
            child.settle()
        self.start = min([self.start, *(c.start for c in self.children)])
        self.end = max([self.end or self.start,
                        *(c.start if c.end is None else c.end for c in self.children),
                        *(ts for _, ts, _ in self.notes)])


def build_tree(events: Iterable[Event], name: str = "turn") -> Span:
    """The span tree of one turn's or one run's events (in any order), drawn from their fold."""
    tree = fold(events)
    if tree.start_ts is None:
        raise ValueError("no events to build a trace from")
    root = Span("turn", name, tree.start_ts)
    if tree.question:
        root.inputs = {"question": tree.question}
    if tree.programs:  # the promoted versions the turn ran (the baseline otherwise)
        root.attributes["fleet.programs"] = dict(tree.programs)
    if tree.outcome is not None:
        o = tree.outcome
        root.end, root.outputs, root.error = o.ts, o.answer, o.status == "error"
        root.attributes.update({"fleet.status": o.status,
                                "fleet.usage": o.usage.model_dump(mode="json")})
    steps = {id(s): n for n, s in enumerate((s for _, s in tree.steps() if not s.orphan), 1)}
    owners = {id(s): node for node, s in tree.steps()}
    held = {id(c) for n in tree.nodes.values() for s in n.steps for c in (*s.deciding, *s.calls)}
    items: list[tuple[int, Span]] = []
    for item in tree.top():
        if isinstance(item, Step):
            items.append((item.seq, _step_span(tree, owners[id(item)], item,
                                               steps.get(id(item), 0))))
        else:
            items.append((item.seq, _rlm_span(tree, item)))
    for node in tree.nodes.values():
        if node.kind == "agent":
            items += [(c.seq, _lm_span(c)) for c in node.calls if id(c) not in held]
            stray = [e for e in node.errors if not any(e in s.errors for s in node.steps)]
            root.notes += [_error_note(e) for e in stray]
    root.children = _ordered(items)
    if tree.cancelled is not None:
        root.notes.append(("cancelled", tree.cancelled.ts, {"reason": tree.cancelled.reason}))
    root.settle()
    return root


def _ordered(items: list[tuple[int, Span]]) -> list[Span]:
    return [span for _, span in sorted(items, key=lambda pair: pair[0])]


def _step_span(tree: EventTree, node: Node, step: Step, number: int) -> Span:
    if step.orphan:  # a tool result whose step is not in the stream
        span = Span("tool", f"tool {step.tool_name}", step.ts,
                    attributes={"fleet.tool": step.tool_name})
    else:
        span = Span("step", f"step {number}: {step.tool_name}",
                    step.deciding[0].ts - step.deciding[0].latency_s if step.deciding
                    else step.ts, step.ts,
                    inputs={"thought": step.thought, "tool_args": step.tool_args},
                    attributes={"fleet.step": number, "fleet.tool": step.tool_name,
                                "fleet.node_id": node.id})
    inside = [(c.seq, _lm_span(c)) for c in step.calls]
    inside += [(tree.node(c).seq, _rlm_span(tree, tree.node(c))) for c in step.children]
    span.children = [_lm_span(c) for c in step.deciding] + _ordered(inside)
    span.notes = [("ask_user", a.ts, {"question": a.question}) for a in step.asks]
    span.notes += [_error_note(e) for e in step.errors]
    span.notes += [("artifact", a.ts, {"path": a.path, "size_bytes": a.size_bytes,
                                       "media_type": a.media_type}) for a in step.artifacts]
    if step.result is not None:
        span.end, span.outputs, span.error = step.result_ts, {"output": step.result}, step.error
    return span


def _rlm_span(tree: EventTree, node: Node) -> Span:
    span = Span("rlm", f"rlm {node.id}", node.start_ts,
                inputs={name: info.model_dump() for name, info in node.inputs.items()},
                attributes={"fleet.node_id": node.id, "fleet.parent_id": node.parent_id or "",
                            "fleet.depth": node.depth, "fleet.model": node.model or "",
                            "fleet.sub_model": node.sub_model or "",
                            "fleet.signature": node.signature or "",
                            "fleet.max_iterations": node.max_iterations})
    if node.remaining is not None:
        span.attributes["fleet.remaining"] = dict(node.remaining)
    items = [(cell.seq, _iteration_span(tree, cell)) for cell in node.cells]
    items += [(c.seq, _lm_span(c)) for c in node.calls]
    in_cells = {c for cell in node.cells for c in cell.children}
    items += [(tree.node(c).seq, _rlm_span(tree, tree.node(c)))
              for c in node.children if c not in in_cells]
    span.children = _ordered(items)
    span.notes = [_error_note(e) for e in node.errors
                  if not any(e in cell.errors for cell in node.cells)]
    if node.finished is not None:
        f = node.finished
        span.end, span.outputs, span.error = f.ts, f.answer, f.status == "error"
        span.attributes.update({"fleet.status": f.status, "fleet.iterations": f.iterations,
                                "fleet.usage": f.usage.model_dump(mode="json")})
    return span


def _iteration_span(tree: EventTree, cell: Cell) -> Span:
    span = Span("iteration", f"iteration {cell.iteration}", cell.ts,
                attributes={"fleet.iteration": cell.iteration})
    if cell.seen:
        span.outputs = {"reasoning": cell.reasoning, "code": cell.code}
        span.attributes["fleet.phase"] = cell.phase
    items = [(c.seq, _lm_span(c)) for c in cell.calls]
    inside = [(c.seq, _lm_span(c)) for c in cell.sub_calls]
    inside += [(tree.node(c).seq, _rlm_span(tree, tree.node(c))) for c in cell.children]
    if cell.has_code:
        code = Span("code", "code", cell.code_ts or cell.ts, children=_ordered(inside))
        if cell.seen and cell.phase == "action":
            code.inputs = {"code": cell.code}
        if cell.output is not None:
            o = cell.output
            code.end, code.outputs = o.ts, {"stdout": o.stdout, "stderr": o.stderr}
            if o.error_type:
                code.outputs["error"] = o.traceback or f"{o.error_type}: {o.error_message}"
            code.attributes.update({"fleet.duration_s": o.duration_s,
                                    "fleet.timed_out": o.timed_out,
                                    "fleet.state_lost": o.state_lost,
                                    "fleet.error_type": o.error_type or ""})
            code.error = o.error_type is not None
        code.notes = [_error_note(e) for e in cell.errors]
        items.append((cell.code_seq or cell.seq, code))
    else:
        items += inside
    span.children = _ordered(items)
    return span


def _lm_span(e: LmCallEvent) -> Span:
    return Span("lm", f"lm {e.role}", e.ts - e.latency_s, e.ts,
                inputs={"prompt": e.prompt_preview}, outputs={"response": e.response_preview},
                attributes=lm_attributes(e), error=e.error is not None)


def _error_note(e: ErrorEvent) -> tuple[str, float, dict[str, str]]:
    return ("error", e.ts, {"error_type": e.error_type, "message": e.message})


def lm_attributes(e: LmCallEvent) -> dict[str, Any]:
    """An LM call's attributes: ours, plus MLflow's token usage and cost keys (which MLflow sums
    per trace)."""
    attributes: dict[str, Any] = {
        "fleet.role": e.role, "fleet.model": e.model, "fleet.node_id": e.node_id,
        "fleet.iteration": e.iteration, "fleet.prompt_tokens": e.prompt_tokens,
        "fleet.completion_tokens": e.completion_tokens, "fleet.cost_usd": e.cost_usd,
        "fleet.latency_s": e.latency_s,
        "mlflow.chat.tokenUsage": {"input_tokens": e.prompt_tokens,
                                   "output_tokens": e.completion_tokens,
                                   "total_tokens": e.prompt_tokens + e.completion_tokens},
    }
    if e.error:
        attributes["fleet.error"] = e.error
    if e.call_id is not None:
        attributes["fleet.call_id"] = e.call_id
    if e.attempt > 1 or e.retry_in_s is not None:
        attributes["fleet.attempt"] = e.attempt
        attributes["fleet.retry_in_s"] = e.retry_in_s
    if e.http_status is not None:
        attributes["fleet.http_status"] = e.http_status
    if e.finish_reason is not None:
        attributes["fleet.finish_reason"] = e.finish_reason
    if not e.counted:
        attributes["fleet.counted"] = False
    if e.cost_usd is not None:
        attributes["mlflow.llm.cost"] = {"total_cost": e.cost_usd}
    return attributes


# -- MLflow ------------------------------------------------------------------------------------
def import_mlflow() -> Any:
    try:
        import mlflow
    except ModuleNotFoundError:
        raise ImportError("MLflow tracing needs the mlflow extra: "
                          "pip install 'fleet-rlm[mlflow]'") from None
    return mlflow


def _activate(mlflow: Any, settings: Settings) -> str:
    """Point MLflow at the configured store; returns the experiment id. Never starts a server."""
    if not settings.mlflow_tracking_uri:
        raise ValueError("no MLflow tracking URI: set FLEET_MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        return client.create_experiment(settings.mlflow_experiment,
                                        artifact_location=_artifact_location(settings))
    return experiment.experiment_id


def _artifact_location(settings: Settings) -> str | None:
    """Next to a SQLite store's file; MLflow's default is ./mlruns in the working directory."""
    uri = settings.mlflow_tracking_uri or ""
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server or another store chooses for itself
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def trace_events(settings: Settings, events: Iterable[Event], *, name: str = "turn",
                 inputs: dict[str, Any] | None = None, tags: dict[str, str] | None = None,
                 wait: bool = False) -> str:
    """Write the events of one turn or run as one MLflow trace; returns its trace id.

    MLflow exports the trace in a background thread: it is readable shortly after (at once with
    `MlflowClient().get_trace(trace_id, flush=True)`) and flushed when the process exits.
    `wait=True` returns once it is written (about a second), for a process about to leave
    without its exit handlers."""
    mlflow = import_mlflow()
    root = build_tree(events, name)
    with _mlflow_lock:
        experiment_id = _activate(mlflow, settings)
        client = mlflow.MlflowClient()
        live = client.start_trace(root.name, span_type=MLFLOW_SPAN_TYPES[root.kind],
                                  inputs=inputs or root.inputs, attributes=root.attributes,
                                  tags=tags, experiment_id=experiment_id,
                                  start_time_ns=_ns(root.start))
        _add_notes(live, root)
        for child in root.children:
            _write(client, live.trace_id, child, live.span_id)
        client.end_trace(live.trace_id, outputs=root.outputs, status=_status(root),
                         end_time_ns=_ns(root.end))
        if wait:
            mlflow.flush_trace_async_logging()
    return live.trace_id


def record_trace(settings: Settings, events: Iterable[Event], **kwargs: Any) -> str | None:
    """`trace_events` for callers whose run must not fail or stall on tracing: None when no
    tracking URI is configured, or the trace failed (logged), or MLflow did not answer within
    TRACE_WAIT_S (it retries an unreachable store for minutes; the trace may still land)."""
    if not settings.mlflow_tracking_uri:
        return None
    events = list(events)
    future: Future[str] = Future()

    def write() -> None:
        try:
            future.set_result(trace_events(settings, events, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            future.set_exception(exc)

    # A daemon thread: a tracking store that never answers must not hold the process's exit.
    threading.Thread(target=write, name="fleet-mlflow-trace", daemon=True).start()
    try:
        return future.result(timeout=TRACE_WAIT_S)
    except TimeoutError:
        log.warning("MLflow did not answer within %.0f s: the trace id is not kept",
                    TRACE_WAIT_S)
    except Exception:  # a broken tracking store never fails a run
        log.exception("the MLflow trace was not recorded")
    return None


def _write(client: Any, trace_id: str, span: Span, parent_id: str) -> None:
    live = client.start_span(span.name, trace_id=trace_id, parent_id=parent_id,
                             span_type=MLFLOW_SPAN_TYPES[span.kind], inputs=span.inputs,
                             attributes=span.attributes, start_time_ns=_ns(span.start))
    _add_notes(live, span)
    for child in span.children:
        _write(client, trace_id, child, live.span_id)
    client.end_span(trace_id, live.span_id, outputs=span.outputs, status=_status(span),
                    end_time_ns=_ns(span.end))


def _add_notes(live: Any, span: Span) -> None:
    from mlflow.entities import SpanEvent

    for name, ts, attributes in span.notes:
        # mlflow's SpanEvent, a dataclass, inherits an abstract from_proto it does implement
        live.add_event(SpanEvent(  # type: ignore[abstract]
            name, timestamp=_ns(ts), attributes=attributes))


def _status(span: Span) -> str:
    return "ERROR" if span.error else "OK"


def _ns(seconds: float | None) -> int:
    return int((seconds or 0.0) * 1e9)


def log_feedback(settings: Settings, trace_id: str, thumbs_up: bool,
                 comment: str | None = None, user: str = "local") -> str:
    """Record a person's thumbs up or down (and an optional comment) on a trace; returns the
    assessment id."""
    mlflow = import_mlflow()
    from mlflow.entities import AssessmentSource

    with _mlflow_lock:
        _activate(mlflow, settings)
        assessment = mlflow.log_feedback(
            trace_id=trace_id, name=FEEDBACK_NAME, value=thumbs_up, rationale=comment or None,
            source=AssessmentSource(source_type="HUMAN", source_id=user))
    return assessment.assessment_id
