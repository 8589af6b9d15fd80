"""Datasets to optimise on, from what users already produce: feedback on turns, JSONL files and
benchmark results directories. Each example is `question`, `context` (text, possibly empty),
`answer` (the gold), and for feedback the person's `comment`; benchmark examples keep what the
benchmark's scorer needs (`meta`: OOLONG's answer as it stores it and its answer type)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

MIN_EXAMPLES = 4  # a train and a validation split of two each, at least


class DatasetError(ValueError):
    """A dataset that cannot be built or optimised on; `problems` names each bad example."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__("\n".join([message, *self.problems[:10]]))


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    context: str = ""
    answer: str | list[str]
    comment: str | None = None
    turn_id: str | None = None
    task_id: str | None = None
    meta: dict[str, Any] = {}  # what the benchmark's scorer reads (OOLONG: answer, answer_type)


def checked(rows: Iterable[Mapping[str, Any]], where: Callable[[int], str]) -> list[Example]:
    """Rows as examples; DatasetError naming every row that lacks a field or has a bad one."""
    examples, problems = [], []
    for number, row in enumerate(rows, 1):
        try:
            example = Example.model_validate(row)
        except ValidationError as exc:
            fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}"
                               for e in exc.errors())
            problems.append(f"{where(number)}: {fields}")
            continue
        if not example.question.strip() or not example.answer:
            problems.append(f"{where(number)}: empty question or answer")
            continue
        examples.append(example)
    if problems:
        raise DatasetError(f"{len(problems)} example(s) lack what the program needs "
                           "(question and answer; context optional):", problems)
    return examples


def enough(examples: list[Example], name: str, minimum: int = MIN_EXAMPLES) -> list[Example]:
    if len(examples) < minimum:
        raise DatasetError(f"dataset {name!r} has {len(examples)} example(s); optimising needs "
                           f"at least {minimum} (half to learn from, half to validate on)")
    return examples


def from_jsonl(path: Path, documents: Callable[[list[str]], str] | None = None
               ) -> list[Example]:
    """Lines of {question, context | document_ids, answer}; `documents` reads the named
    documents' text (document ids are a store's, so the caller resolves them)."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}: not a JSON object")
        ids = row.pop("document_ids", None)
        if ids is not None:
            if documents is None or not isinstance(ids, list):
                raise DatasetError(f"{path}:{number}: document_ids must be a list of ids of "
                                   "documents in the store")
            row["context"] = documents([str(i) for i in ids])
        rows.append(row)
    return checked(rows, lambda n: f"{path} example {n}")


def from_bench_results(out: Path) -> tuple[str, list[Example]]:
    """A results directory's tasks (question, context, gold) as examples, with the benchmark
    they come from (one per dataset: its official scorer scores them)."""
    from ..bench.results import load_context, load_results

    records = [r for r in load_results(out) if r.get("gold") is not None]
    if not records:
        raise DatasetError(f"{out} holds no benchmark results (results.jsonl with gold answers)")
    benchmarks = sorted({str(r.get("benchmark")) for r in records})
    if len(benchmarks) != 1:
        raise DatasetError(f"{out} mixes benchmarks ({', '.join(benchmarks)}): one per dataset")
    seen: dict[str, dict[str, Any]] = {}
    for r in records:
        if "question" not in r or "context_sha256" not in r:
            raise DatasetError(f"{out}: result {r.get('task_id')} has no question and context "
                               "(written before results kept them): run the benchmark again")
        seen[str(r["task_id"])] = {
            "question": r["question"], "context": load_context(out, r["context_sha256"]),
            "answer": r["gold"], "meta": r.get("score_meta") or {}, "task_id": str(r["task_id"])}
    return benchmarks[0], checked(seen.values(), lambda n: f"{out} task {n}")


def from_feedback(pairs: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]]
                  ) -> list[Example]:
    """(feedback, turn) pairs as examples: a thumbs-down with a corrected answer becomes that
    answer, a thumbs-up keeps the turn's own; a thumbs-down without a correction teaches no
    answer and is left out. The latest feedback on a turn wins."""
    latest: dict[str, dict[str, Any]] = {}
    for feedback, turn in pairs:
        answer = (turn.get("answer") if feedback["thumbs_up"]
                  else feedback.get("corrected_answer"))
        if not answer:
            latest.pop(turn["id"], None)
            continue
        latest[turn["id"]] = {"question": turn["user_message"], "context": "",
                              "answer": answer, "comment": feedback.get("comment"),
                              "turn_id": turn["id"]}
    return checked(latest.values(), lambda n: f"feedback example {n}")
