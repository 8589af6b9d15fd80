"""The terminal view of a recursive run: a live Rich tree drawn from the event stream.

A chat turn's agent is a node too: its steps (thought, tool call, result) are drawn above the RLM
trees it delegated to.

`TreeRenderer` is an event sink. Sinks run in the engine's worker threads, so an event only
updates state under a lock; `live()` redraws from that state a few times a second.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from ..budget import Limits, Usage
from ..events import Event

SHOWN_ITERATIONS = 3
SHOWN_STEPS = 6
SHOWN_CHILDREN = 8
CODE_LINES = 2
OUTPUT_LINES = 2
LINE_CHARS = 100
BAR = 6
STATUS_STYLE = {"running": "yellow", "ok": "green", "extract": "cyan", "budget": "magenta",
                "cancelled": "magenta", "error": "red", "waiting": "cyan"}


@dataclass
class IterationView:
    number: int
    phase: str
    reasoning: str
    code: str
    output: str | None = None
    error: str | None = None
    duration_s: float | None = None


@dataclass
class StepView:
    number: int
    thought: str
    call: str
    output: str | None = None
    error: bool = False


@dataclass
class NodeView:
    node_id: str
    parent_id: str | None
    depth: int
    started: float
    model: str = "?"
    max_iterations: int | None = None
    status: str = "running"
    finished: float | None = None
    iterations: dict[int, IterationView] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    root_calls: int = 0
    sub_calls: int = 0
    sub_tokens: int = 0
    last_error: str | None = None
    agent: bool = False
    steps: list[StepView] = field(default_factory=list)


class TreeRenderer:
    """Collects events into a tree of RLM nodes and draws it with a budget footer."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeView] = {}
        self._roots: list[str] = []
        self._usage: Usage | None = None
        self._calls = self._tokens = self._unpriced = 0
        self._usd = 0.0
        self._started = time.time()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._apply(event)

    def _apply(self, event: Event) -> None:
        node = self._nodes.get(event.node_id)
        if node is None:
            node = self._nodes[event.node_id] = NodeView(event.node_id, event.parent_id,
                                                         event.depth, event.ts)
            parent = self._nodes.get(event.parent_id) if event.parent_id else None
            (parent.children if parent else self._roots).append(event.node_id)
        match event.type:
            case "rlm_started":
                node.model, node.max_iterations = event.model, event.max_iterations
            case "rlm_iteration":
                node.iterations[event.iteration] = IterationView(
                    event.iteration, event.phase, event.reasoning, event.code)
            case "code_output":
                it = node.iterations.get(event.iteration)
                if it is not None:
                    it.output = (event.stdout + event.stderr).strip()
                    it.duration_s = event.duration_s
                    if event.error_type:
                        it.error = f"{event.error_type}: {event.error_message or ''}".strip()
                        if event.timed_out:
                            it.error += " (timed out)"
            case "lm_call":
                self._calls += 1
                self._tokens += event.prompt_tokens + event.completion_tokens
                if event.cost_usd is None:
                    self._unpriced += 1
                else:
                    self._usd += event.cost_usd
                if event.role == "sub":
                    node.sub_calls += 1
                    node.sub_tokens += event.prompt_tokens + event.completion_tokens
                else:
                    node.root_calls += 1
                if event.error:
                    node.last_error = event.error
            case "budget":
                self._usage = event.usage
            case "turn_started":
                node.agent = True
            case "agent_step":
                node.agent = True
                node.steps.append(StepView(len(node.steps) + 1, event.thought,
                                           f"{event.tool_name}({_arguments(event.tool_args)})"))
            case "tool_result":
                node.agent = True
                step = node.steps[-1] if node.steps else None
                if step is None or step.output is not None:  # a resumed turn: the user's reply
                    step = StepView(len(node.steps) + 1, "", event.tool_name)
                    node.steps.append(step)
                step.output, step.error = event.output, event.error
            case "turn_finished":
                node.status, node.finished = event.status, event.ts
                self._usage = event.usage
            case "rlm_finished":
                node.status, node.finished = event.status, event.ts
                self._usage = event.usage
            case "error":
                node.last_error = f"{event.error_type}: {event.message}"
            case "cancelled":
                node.last_error = f"cancelled: {event.reason}"

    # -- drawing -----------------------------------------------------------------------------
    def render(self) -> RenderableType:
        with self._lock:
            now = time.time()
            if not self._roots:
                return Text("starting…", style="dim")
            trees = [self._tree(self._nodes[n], now) for n in self._roots]
            return Group(*trees, self._footer(now))

    def _tree(self, node: NodeView, now: float) -> Tree:
        tree = Tree(self._label(node, now), guide_style="dim")
        if len(node.steps) > SHOWN_STEPS:
            tree.add(Text(f"… {len(node.steps) - SHOWN_STEPS} earlier steps", style="dim"))
        for step in node.steps[-SHOWN_STEPS:]:
            tree.add(_step_text(step))
        for it in sorted(node.iterations.values(), key=lambda i: i.number)[-SHOWN_ITERATIONS:]:
            tree.add(_iteration_text(it))
        if node.last_error and node.status != "ok":
            tree.add(Text(_clip(node.last_error), style="red"))
        shown = node.children
        if len(shown) > SHOWN_CHILDREN:
            running = [c for c in shown if self._nodes[c].status == "running"]
            done = [c for c in shown if c not in running]
            keep = set(running[:SHOWN_CHILDREN] + done[-max(SHOWN_CHILDREN - len(running), 0):])
            shown = [c for c in shown if c in keep]
            counts: dict[str, int] = {}
            for c in node.children:
                if c not in keep:
                    status = self._nodes[c].status
                    counts[status] = counts.get(status, 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in counts.items())
            tree.add(Text(f"… {len(node.children) - len(shown)} more children ({summary})",
                          style="dim"))
        for child in shown:
            tree.add(self._tree(self._nodes[child], now))
        return tree

    def _label(self, node: NodeView, now: float) -> Text:
        elapsed = (node.finished or now) - node.started
        style = STATUS_STYLE.get(node.status, "white")
        if node.agent:
            return Text.from_markup(f"[bold]agent[/] [dim]{node.node_id}[/] [{style}]{node.status}"
                                    f"[/] step {len(node.steps)} {elapsed:.1f}s")
        parent = self._nodes.get(node.parent_id) if node.parent_id else None
        top = node.parent_id is None or parent is not None and parent.agent
        iterations = len([i for i in node.iterations.values() if i.phase == "action"])
        limit = f"/{node.max_iterations}" if node.max_iterations else ""
        label = Text.from_markup(
            f"[bold]{'root' if top else 'child'}[/] "
            f"[dim]{node.node_id}[/] depth {node.depth} {escape(node.model)} "
            f"[{style}]{node.status}[/] iter {iterations}{limit} {elapsed:.1f}s")
        if node.sub_calls:
            label.append(f"  llm_query ×{node.sub_calls} ({node.sub_tokens:,} tok)", style="blue")
        return label

    def _footer(self, now: float) -> Text:
        usage = self._usage
        limits = usage.limits if usage else Limits()
        calls = max(self._calls, usage.calls if usage else 0)
        tokens = max(self._tokens, usage.tokens if usage else 0)
        usd = max(self._usd, usage.usd if usage else 0.0)
        unpriced = max(self._unpriced, usage.usd_unknown_calls if usage else 0)
        if unpriced and not usd:
            cost = "cost unknown"
        else:
            cost = _meter("$", usd, limits.max_usd, "{:.4g}")
            if unpriced:
                cost += f" + cost unknown ({unpriced} unpriced calls)"
        parts = [
            _meter("calls ", calls, limits.max_calls),
            _meter("tokens ", tokens, limits.max_tokens, "{:,}"),
            cost,
            f"{now - self._started:.1f}s",
        ]
        return Text(" │ ".join(parts), style="bold")

    @contextmanager
    def live(self, refresh_per_second: float = 4) -> Iterator[Live]:
        """Redraw while the block runs; the last frame stays on screen."""
        with Live(console=self.console, get_renderable=self.render,
                  refresh_per_second=refresh_per_second, redirect_stdout=False) as live:
            yield live
        if not self.console.is_terminal:  # Rich ends the last frame with a newline only on a tty
            self.console.line()


def _meter(label: str, value: float, limit: float | None, fmt: str = "{}") -> str:
    if limit is None:
        return label + fmt.format(value)
    filled = min(round(value / limit * BAR), BAR)
    return f"{label}{fmt.format(value)}/{fmt.format(limit)} {'█' * filled}{'░' * (BAR - filled)}"


def _arguments(args: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())


def _step_text(step: StepView) -> Text:
    text = Text(f"{step.number}. ", style="bold")
    if step.thought:
        text.append(_clip(step.thought), style="italic")
        text.append("\n   ")
    text.append(_clip(step.call), style="green")
    if step.output is not None:
        text.append("\n   → " + _clip(step.output), style="red" if step.error else "dim")
    return text


def _iteration_text(it: IterationView) -> Text:
    if it.phase == "extract":
        text = Text(f"#{it.number} extract: ", style="cyan")
        text.append(_clip(it.reasoning))
        return text
    text = Text(f"#{it.number} ", style="bold")
    lines = [line for line in it.code.splitlines() if line.strip()] or ["(no code)"]
    text.append("\n   ".join(_clip(line) for line in lines[:CODE_LINES]), style="green")
    if len(lines) > CODE_LINES:
        text.append(f"  (+{len(lines) - CODE_LINES} lines)", style="dim")
    if it.output:
        out = it.output.splitlines()
        text.append("\n   → " + "\n     ".join(_clip(line) for line in out[:OUTPUT_LINES]),
                    style="dim")
        if len(out) > OUTPUT_LINES:
            text.append(f"  (+{len(out) - OUTPUT_LINES} lines)", style="dim")
    if it.error:
        text.append(f"\n   ✗ {_clip(it.error)}", style="red")
    if it.duration_s is not None:
        text.append(f"  [{it.duration_s:.2f}s]", style="dim")
    return text


def _clip(line: str, limit: int = LINE_CHARS) -> str:
    if "\n" in line:
        line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
