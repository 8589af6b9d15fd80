"""MLflow tracing: the event stream of one turn (or one `fleet run`) as one MLflow trace.

The trace is built once the run is over, from its events: a turn that paused on ask_user and
resumed (even in another process) is still one trace, and no MLflow call ever runs inside the
engine. `build_tree` reads the events into a tree of spans that the Markdown export walks too:

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
from .events import Event, LmCallEvent

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
    notes: list[tuple[str, float, dict[str, str]]] = field(default_factory=list)
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
        self.end = max([self.end or self.start, *(c.end for c in self.children),
                        *(ts for _, ts, _ in self.notes)])


def build_tree(events: Iterable[Event], name: str = "turn") -> Span:
    """The span tree of one turn's or one run's events (in any order; they are sorted by seq)."""
    events = sorted(events, key=lambda e: e.seq)
    if not events:
        raise ValueError("no events to build a trace from")
    builder = _TreeBuilder(Span("turn", name, events[0].ts))
    for event in events:
        getattr(builder, f"_on_{event.type}", builder._ignore)(event)
    builder.root.settle()
    return builder.root


class _TreeBuilder:
    def __init__(self, root: Span) -> None:
        self.root = root
        self.rlms: dict[str, Span] = {}  # RLM node id -> its span
        self.iterations: dict[tuple[str, int], Span] = {}
        self.cells: dict[tuple[str, int], Span] = {}
        self.current: dict[str, int] = {}  # RLM node id -> the iteration whose code runs now
        self.step: Span | None = None  # the agent step whose tool has not returned yet
        self.deciding: list[Span] = []  # agent LM calls, until the step they chose arrives
        self.steps = 0

    def _ignore(self, event: Event) -> None:
        pass

    def _finish_root(self, ts: float, status: str, outputs: dict | None, usage: Any) -> None:
        self.root.end, self.root.outputs = ts, outputs
        self.root.attributes.update({"fleet.status": status,
                                     "fleet.usage": usage.model_dump(mode="json")})
        self.root.error = status == "error"

    def _iteration(self, node_id: str, iteration: int, ts: float) -> Span:
        key = (node_id, iteration)
        if key not in self.iterations:
            self.iterations[key] = self.rlms[node_id].add(Span(
                "iteration", f"iteration {iteration}", ts,
                attributes={"fleet.iteration": iteration}))
        return self.iterations[key]

    def _cell(self, node_id: str, iteration: int, ts: float) -> Span:
        key = (node_id, iteration)
        if key not in self.cells:
            self.cells[key] = self._iteration(node_id, iteration, ts).add(Span("code", "code", ts))
            self.current[node_id] = iteration
        return self.cells[key]

    def _innermost(self, node_id: str) -> Span:
        if node_id in self.rlms:
            return self.cells.get((node_id, self.current.get(node_id, 0))) or self.rlms[node_id]
        return self.step or self.root

    # -- one handler per event type ----------------------------------------------------------
    def _on_turn_started(self, e: Any) -> None:
        self.root.inputs = {"question": e.question}

    def _on_lm_call(self, e: LmCallEvent) -> None:
        span = Span("lm", f"lm {e.role}", e.ts - e.latency_s, e.ts,
                    inputs={"prompt": e.prompt_preview}, outputs={"response": e.response_preview},
                    attributes=lm_attributes(e), error=e.error is not None)
        if e.node_id in self.rlms:
            if e.iteration is None:
                parent = self.rlms[e.node_id]
            elif e.role == "sub" and (e.node_id, e.iteration) in self.cells:
                parent = self.cells[(e.node_id, e.iteration)]
            else:
                parent = self._iteration(e.node_id, e.iteration, span.start)
        elif e.role == "agent" and e.iteration is not None:
            self.deciding.append(span)
            return
        else:
            parent = self.step or self.root
        parent.add(span)

    def _on_agent_step(self, e: Any) -> None:
        self.steps += 1
        start = self.deciding[0].start if self.deciding else e.ts
        self.step = self.root.add(Span(
            "step", f"step {self.steps}: {e.tool_name}", start, e.ts,
            inputs={"thought": e.thought, "tool_args": e.tool_args},
            attributes={"fleet.step": self.steps, "fleet.tool": e.tool_name,
                        "fleet.node_id": e.node_id}))
        self.step.children.extend(self.deciding)
        self.deciding = []

    def _on_tool_result(self, e: Any) -> None:
        step = self.step
        if step is None or step.attributes["fleet.tool"] != e.tool_name:
            step = self.root.add(Span("tool", f"tool {e.tool_name}", e.ts,
                                      attributes={"fleet.tool": e.tool_name}))
        step.end, step.outputs, step.error = e.ts, {"output": e.output}, e.error
        self.step = None

    def _on_ask_user(self, e: Any) -> None:
        (self.step or self.root).notes.append(("ask_user", e.ts, {"question": e.question}))

    def _on_rlm_started(self, e: Any) -> None:
        parent = self._innermost(e.parent_id) if e.parent_id else self.root
        self.rlms[e.node_id] = parent.add(Span(
            "rlm", f"rlm {e.node_id}", e.ts,
            inputs={name: info.model_dump() for name, info in e.inputs.items()},
            attributes={"fleet.node_id": e.node_id, "fleet.parent_id": e.parent_id or "",
                        "fleet.depth": e.depth, "fleet.model": e.model,
                        "fleet.sub_model": e.sub_model, "fleet.signature": e.signature,
                        "fleet.max_iterations": e.max_iterations}))

    def _on_rlm_iteration(self, e: Any) -> None:
        iteration = self._iteration(e.node_id, e.iteration, e.ts)
        iteration.outputs = {"reasoning": e.reasoning, "code": e.code}
        iteration.attributes["fleet.phase"] = e.phase
        if e.phase == "action":
            self._cell(e.node_id, e.iteration, e.ts).inputs = {"code": e.code}

    def _on_code_output(self, e: Any) -> None:
        cell = self._cell(e.node_id, e.iteration, e.ts)
        cell.end = e.ts
        cell.outputs = {"stdout": e.stdout, "stderr": e.stderr}
        if e.error_type:
            cell.outputs["error"] = e.traceback or f"{e.error_type}: {e.error_message}"
        cell.attributes.update({"fleet.duration_s": e.duration_s, "fleet.timed_out": e.timed_out,
                                "fleet.state_lost": e.state_lost,
                                "fleet.error_type": e.error_type or ""})
        cell.error = e.error_type is not None

    def _on_budget(self, e: Any) -> None:
        span = self.rlms.get(e.node_id, self.root)
        span.attributes["fleet.remaining"] = dict(e.remaining)

    def _on_rlm_finished(self, e: Any) -> None:
        span = self.rlms[e.node_id]
        span.end, span.outputs, span.error = e.ts, e.answer, e.status == "error"
        span.attributes.update({"fleet.status": e.status, "fleet.iterations": e.iterations,
                                "fleet.usage": e.usage.model_dump(mode="json")})
        if e.parent_id is None:  # a run without an agent: the root RLM's outcome is the run's
            self._finish_root(e.ts, e.status, e.answer, e.usage)

    def _on_turn_finished(self, e: Any) -> None:
        self._finish_root(e.ts, e.status, {"answer": e.answer}, e.usage)

    def _on_error(self, e: Any) -> None:
        self._innermost(e.node_id).notes.append(
            ("error", e.ts, {"error_type": e.error_type, "message": e.message}))

    def _on_cancelled(self, e: Any) -> None:
        self.root.notes.append(("cancelled", e.ts, {"reason": e.reason}))


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
    except Exception:  # noqa: BLE001 - a broken tracking store never fails a run
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
        live.add_event(SpanEvent(name, timestamp=_ns(ts), attributes=attributes))


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
