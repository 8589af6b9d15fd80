"""One optimisation run: dspy.GEPA over the agent or the engine on a dataset's train split,
scored on its validation split, every model call (the program's and the reflection model's)
metered by one Budget. A limit reached stops the run cleanly with the best program so far."""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dspy

from ..budget import Budget, BudgetExceeded, Cancelled, Limits
from ..config import Settings
from ..engine.programs import instructions_of, release_of
from ..engine.rlm import Run
from ..events import EventStream, NodeRef
from ..lm import build_reflection_lm
from .datasets import Example, enough
from .metrics import gepa_metric, metric
from .targets import target_kind

Auto = Literal["light", "medium", "heavy"]
DEFAULT_MAX_CALLS = 2000


class NothingValidated(RuntimeError):
    """The run stopped before the baseline was scored on the validation split: no version."""

    def __init__(self, reason: str, calls: int) -> None:
        self.reason, self.calls = reason, calls
        super().__init__(f"the run stopped before the baseline was validated ({reason}, after "
                         f"{calls} model calls): no version saved; raise the limit")


@dataclass
class Progress:
    """What the run reports as it goes: each full validation of a candidate."""

    metric_calls: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)  # {iteration, candidate, score}


@dataclass
class Outcome:
    target: str
    dataset: str
    metric: str
    release: str
    baseline: dict[str, str]
    instructions: dict[str, str]
    score_before: float
    score_after: float
    stopped: str | None
    detail: dict[str, Any]


class _Tracker:
    """GEPA's callbacks: the best fully validated candidate while the budget held, the score
    curve, and the stop flag (the budget's token, cancelled at a limit)."""

    def __init__(self, budget: Budget, on_progress: Callable[[Progress], None] | None) -> None:
        self.budget, self.on_progress = budget, on_progress
        self.progress = Progress()
        self.seed: float | None = None
        self.best: tuple[float, dict[str, str]] | None = None
        self.resumed = False

    def __call__(self, state: Any) -> bool:  # a GEPA stop condition
        """Stop once a limit was reached, or no further call would fit (GEPA keeps going
        after a reflection call fails, the budget's refusal included)."""
        if not self.resumed:  # candidates validated by an earlier run in the same log dir
            self.resumed = True
            for index, candidate in enumerate(state.program_candidates):
                score = float(state.get_program_average_val_subset(index)[0])
                if self.best is None or score > self.best[0]:
                    self.best = (score, dict(candidate))
        if not self.budget.cancel.cancelled:
            try:
                self.budget.ensure_open()
            except BudgetExceeded as exc:
                self.budget.cancel.cancel(str(exc), exc)
        return self.budget.cancel.cancelled

    def on_valset_evaluated(self, event: Mapping[str, Any]) -> None:
        if self.budget.cancel.cancelled:  # scored with calls the budget refused: not a score
            return
        score = float(event["average_score"])
        if event["candidate_idx"] == 0 and self.seed is None:
            self.seed = score
        if self.best is None or score > self.best[0]:
            self.best = (score, dict(event["candidate"]))
        self.progress.curve.append({"iteration": event["iteration"],
                                    "candidate": event["candidate_idx"], "score": score})
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def on_budget_updated(self, event: Mapping[str, Any]) -> None:
        self.progress.metric_calls = int(event["metric_calls_used"])
        if self.on_progress is not None:
            self.on_progress(self.progress)


def split(examples: list[Example], seed: int = 0) -> tuple[list[Example], list[Example]]:
    """Half to learn from, half to validate on, in a fixed shuffled order."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    half = len(shuffled) // 2
    return shuffled[:half], shuffled[half:]


def as_dspy(examples: list[Example]) -> list[dspy.Example]:
    return [dspy.Example(question=e.question, context=e.context,
                         record=e.model_dump()).with_inputs("question", "context")
            for e in examples]


def prompt_diff(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """A unified diff of each predictor's instructions, baseline to optimised."""
    parts: list[str] = []
    for name in sorted(set(before) | set(after)):
        parts.extend(difflib.unified_diff(
            before.get(name, "").splitlines(), after.get(name, "").splitlines(),
            fromfile=f"{name} (before)", tofile=f"{name} (after)", lineterm=""))
    return "\n".join(parts)


def optimise(settings: Settings, target: str, dataset: str, examples: list[Example], *,
             benchmark: str | None = None, metric_name: str, auto: Auto | None = "light",
             max_metric_calls: int | None = None, reflection_model: str | None = None,
             max_usd: float | None = None, max_calls: int | None = None,
             log_dir: Path | None = None, seed: int = 0,
             on_progress: Callable[[Progress], None] | None = None) -> Outcome:
    """Run GEPA; refuses a bad target, metric or dataset before any model call. With
    `log_dir`, GEPA keeps its state there, so a run stopped there resumes."""
    kind = target_kind(target)
    chosen = metric(metric_name, benchmark)
    enough(examples, dataset)
    train, val = split(examples, seed)
    limits = Limits(max_calls=max_calls or DEFAULT_MAX_CALLS,
                    max_usd=max_usd if max_usd is not None else settings.max_usd,
                    max_depth=settings.max_depth)
    budget = Budget(limits, settings.prices, allow_unpriced=settings.allow_unpriced_models)
    stream = EventStream("optimise")
    run = Run.create(settings, NodeRef.root(), budget, stream)
    reflection = build_reflection_lm(settings, budget, reflection_model, stream)
    budget.require_price(reflection.model)
    student = kind.student(run)
    baseline = instructions_of(student)
    tracker = _Tracker(budget, on_progress)
    gepa = dspy.GEPA(
        metric=gepa_metric(chosen, benchmark), auto=None if max_metric_calls else auto,
        max_metric_calls=max_metric_calls, reflection_lm=reflection, num_threads=1,
        reflection_minibatch_size=min(3, len(train)), use_merge=False, seed=seed,
        log_dir=None if log_dir is None else str(log_dir),
        gepa_kwargs={"callbacks": [tracker], "stop_callbacks": [tracker]})
    stopped: str | None = None
    try:
        gepa.compile(student, trainset=as_dspy(train), valset=as_dspy(val))
    except (BudgetExceeded, Cancelled) as exc:
        stopped = str(exc)
    if budget.cancel.cancelled and stopped is None:
        stopped = budget.cancel.reason
    if tracker.seed is None or tracker.best is None:
        raise NothingValidated(stopped or "the run ended", budget.snapshot().calls)
    best_score, best = tracker.best
    instructions = {name: best.get(name, text) for name, text in baseline.items()}
    usage = budget.snapshot().model_dump(mode="json")
    return Outcome(
        target=target, dataset=dataset, metric=chosen.name, release=release_of(student),
        baseline=baseline, instructions=instructions, score_before=tracker.seed,
        score_after=best_score, stopped=stopped,
        detail={"train": len(train), "validation": len(val), "usage": usage,
                "curve": tracker.progress.curve, "auto": auto,
                "max_metric_calls": max_metric_calls, "reflection_model": reflection.model,
                "prompt_diff": prompt_diff(baseline, instructions)})
