"""Run a benchmark: tasks through one mode, in parallel, appended to OUT/results.jsonl, resumable.

Modes: `rlm` (RecursiveRLM over the context), `direct` (one plain call with the whole context,
the paper's base-model baseline), `agent` (a chat turn with the context as a document) and
`code-only` (a program with no model; see `baseline.py`). Every mode meters its calls through
the same budgeted LMs, so costs and tokens compare.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet_rlm.bench import OOLONG_SCORERS, Scorer, oolong, pairs, score, sniah
from fleet_rlm.bench.results import RESULTS, load_results, save_context
from fleet_rlm.bench.tasks import CHARS_PER_TOKEN, Task
from fleet_rlm.budget import Budget, BudgetExceeded, Cancelled, CancelToken
from fleet_rlm.config import Settings

if TYPE_CHECKING:
    from rich.console import Console

BENCHMARKS = {"sniah": sniah, "oolong": oolong, "oolong-pairs": pairs}
MODES = ("rlm", "direct", "agent", "code-only")
# Context lengths are in tokens for every benchmark (S-NIAH's generator counts characters).
DEFAULT_LENGTHS = {"sniah": tuple(c // CHARS_PER_TOKEN for c in sniah.DEFAULT_LENGTHS),
                   "oolong": oolong.DEFAULT_TOKENS, "oolong-pairs": pairs.DEFAULT_TOKENS}
_PER_WINDOW = {"oolong": 25, "oolong-pairs": len(pairs.QUERIES)}


def make_tasks(benchmark: str, n: int, seed: int = 0,
               lengths: Sequence[int] | None = None) -> list[Task]:
    """`n` tasks spread evenly over `lengths` (tokens) and, within a length, over windows and
    question families. Deterministic: the same arguments give the same tasks and ids."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    lengths = list(lengths or DEFAULT_LENGTHS[benchmark])
    tasks: list[Task] = []
    for i, length in enumerate(lengths):
        quota = n // len(lengths) + (i < n % len(lengths))
        if quota:
            tasks += _interleave(_generate(benchmark, quota, seed, length))[:quota]
    return tasks


def _generate(benchmark: str, quota: int, seed: int, tokens: int) -> list[list[Task]]:
    """Enough tasks of one length, grouped by window (or S-NIAH grid repeat), each group in the
    order its questions should be taken."""
    if benchmark == "sniah":
        return [sniah.spread(quota, seed, tokens * CHARS_PER_TOKEN)]
    module = BENCHMARKS[benchmark]
    windows = math.ceil(quota / _PER_WINDOW[benchmark])
    grouped: dict[str, list[Task]] = {}
    for task in module.generate(windows, seed, [tokens]):
        grouped.setdefault(task.meta["window_id"], []).append(task)
    return list(grouped.values())


def _interleave(groups: list[list[Task]]) -> list[Task]:
    return [g[k] for k in range(max(map(len, groups), default=0)) for g in groups if k < len(g)]


def load_data(benchmark: str, path: Path, lengths: Sequence[int] | None = None) -> list[Task]:
    """Every trec_coarse row of a released OOLONG-synth file (at `lengths`, if given)."""
    if benchmark != "oolong":
        raise ValueError(f"--data loads OOLONG-synth rows; {benchmark} has no released data")
    if not path.exists():
        raise ValueError(f"--data {path}: no such file")
    tasks = [t for t in oolong.load_official(path)
             if lengths is None or t.meta["target_tokens"] in lengths]
    if not tasks:
        raise ValueError(f"--data {path}: no trec_coarse rows"
                         + (f" at lengths {list(lengths)}" if lengths else ""))
    return tasks


def target_tokens(task: Task) -> int:
    if "target_tokens" in task.meta:
        return int(task.meta["target_tokens"])
    return int(task.meta["target_chars"]) // CHARS_PER_TOKEN


def export_tasks(tasks: Iterable[Task], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as f:
        for task in tasks:
            f.write(json.dumps({"id": task.id, "benchmark": task.benchmark,
                                "context": task.context, "question": task.question,
                                "gold": task.gold, "meta": task.meta}, ensure_ascii=False))
            f.write("\n")
            count += 1
    return count


# -- one task ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    answer: str | None
    status: str  # ok | extract | budget | cancelled | error
    usage: dict[str, Any] = field(default_factory=dict)
    turn_id: str | None = None
    node_id: str | None = None
    error: str | None = None


def _usage(snapshot: Any) -> dict[str, Any]:
    if snapshot is None:
        return {}
    keys = ("calls", "prompt_tokens", "completion_tokens", "tokens", "usd", "usd_unknown_calls")
    return {k: getattr(snapshot, k) for k in keys}


def _as_text(answer: Any) -> str | None:
    if answer is None or isinstance(answer, str):
        return answer
    return json.dumps(answer, ensure_ascii=False)


def run_rlm(task: Task, settings: Settings, cancel: CancelToken) -> Outcome:
    from fleet_rlm.engine.rlm import RecursiveRLM

    rlm = RecursiveRLM("context, question -> answer", settings=settings,  # the baseline engine:
                       budget=Budget.from_settings(settings, cancel=cancel), program=None)
    result = rlm(context=task.context, question=task.question)
    root = next((e for e in result.events if e.type == "rlm_started"), None)
    return Outcome(_as_text(result.answer), result.status, _usage(result.usage),
                   root.turn_id if root else None, root.node_id if root else None,
                   result.error)


def run_direct(task: Task, settings: Settings, cancel: CancelToken) -> Outcome:
    from fleet_rlm.events import EventStream
    from fleet_rlm.lm import build_lms

    budget = Budget.from_settings(settings, cancel=cancel)
    stream = EventStream(turn_id=uuid.uuid4().hex[:12])
    lm, _ = build_lms(settings, budget, stream)
    outcome = Outcome(None, "ok", turn_id=stream.turn_id, node_id=lm.default_site.node.node_id)
    try:
        outputs = lm(task.prompt)
        first = outputs[0] if outputs else ""
        outcome.answer = str(first.get("text", "") if isinstance(first, dict) else first)
    except BudgetExceeded as exc:
        outcome.status, outcome.error = "budget", str(exc)
    except Cancelled as exc:
        outcome.status, outcome.error = "cancelled", str(exc)
    except Exception as exc:  # noqa: BLE001 - a provider error (e.g. context too long) is a result
        outcome.status, outcome.error = "error", f"{type(exc).__name__}: {exc}"[:2000]
    outcome.usage = _usage(budget.snapshot())
    return outcome


def run_agent(task: Task, settings: Settings, cancel: CancelToken) -> Outcome:
    from fleet_rlm.engine.agent import InMemorySession
    from fleet_rlm.engine.turn import Turn
    from fleet_rlm.events import EventStream

    session = InMemorySession(settings)
    session.add_document("context", task.context)
    stream = EventStream(turn_id=uuid.uuid4().hex[:12])
    try:
        result = Turn(settings, session=session, stream=stream, message=task.question,
                      cancel=cancel).run()
    finally:
        session.close()
    node = stream.events[0].node_id if stream.events else None
    return Outcome(result.answer, result.status, _usage(result.usage), stream.turn_id, node,
                   result.error or (result.question and f"asked the user: {result.question}"))


def run_code_only(task: Task, settings: Settings, cancel: CancelToken) -> Outcome:
    from fleet_rlm.bench import baseline

    return Outcome(baseline.answer(task), "ok", _usage(None))


RUNNERS: dict[str, Callable[[Task, Settings, CancelToken], Outcome]] = {
    "rlm": run_rlm, "direct": run_direct, "agent": run_agent, "code-only": run_code_only}


SCORE_META = ("answer", "answer_type")  # what a scorer reads from a task's meta


def record(task: Task, mode: str, settings: Settings, outcome: Outcome,
           seconds: float, scorer: Scorer = "official") -> dict[str, Any]:
    """One line of results.jsonl."""
    usage = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0, "usd": 0.0,
             "usd_unknown_calls": 0, **outcome.usage}
    uses_model = mode != "code-only"
    return {
        "task_id": task.id, "benchmark": task.benchmark, "mode": mode,
        "family": task.meta.get("family"), "length": target_tokens(task),
        "score": score(task, outcome.answer or "", scorer), "scorer": scorer,
        "source": task.meta.get("source"), "answer_type": task.meta.get("answer_type"),
        "status": outcome.status, **usage,
        "seconds": round(seconds, 3), "turn_id": outcome.turn_id, "node_id": outcome.node_id,
        "model": settings.root_model if uses_model else None,
        "sub_model": settings.effective_sub_model if uses_model else None,
        "answer": outcome.answer, "gold": task.gold, "error": outcome.error, "ts": time.time(),
        "question": task.question, "context_sha256": task.context_sha256,
        "score_meta": {k: v for k, v in task.meta.items() if k in SCORE_META},
    }


# -- a whole run ---------------------------------------------------------------------------------
@dataclass
class RunSummary:
    done: int = 0
    skipped: int = 0
    spent_usd: float = 0.0
    stopped: str | None = None  # why tasks were left unrun: "max_usd" or "interrupted"
    scores: list[float] = field(default_factory=list)


class BenchRun:
    """Runs `tasks` in `mode` with up to `concurrency` at a time. `cancel()` (from any thread)
    stops the tasks in flight; they are not recorded, so a later run picks them up again."""

    def __init__(self, tasks: Sequence[Task], mode: str, settings: Settings, out: Path, *,
                 concurrency: int = 1, max_usd: float | None = None,
                 retry_errors: bool = False, scorer: Scorer = "official",
                 on_done: Callable[[dict[str, Any], RunSummary], None] | None = None) -> None:
        if mode not in RUNNERS:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        self.mode, self.settings, self.out, self.scorer = mode, settings, out, scorer
        self.concurrency, self.max_usd = max(1, concurrency), max_usd
        self.on_done = on_done or (lambda rec, summary: None)
        previous = load_results(out)
        path = out / RESULTS
        if path.exists() and not path.read_bytes().endswith(b"\n") and path.stat().st_size:
            with path.open("a", encoding="utf-8") as f:
                f.write("\n")  # so the next record does not extend a torn line
        redo = {"error"} if retry_errors else set()
        done = {r["task_id"] for r in previous if r["mode"] == mode and r["status"] not in redo}
        self.pending = [t for t in tasks if t.id not in done]
        self.summary = RunSummary(skipped=len(tasks) - len(self.pending),
                                  spent_usd=sum(r.get("usd") or 0.0 for r in previous))
        self._lock = threading.Lock()
        self._tokens: dict[Future, CancelToken] = {}
        self._interrupted = False

    def cancel(self) -> None:
        self._interrupted = True
        self.summary.stopped = "interrupted"  # also when no task was left to start
        for token in list(self._tokens.values()):
            token.cancel("benchmark interrupted")

    def _over_budget(self) -> bool:
        return self.max_usd is not None and self.summary.spent_usd >= self.max_usd

    def _one(self, task: Task, token: CancelToken) -> dict[str, Any] | None:
        started = time.perf_counter()
        outcome = RUNNERS[self.mode](task, self.settings, token)
        if outcome.status == "cancelled" and self._interrupted:
            return None
        rec = record(task, self.mode, self.settings, outcome, time.perf_counter() - started,
                     self.scorer)
        with self._lock:
            self.out.mkdir(parents=True, exist_ok=True)
            save_context(self.out, task.context_sha256, task.context)
            with (self.out / RESULTS).open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            self.summary.done += 1
            self.summary.spent_usd += rec["usd"]
            self.summary.scores.append(rec["score"])
        self.on_done(rec, self.summary)
        return rec

    def run(self) -> RunSummary:
        """Run every pending task. A first Ctrl-C stops the run cleanly (tasks in flight are
        cancelled and left for the next run); a second one propagates. The SIGINT handler is
        installed here, in the main thread, so a run started with SIGINT ignored (a background
        job of a script) is interruptible too."""
        queue = list(reversed(self.pending))
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="bench") as pool:
                while queue or self._tokens:
                    try:
                        self._step(pool, queue)
                    except KeyboardInterrupt:
                        if self._interrupted:
                            raise
                        self.cancel()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        return self.summary

    def _on_sigint(self, signum: int, frame: object) -> None:
        if self._interrupted:  # a second Ctrl-C: stop waiting for the tasks in flight
            raise KeyboardInterrupt
        self.cancel()

    def _step(self, pool: ThreadPoolExecutor, queue: list[Task]) -> None:
        while queue and len(self._tokens) < self.concurrency and not self._interrupted:
            if self._over_budget():
                self.summary.stopped = "max_usd"
                queue.clear()
                break
            token = CancelToken()
            future = pool.submit(self._one, queue.pop(), token)
            self._tokens[future] = token
        if self._interrupted:
            self.summary.stopped = "interrupted"
            queue.clear()
        finished, _ = wait(list(self._tokens), timeout=0.2, return_when=FIRST_COMPLETED)
        for future in finished:
            del self._tokens[future]
            future.result()  # a bug in the runner itself is not a task outcome


# -- the command line ----------------------------------------------------------------------------
def unpriced_models(settings: Settings) -> list[str]:
    """The run's models that have no price. Raises UnpricedModel for the first one unless the
    settings allow unpriced models: every task's budget would refuse it."""
    budget = Budget.from_settings(settings)
    models = dict.fromkeys([settings.root_model, settings.effective_sub_model])
    for model in models:
        budget.require_price(model)
    return [m for m in models if budget.price(m) is None]


def parse_lengths(values: Sequence[str] | None) -> list[int] | None:
    """Token counts, comma-separated or repeated; a k suffix multiplies by 1024 (32k = 32768)."""
    if not values:
        return None
    try:
        return [int(v[:-1]) * 1024 if v.lower().endswith("k") else int(v)
                for value in values for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--lengths takes token counts like 8192,32k; got {values}") from None


def run_cli(benchmark: str, console: Console, err: Console, *, mode: str, n: int, seed: int,
            lengths: Sequence[str] | None, out: Path, export: Path | None,
            max_usd: float | None, concurrency: int, retry_errors: bool,
            overrides: dict[str, Any], scorer: Scorer = "official",
            data: Path | None = None, dry_run: bool = False) -> int:
    """`fleet bench BENCHMARK`. Returns the exit status: 0 done, 1 misuse, 2 stopped by
    --max-usd, 130 interrupted (the caller should exit at once)."""
    from pydantic import ValidationError
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from fleet_rlm.bench import baseline, report
    from fleet_rlm.config import get_settings, invalid_settings

    try:
        if mode not in MODES:
            raise ValueError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
        if scorer not in OOLONG_SCORERS:
            raise ValueError(f"--scorer must be one of {', '.join(OOLONG_SCORERS)}, not {scorer!r}")
        if scorer != "official" and benchmark != "oolong":
            raise ValueError(f"--scorer {scorer} applies to oolong only; {benchmark} has one rule")
        tasks = (load_data(benchmark, data, parse_lengths(lengths)) if data is not None
                 else make_tasks(benchmark, n, seed, parse_lengths(lengths)))
        if mode == "code-only" and tasks and tasks[0].benchmark not in baseline.BENCHMARKS:
            raise ValueError(f"no code-only baseline for {benchmark}")
        settings = get_settings(**overrides)
        # A dry run names unpriced models in its projection; an export calls no model.
        spends = mode != "code-only" and not dry_run and export is None
        unpriced = unpriced_models(settings) if spends else []
        if unpriced and max_usd is not None:
            err.print(f"[yellow]warning:[/yellow] --max-usd cannot stop this run: no price "
                      f"for {', '.join(unpriced)} (set FLEET_PRICES)")
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {escape(invalid_settings(exc))}", soft_wrap=True)
        return 1
    except ValueError as exc:  # UnpricedModel too
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    if export is not None:
        console.print(f"wrote {export_tasks(tasks, export)} tasks to {export}")
        return 0
    if dry_run:
        from fleet_rlm.bench import projection

        lines = projection.render(projection.project(tasks, mode, settings), benchmark, mode,
                                  settings)
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
        return 0
    run = BenchRun(tasks, mode, settings, out, concurrency=concurrency, max_usd=max_usd,
                   retry_errors=retry_errors, scorer=scorer)
    if run.summary.skipped:
        err.print(f"resuming: {run.summary.skipped} of {len(tasks)} tasks already in {out}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), console=err) as progress:
        bar = progress.add_task(f"{benchmark} {mode}", total=len(run.pending), status="")

        def on_done(rec: dict[str, Any], summary: RunSummary) -> None:
            score = sum(summary.scores) / len(summary.scores)
            progress.update(bar, advance=1, status=f"score {score:.2f}  ${summary.spent_usd:.4f}")

        run.on_done = on_done
        summary = run.run()
    console.print(f"{report.write_report(out)}: {report.summary_line(load_results(out))}")
    if summary.stopped == "max_usd":
        err.print(f"[magenta]stopped:[/magenta] --max-usd {max_usd:g} reached "
                  f"(${summary.spent_usd:.4f} spent); raise it and run again to go on")
        return 2
    if summary.stopped == "interrupted":
        err.print("[yellow]interrupted: run the same command again to resume[/yellow]")
        return 130
    return 0
