"""The terminal view of a recursive run: a live Rich tree drawn from the event stream.

A chat turn's agent is a node too: its steps (thought, tool call, result) are drawn above the RLM
trees it delegated to.

`TreeRenderer` is an event sink. Sinks run in the engine's worker threads, so an event only
updates the fold (tree.py) under a lock; `live()` redraws from it a few times a second.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from ..budget import Limits
from ..events import Event
from ..tree import Cell, EventTree, Node, Step

SHOWN_ITERATIONS = 3
SHOWN_STEPS = 6
SHOWN_CHILDREN = 8
CODE_LINES = 2
OUTPUT_LINES = 2
LINE_CHARS = 100
BAR = 6
STATUS_STYLE = {"running": "yellow", "ok": "green", "extract": "cyan", "budget": "magenta",
                "cancelled": "magenta", "error": "red", "waiting": "cyan", "interrupted": "red"}


class TreeRenderer:
    """Folds events into the turn's tree (tree.py) and draws it with a budget footer."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._lock = threading.Lock()
        self._tree = EventTree()
        self._started = time.time()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._tree.apply(event)

    # -- drawing -----------------------------------------------------------------------------
    def render(self) -> RenderableType:
        with self._lock:
            now = time.time()
            if not self._tree.roots:
                return Text("starting…", style="dim")
            trees = [self._draw(self._tree.node(n), now) for n in self._tree.roots]
            return Group(*trees, self._footer(now))

    def _draw(self, node: Node, now: float) -> Tree:
        tree = Tree(self._label(node, now), guide_style="dim")
        if len(node.steps) > SHOWN_STEPS:
            tree.add(Text(f"… {len(node.steps) - SHOWN_STEPS} earlier steps", style="dim"))
        for number, step in list(enumerate(node.steps, 1))[-SHOWN_STEPS:]:
            tree.add(_step_text(number, step))
        seen = sorted((c for c in node.cells if c.seen), key=lambda c: c.iteration)
        if len(seen) > SHOWN_ITERATIONS:
            earlier = len(seen) - SHOWN_ITERATIONS
            tree.add(Text(f"… {earlier} earlier iteration{'s' * (earlier != 1)}", style="dim"))
        for cell in seen[-SHOWN_ITERATIONS:]:
            tree.add(_iteration_text(cell))
        last_error = self._last_error(node)
        if last_error and node.status != "ok":
            tree.add(Text(_clip(last_error), style="red"))
        shown = node.children
        if len(shown) > SHOWN_CHILDREN:
            running = [c for c in shown if self._tree.node(c).status == "running"]
            done = [c for c in shown if c not in running]
            keep = set(running[:SHOWN_CHILDREN] + done[-max(SHOWN_CHILDREN - len(running), 0):])
            shown = [c for c in shown if c in keep]
            counts: dict[str, int] = {}
            for c in node.children:
                if c not in keep:
                    status = self._tree.node(c).status
                    counts[status] = counts.get(status, 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in counts.items())
            tree.add(Text(f"… {len(node.children) - len(shown)} more children ({summary})",
                          style="dim"))
        for child in shown:
            tree.add(self._draw(self._tree.node(child), now))
        return tree

    def _last_error(self, node: Node) -> str | None:
        """The latest of the node's error events, failed calls and a cancel sent to it."""
        errors = [(e.seq, f"{e.error_type}: {e.message}") for e in node.errors]
        errors += [(c.seq, c.error) for c in node.all_calls() if c.error]
        cancelled = self._tree.cancelled
        if cancelled is not None and cancelled.node_id == node.id:
            errors.append((cancelled.seq, f"cancelled: {cancelled.reason}"))
        return max(errors)[1] if errors else None

    def _label(self, node: Node, now: float) -> Text:
        elapsed = (now if node.status == "running" else node.end_ts) - node.start_ts
        style = STATUS_STYLE.get(node.status, "white")
        if node.kind == "agent":
            return Text.from_markup(f"[bold]agent[/] [dim]{node.id}[/] [{style}]{node.status}"
                                    f"[/] step {len(node.steps)} {elapsed:.1f}s")
        parent = self._tree.nodes.get(node.parent_id) if node.parent_id else None
        top = node.parent_id is None or parent is not None and parent.kind == "agent"
        iterations = len([c for c in node.cells if c.seen and c.phase == "action"])
        limit = f"/{node.max_iterations}" if node.max_iterations else ""
        label = Text.from_markup(
            f"[bold]{'root' if top else 'child'}[/] "
            f"[dim]{node.id}[/] depth {node.depth} {escape(node.model or '?')} "
            f"[{style}]{node.status}[/] iter {iterations}{limit} {elapsed:.1f}s")
        sub = [c for c in node.all_calls() if c.role == "sub"]
        if sub:
            tokens = sum(c.prompt_tokens + c.completion_tokens for c in sub)
            label.append(f"  llm_query ×{len(sub)} ({tokens:,} tok)", style="blue")
        return label

    def _footer(self, now: float) -> Text:
        tree = self._tree
        usage, counted = tree.outcome.usage if tree.outcome else tree.usage, tree.totals
        limits = usage.limits if usage else Limits()
        calls = max(counted.calls, usage.calls if usage else 0)
        tokens = max(counted.tokens, usage.tokens if usage else 0)
        usd = max(counted.usd, usage.usd if usage else 0.0)
        unpriced = max(counted.usd_unknown, usage.usd_unknown_calls if usage else 0)
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
            live.refresh()  # drawn now, not a refresh period later: the command's first line
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


def _step_text(number: int, step: Step) -> Text:
    text = Text(f"{number}. ", style="bold")
    if step.thought:
        text.append(_clip(step.thought), style="italic")
        text.append("\n   ")
    call = step.tool_name if step.orphan else f"{step.tool_name}({_arguments(step.tool_args)})"
    text.append(_clip(call), style="green")
    for artifact in step.artifacts:
        text.append(f"\n   wrote {artifact.path} ({artifact.size_bytes:,} bytes)", style="cyan")
    if step.result is not None:
        text.append("\n   → " + _clip(step.result), style="red" if step.error else "dim")
    return text


def _iteration_text(cell: Cell) -> Text:
    if cell.phase == "extract":
        text = Text(f"#{cell.iteration} extract: ", style="cyan")
        text.append(_clip(cell.reasoning))
        return text
    text = Text(f"#{cell.iteration} ", style="bold")
    lines = [line for line in cell.code.splitlines() if line.strip()] or ["(no code)"]
    text.append("\n   ".join(_clip(line) for line in lines[:CODE_LINES]), style="green")
    if len(lines) > CODE_LINES:
        text.append(f"  (+{len(lines) - CODE_LINES} lines)", style="dim")
    o = cell.output
    if o is None:
        return text
    output = (o.stdout + o.stderr).strip()
    if output:
        out = output.splitlines()
        text.append("\n   → " + "\n     ".join(_clip(line) for line in out[:OUTPUT_LINES]),
                    style="dim")
        if len(out) > OUTPUT_LINES:
            text.append(f"  (+{len(out) - OUTPUT_LINES} lines)", style="dim")
    if o.error_type:
        error = f"{o.error_type}: {o.error_message or ''}".strip()
        if o.timed_out:
            error += " (timed out)"
        text.append(f"\n   ✗ {_clip(error)}", style="red")
    text.append(f"  [{o.duration_s:.2f}s]", style="dim")
    return text


def _clip(line: str, limit: int = LINE_CHARS) -> str:
    if "\n" in line:
        line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
