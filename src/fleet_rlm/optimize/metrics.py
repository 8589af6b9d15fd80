"""Metrics by name: a score in [0, 1] and a judge-free feedback text GEPA's reflection reads.

`exact` and `normalised` compare the answer with the gold (a corrected answer, a kept one, a
JSONL answer) and say what differed, with the person's comment when the example has one; a
benchmark dataset is scored by its benchmark's official scorer (`bench`). Another metric is a
`Metric` record added to `METRICS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dspy

from .datasets import DatasetError, Example

Scored = tuple[float, str]


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    score: Callable[[Example, str, str | None], Scored]  # (example, answer, benchmark)
    benchmark_only: bool = False


def _golds(example: Example) -> list[str]:
    return example.answer if isinstance(example.answer, list) else [example.answer]


def _compare(example: Example, answer: str, same: Callable[[str, str], bool], how: str
             ) -> Scored:
    if any(same(answer, gold) for gold in _golds(example)):
        return 1.0, f"Correct: the answer matches the expected one ({how})."
    feedback = (f"Wrong: the answer was {answer.strip()[:500]!r}; the expected answer is "
                f"{' or '.join(repr(g[:500]) for g in _golds(example))} ({how}).")
    if example.comment:
        feedback += f" The person who corrected it said: {example.comment[:1000]}"
    return 0.0, feedback


def _exact(example: Example, answer: str, benchmark: str | None) -> Scored:
    return _compare(example, answer, lambda a, g: a.strip() == g.strip(), "exact match")


def _normalised(example: Example, answer: str, benchmark: str | None) -> Scored:
    from ..bench.tasks import normalize  # the bench package needs the `bench` extra's numpy

    return _compare(example, answer, lambda a, g: normalize(a) == normalize(g),
                    "match ignoring case, spacing and surrounding punctuation")


def _bench(example: Example, answer: str, benchmark: str | None) -> Scored:
    if benchmark is None:
        raise DatasetError("the bench metric scores benchmark datasets only")
    from ..bench import Task
    from ..bench import score as bench_score

    task = Task(id=example.task_id or "task", benchmark=benchmark, context="",
                question=example.question, gold=example.answer, meta=example.meta)
    value = bench_score(task, answer)
    gold = example.meta.get("answer", example.answer)
    verdict = "Correct" if value >= 1.0 else "Partly correct" if value > 0 else "Wrong"
    return value, (f"{verdict} by {benchmark}'s official scorer (score {value:.2f}): the answer "
                   f"was {answer.strip()[:500]!r}; the expected answer is {str(gold)[:500]!r}.")


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("exact", "the answer equals the gold, spaces at the ends aside", _exact),
    Metric("normalised", "the answer equals the gold ignoring case, spacing and punctuation "
                         "at the ends", _normalised),
    Metric("bench", "the benchmark's official scorer", _bench, benchmark_only=True),
)}


def metric(name: str, benchmark: str | None) -> Metric:
    """The metric named, refused when unknown or when it does not fit the dataset."""
    if name not in METRICS:
        raise DatasetError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    chosen = METRICS[name]
    if chosen.benchmark_only and benchmark is None:
        raise DatasetError(f"metric {name!r} scores benchmark datasets only")
    return chosen


def default_metric(benchmark: str | None) -> str:
    return "bench" if benchmark else "normalised"


def answer_text(prediction: Any) -> str:
    value = getattr(prediction, "answer", None)
    return "" if value is None else str(value)


def gepa_metric(chosen: Metric, benchmark: str | None) -> Callable[..., dspy.Prediction]:
    """The metric as dspy.GEPA calls it: (gold, pred, trace, pred_name, pred_trace)."""

    def measure(gold: dspy.Example, pred: dspy.Prediction, trace: Any = None,
                pred_name: str | None = None, pred_trace: Any = None) -> dspy.Prediction:
        example = Example.model_validate(gold.toDict()["record"])
        status = getattr(pred, "status", "done")
        if status not in ("done", "ok", "extract"):
            return dspy.Prediction(score=0.0, feedback=f"The run ended {status}: "
                                   f"{getattr(pred, 'error', None) or 'no answer'}.")
        value, feedback = chosen.score(example, answer_text(pred), benchmark)
        return dspy.Prediction(score=value, feedback=feedback)

    return measure
