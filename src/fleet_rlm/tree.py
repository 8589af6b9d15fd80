"""The tree of one turn (or one `fleet run`), folded from its events: the one reading of an event
stream that the terminal renderer, the Markdown export and the MLflow trace draw from.

    agent node                     a chat turn's agent (a resumed turn adds another)
      step                         thought and tool call, the calls that chose it, its result
        rlm node                   an RLM the step started (rlm_query)
    rlm node                       an RLM: its signature, inputs, status and answer
      cell K                       iteration K: the calls that wrote it, its code and output,
        sub calls                  the llm_query calls its code made,
        rlm node                   and the child RLMs its code started

Events may come twice or out of order (a resumed stream, a backlog racing a live feed): the tree
is always the fold of the events sorted by seq, duplicates dropped. An event past the last seq is
applied in place; a late one is inserted and the tree rebuilt.

The web app's `frontend/src/tree/reducer.ts` is this fold's TypeScript twin; the event streams in
tests/data/event_trees/ and the trees they must give are checked against both.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from .budget import Remaining, Usage
from .events import (
    ArtifactEvent,
    AskUserEvent,
    CancelledEvent,
    CodeOutputEvent,
    ErrorEvent,
    Event,
    InputInfo,
    LmCallEvent,
    RlmFinishedEvent,
)

# A node's status: a turn's (fleet_rlm.status.TurnStatus), or an RLM's `extract`.
NodeStatus = Literal["running", "waiting", "ok", "extract", "budget", "cancelled", "error",
                     "interrupted"]
TreeStatus = Literal["idle", "running", "waiting", "ok", "extract", "budget", "cancelled",
                     "error", "interrupted"]
FINAL = frozenset({"ok", "extract", "budget", "cancelled", "error", "interrupted"})
RLM_EVENTS = frozenset({"rlm_started", "rlm_iteration", "code_output", "rlm_finished"})


@dataclass
class Totals:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    usd_unknown: int = 0
    latency: float = 0.0

    def add(self, call: LmCallEvent) -> None:
        self.calls += call.counted  # an attempt never sent is shown, not counted
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        self.usd += call.cost_usd or 0.0
        self.usd_unknown += call.cost_usd is None
        self.latency += call.latency_s

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Cell:
    """One iteration of an RLM node: created by its first event (usually the call that wrote it,
    which comes before the rlm_iteration event)."""

    iteration: int
    seq: int
    ts: float
    phase: Literal["action", "extract"] = "action"
    reasoning: str = ""
    code: str = ""
    seen: bool = False  # the rlm_iteration event itself arrived
    output: CodeOutputEvent | None = None
    calls: list[LmCallEvent] = field(default_factory=list)  # root/extract calls that wrote it
    sub_calls: list[LmCallEvent] = field(default_factory=list)  # llm_query calls of its code
    children: list[str] = field(default_factory=list)  # child RLMs its code started
    errors: list[ErrorEvent] = field(default_factory=list)  # raised while it was the latest
    code_seq: int | None = None  # when its code cell began: the action, or its output
    code_ts: float | None = None

    @property
    def has_code(self) -> bool:
        """A code cell ran (or was sent to run); an extract iteration has none."""
        return self.code_seq is not None


@dataclass
class Step:
    """One agent step: the calls that chose it, the tool call, and its result."""

    thought: str
    tool_name: str
    tool_args: dict[str, Any]
    seq: int
    ts: float
    deciding: list[LmCallEvent] = field(default_factory=list)  # the agent calls that chose it
    calls: list[LmCallEvent] = field(default_factory=list)  # other calls while it ran
    result: str | None = None
    error: bool = False
    result_ts: float | None = None
    children: list[str] = field(default_factory=list)  # RLM nodes its tool started
    asks: list[AskUserEvent] = field(default_factory=list)
    errors: list[ErrorEvent] = field(default_factory=list)
    artifacts: list[ArtifactEvent] = field(default_factory=list)  # files its code wrote
    orphan: bool = False  # a tool result with no step seen (e.g. the stream began after it)

    @property
    def call(self) -> LmCallEvent | None:
        return self.deciding[-1] if self.deciding else None

    @property
    def done(self) -> bool:
        return self.result is not None


@dataclass
class Node:
    id: str
    parent_id: str | None
    depth: int
    kind: Literal["agent", "rlm"]
    seq: int
    start_ts: float
    end_ts: float
    status: NodeStatus = "running"
    model: str | None = None
    sub_model: str | None = None
    signature: str | None = None
    inputs: dict[str, InputInfo] = field(default_factory=dict)
    max_iterations: int | None = None
    cells: list[Cell] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    calls: list[LmCallEvent] = field(default_factory=list)  # calls not in a cell, in seq order
    children: list[str] = field(default_factory=list)
    own: Totals = field(default_factory=Totals)
    answer: dict[str, Any] | None = None
    errors: list[ErrorEvent] = field(default_factory=list)
    finished: RlmFinishedEvent | None = None
    remaining: Remaining | None = None
    unclaimed: list[LmCallEvent] = field(default_factory=list)  # agent calls awaiting a step
    current: int | None = None  # the iteration whose code cell began last

    def cell(self, iteration: int) -> Cell | None:
        return next((c for c in self.cells if c.iteration == iteration), None)

    def all_calls(self) -> list[LmCallEvent]:
        """Every LM call made at this node, in seq order."""
        calls = [*self.calls, *(c for cell in self.cells for c in (*cell.calls, *cell.sub_calls))]
        return sorted(calls, key=lambda c: c.seq)

    def running_cell(self) -> Cell | None:
        return self.cell(self.current) if self.current is not None else None

    def open_step(self) -> Step | None:
        return next((s for s in reversed(self.steps) if not s.done), None)


@dataclass
class Outcome:
    """How the turn (or run) ended: its last turn_finished, or its top RLM's rlm_finished."""

    ts: float
    status: str
    answer: dict[str, Any] | None
    usage: Usage


class EventTree:
    """The fold. `apply` takes events in any order; the state is always that of the sorted,
    de-duplicated stream."""

    def __init__(self, turn_id: str | None = None) -> None:
        self.turn_id = turn_id
        self._reset()

    def _reset(self) -> None:
        self.events: list[Event] = []
        self.last_seq = 0
        self.nodes: dict[str, Node] = {}
        self.roots: list[str] = []
        self.status: TreeStatus = "idle"
        self.question = ""
        self.programs: dict[str, str] = {}  # the program version each target ran
        self.answer = ""
        self.ask_user: AskUserEvent | None = None
        self.usage: Usage | None = None
        self.remaining: Remaining | None = None
        self.totals = Totals()
        self.errors: list[ErrorEvent] = []
        self.cancelled: CancelledEvent | None = None
        self.outcome: Outcome | None = None
        self.start_ts: float | None = None
        self.end_ts: float | None = None
        self._open_step: Step | None = None  # the step whose tool runs now, in any node

    @classmethod
    def of(cls, events: Iterable[Event], turn_id: str | None = None) -> EventTree:
        tree = cls(turn_id)
        tree.extend(events)
        return tree

    def extend(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: Event) -> None:
        if self.turn_id is not None and event.turn_id != self.turn_id:
            return
        if event.seq > self.last_seq:
            self._step(event)
            return
        seqs = [e.seq for e in self.events]
        at = bisect.bisect_left(seqs, event.seq)
        if at < len(seqs) and seqs[at] == event.seq:
            return  # a duplicate
        events = [*self.events[:at], event, *self.events[at:]]
        self._reset()
        for e in events:
            self._step(e)

    # -- queries -----------------------------------------------------------------------------
    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def steps(self) -> list[tuple[Node, Step]]:
        """Every agent step of every agent node, in seq order."""
        return sorted(((n, s) for n in self.nodes.values() for s in n.steps),
                      key=lambda pair: pair[1].seq)

    def top(self) -> list[Step | Node]:
        """What sits at the top of the turn, in seq order: the agent steps (holding what they
        started) and the RLM nodes no step or cell holds."""
        items: list[tuple[int, Step | Node]] = [(s.seq, s) for _, s in self.steps()]
        held = {c for n in self.nodes.values() for s in n.steps for c in s.children}
        for node in self.nodes.values():
            parent = self.nodes.get(node.parent_id) if node.parent_id else None
            under_agent = parent is not None and parent.kind == "agent" and node.id not in held
            if node.kind == "rlm" and (node.id in self.roots or under_agent):
                items.append((node.seq, node))
        return [item for _, item in sorted(items, key=lambda pair: pair[0])]

    def subtree_totals(self, node_id: str) -> Totals:
        node = self.nodes[node_id]
        total = Totals(**vars(node.own))
        for child in node.children:
            sub = self.subtree_totals(child)
            for name, value in vars(sub).items():
                setattr(total, name, getattr(total, name) + value)
        return total

    # -- the fold ----------------------------------------------------------------------------
    def _step(self, event: Event) -> None:
        self.turn_id = self.turn_id or event.turn_id
        self.events.append(event)
        self.last_seq = event.seq
        self.start_ts = event.ts if self.start_ts is None else self.start_ts
        self.end_ts = event.ts
        if self.status in ("waiting", "idle"):  # a paused turn goes on when anything arrives
            if self.status == "waiting":
                self._settle("waiting", "ok")
            self.status, self.ask_user = "running", None
        node = self.nodes.get(event.node_id)
        if node is None:
            node = self.nodes[event.node_id] = Node(
                event.node_id, event.parent_id, event.depth, _guess_kind(event), event.seq,
                event.ts, event.ts)
            parent = self.nodes.get(event.parent_id) if event.parent_id else None
            if parent is None:
                self.roots.append(node.id)
            else:
                spawned_at = getattr(event, "iteration", None) if event.type == "rlm_started" \
                    else None
                self._spawned(parent, node.id, spawned_at)
        node.end_ts = event.ts
        getattr(self, f"_on_{event.type}")(node, event)

    def _spawned(self, parent: Node, child: str, iteration: int | None) -> None:
        """Record a child under its parent, and under the cell that started it (the event says
        which), else the cell (or agent step) running when it started."""
        parent.children.append(child)
        if parent.kind == "rlm" and parent.cells:
            cell = parent.cell(iteration) if iteration is not None else None
            cell = cell or next((c for c in reversed(parent.cells) if c.output is None),
                                parent.cells[-1])
            cell.children.append(child)
        elif parent.kind == "agent" and parent.steps:
            (parent.open_step() or parent.steps[-1]).children.append(child)

    def _cell(self, node: Node, iteration: int, event: Event) -> Cell:
        cell = node.cell(iteration)
        if cell is None:
            cell = Cell(iteration, event.seq, event.ts)
            node.cells.append(cell)
        return cell

    def _begin_code(self, node: Node, cell: Cell, seq: int, ts: float) -> None:
        if cell.code_seq is None:
            cell.code_seq, cell.code_ts = seq, ts
            node.current = cell.iteration

    def _settle(self, old: str, new: str) -> None:
        for node in self.nodes.values():
            if node.status == old:
                node.status = new  # type: ignore[assignment]

    def _on_turn_started(self, node: Node, e: Any) -> None:
        self.question = e.question
        self.programs = dict(e.programs)

    def _on_agent_step(self, node: Node, e: Any) -> None:
        step = Step(e.thought, e.tool_name, dict(e.tool_args), e.seq, e.ts,
                    deciding=node.unclaimed)
        node.unclaimed = []
        node.steps.append(step)
        self._open_step = step

    def _on_tool_result(self, node: Node, e: Any) -> None:
        # After an ask_user pause the result lands on the resumed agent node, not the asking one.
        order = [node.id, *(r for r in reversed(self.roots) if r != node.id)]
        step = next((s for n in order if n in self.nodes
                     for s in reversed(self.nodes[n].steps)
                     if not s.done and s.tool_name == e.tool_name), None)
        if step is None:
            step = Step("", e.tool_name, {}, e.seq, e.ts, orphan=True)
            node.steps.append(step)
        step.result, step.error, step.result_ts = e.output, e.error, e.ts
        if self._open_step is step:
            self._open_step = None

    def _on_artifact(self, node: Node, e: ArtifactEvent) -> None:
        # Written while the step's tool ran: the open step, else the node's last one.
        step = node.open_step() or (node.steps[-1] if node.steps else None)
        if step is None:
            step = Step("", "python", {}, e.seq, e.ts, orphan=True)
            node.steps.append(step)
        step.artifacts.append(e)

    def _on_ask_user(self, node: Node, e: AskUserEvent) -> None:
        self.ask_user = e
        if self._open_step is not None:
            self._open_step.asks.append(e)

    def _on_rlm_started(self, node: Node, e: Any) -> None:
        node.kind = "rlm"
        node.model, node.sub_model, node.signature = e.model, e.sub_model, e.signature
        node.inputs, node.max_iterations = dict(e.inputs), e.max_iterations

    def _on_rlm_iteration(self, node: Node, e: Any) -> None:
        node.kind = "rlm"
        cell = self._cell(node, e.iteration, e)
        cell.phase, cell.reasoning, cell.code, cell.seen = e.phase, e.reasoning, e.code, True
        if e.phase == "action":
            self._begin_code(node, cell, e.seq, e.ts)

    def _on_code_output(self, node: Node, e: CodeOutputEvent) -> None:
        cell = self._cell(node, e.iteration, e)
        cell.output = e
        self._begin_code(node, cell, e.seq, e.ts)

    def _on_lm_call(self, node: Node, e: LmCallEvent) -> None:
        node.own.add(e)
        self.totals.add(e)
        if node.model is None and e.role != "sub":
            node.model = e.model
        if e.iteration is not None and e.role in ("root", "extract"):
            self._cell(node, e.iteration, e).calls.append(e)
        elif e.iteration is not None and e.role == "sub":
            self._cell(node, e.iteration, e).sub_calls.append(e)
        else:
            node.calls.append(e)
            if e.role == "agent" and e.iteration is not None:
                node.unclaimed.append(e)  # the step it chooses comes next
            elif node.kind == "agent" and self._open_step is not None:
                self._open_step.calls.append(e)

    def _on_budget(self, node: Node, e: Any) -> None:
        self.usage, self.remaining = e.usage, e.remaining
        node.remaining = e.remaining

    def _on_rlm_finished(self, node: Node, e: RlmFinishedEvent) -> None:
        node.status, node.answer, node.finished = e.status, e.answer, e
        if e.parent_id is None:  # a run without an agent: the top RLM's outcome is the run's
            self.outcome = Outcome(e.ts, e.status, e.answer, e.usage)

    def _on_answer_delta(self, node: Node, e: Any) -> None:
        self.answer += e.text

    def _on_turn_finished(self, node: Node, e: Any) -> None:
        self.usage = e.usage
        if e.answer is not None:
            self.answer = e.answer
        self.status = node.status = e.status
        if e.status in FINAL:
            self._settle("running", e.status)
        self.outcome = Outcome(e.ts, e.status, {"answer": e.answer}, e.usage)

    def _on_error(self, node: Node, e: ErrorEvent) -> None:
        node.errors.append(e)
        self.errors.append(e)
        cell = node.running_cell() if node.kind == "rlm" else None
        if node.kind == "rlm" and node.cells and not node.cells[-1].has_code:
            cell = node.cells[-1]  # the iteration being written (a reply it could not read)
        if cell is not None:
            cell.errors.append(e)
        elif node.kind == "agent" and self._open_step is not None:
            self._open_step.errors.append(e)

    def _on_cancelled(self, node: Node, e: CancelledEvent) -> None:
        self.cancelled = e
        self._settle("running", "cancelled")


def _guess_kind(event: Event) -> Literal["agent", "rlm"]:
    if event.type in RLM_EVENTS:
        return "rlm"
    if event.type == "lm_call" and event.role not in ("agent", "summary"):
        return "rlm"
    return "agent"


def fold(events: Iterable[Event], turn_id: str | None = None) -> EventTree:
    """The tree of `events`, in any order, duplicates allowed."""
    return EventTree.of(events, turn_id)


def snapshot(tree: EventTree) -> dict[str, Any]:
    """The tree's shape as plain data: what the shared fixtures in tests/data/event_trees/ hold
    and what the web app's reducer is checked against (its twin lives in the vitest suite)."""
    def seqs(calls: Iterable[LmCallEvent]) -> list[int]:
        return [c.seq for c in calls]

    nodes = {}
    for node in tree.nodes.values():
        nodes[node.id] = {
            "parent": node.parent_id, "depth": node.depth, "kind": node.kind,
            "status": node.status, "model": node.model, "children": node.children,
            "calls": node.own.calls, "node_calls": seqs(node.calls),
            "answer": node.answer, "errors": [e.seq for e in node.errors],
            "cells": [{"iteration": c.iteration, "phase": c.phase, "seen": c.seen,
                       "code": c.code, "output": c.output.seq if c.output else None,
                       "calls": seqs(c.calls), "sub_calls": seqs(c.sub_calls),
                       "children": c.children} for c in node.cells],
            "steps": [{"tool": s.tool_name, "call": s.call.seq if s.call else None,
                       "result": s.result, "error": s.error, "children": s.children,
                       "artifacts": [a.path for a in s.artifacts]}
                      for s in node.steps],
        }
    return {
        "status": tree.status, "question": tree.question, "answer": tree.answer,
        "ask_user": tree.ask_user.seq if tree.ask_user else None, "roots": tree.roots,
        "last_seq": tree.last_seq, "calls": tree.totals.calls,
        "tokens": tree.totals.tokens, "errors": [e.seq for e in tree.errors],
        "cancelled": tree.cancelled.seq if tree.cancelled else None, "nodes": nodes,
    }
