"""OOLONG trec_coarse: tasks on windows built by the official OOLONG-synth rules, or released rows.

`generate` builds windows and the official questions with `oolong_synth` (Bertsch et al. 2025,
"Oolong: Evaluating Long Context Reasoning and Aggregation Capabilities", arXiv:2511.02817; see
that module for what matches the official generator and what does not). `load_official` reads rows
of the released `oolong-synth` dataset (JSONL, JSON or Parquet) and runs exactly those.

Each task keeps its gold answer in the dataset's stored form (`meta["answer"]`, e.g. `[23]`) with
the dataset's `answer_type`, and is scored by the official OOLONG rule unless the lenient one is
asked for (`oolong_score.py`). `meta["source"]` says where the task came from: `official-data`
(released rows), `official-construction` (our windows, built by the official rules).

Data: `data/trec_coarse_validated.jsonl` is OOLONG-synth's validated trec_coarse split
(abertsch72/oolong, MIT, Copyright (c) 2025 Amanda Bertsch). Its questions come from the TREC
question-classification set (Li & Roth 2002, "Learning Question Classifiers"). Source, checksum and
licence notes are in `data/PROVENANCE.md`; use the data for research, with that attribution.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleet_rlm.bench import oolong_synth
from fleet_rlm.bench.oolong_score import Scorer, answer_type, readable_gold, score_answer
from fleet_rlm.bench.tasks import Task, approx_tokens, read_records

BENCHMARK = "oolong"
LABELS = oolong_synth.LABEL_ORDER
DEFAULT_TOKENS: tuple[int, ...] = (32_768, 131_072)
PER_WINDOW = 25  # the released set keeps 25 questions per window


def family(task_type: str, kind: str) -> str:
    """A question type for breakdowns: the task and answer type, e.g. `most_freq/user`."""
    return f"{task_type.rsplit('.', 1)[-1]}/{kind.rsplit('.', 1)[-1]}".lower()


def window_tasks(window: oolong_synth.SynthWindow,
                 per_window: int | None = PER_WINDOW) -> list[Task]:
    """Up to `per_window` of the window's official questions, taken round-robin over question
    types (in a fixed shuffle) so a small run still covers every type."""
    found = oolong_synth.questions(window)
    rng = random.Random(f"{window.id}:pick")
    pools: dict[str, list[Any]] = {}
    for q in found:
        pools.setdefault(family(q.task, q.answer_type), []).append(q)
    order = rng.sample(sorted(pools), len(pools))
    limit = len(found) if per_window is None else per_window
    picked: list[Any] = []
    while len(picked) < limit and any(pools.values()):
        picked += [pools[f].pop(0) for f in order if pools[f]][: limit - len(picked)]
    base = {"window_id": window.id, "target_tokens": window.context_len,
            "context_chars": len(window.text), "approx_tokens": approx_tokens(window.text),
            "n_instances": len(window.rows), "temperature": window.temperature,
            "source": "official-construction"}
    return [Task(id=f"{window.id}-q{i:02d}", benchmark=BENCHMARK, context=window.text,
                 question=q.question, gold=readable_gold(str(q.answer)),
                 meta={**base, "family": family(q.task, q.answer_type),
                       "task_group": q.task_group, "task": q.task, "answer": str(q.answer),
                       "answer_type": q.answer_type, "input_subset": q.input_subset})
            for i, q in enumerate(picked)]


def generate(n: int = 1, seed: int = 0, lengths: Sequence[int] = DEFAULT_TOKENS,
             per_window: int | None = PER_WINDOW) -> list[Task]:
    """`n` windows per context length (tokens), each with up to `per_window` questions."""
    return [task for tokens in lengths for i in range(n)
            for task in window_tasks(oolong_synth.build(tokens, seed, i), per_window)]


def score(task: Task, answer: str, scorer: Scorer = "official") -> float:
    """`answer` scored against the task's stored gold by the official rule or the lenient one."""
    return score_answer(answer, task.meta["answer"], task.meta["answer_type"], scorer)


def load_official(
    path: str | Path, dataset: str | None = "trec_coarse", context_len: int | None = None
) -> list[Task]:
    """Tasks from a local OOLONG-synth file (JSONL, JSON or parquet). Never downloads."""
    tasks = []
    for row in read_records(Path(path)):
        if dataset is not None and row.get("dataset") != dataset:
            continue
        if context_len is not None and int(row.get("context_len", -1)) != context_len:
            continue
        text, kind = row["context_window_text"], answer_type(str(row["answer_type"]))
        tasks.append(Task(
            id=str(row["id"]), benchmark=BENCHMARK, context=text, question=row["question"],
            gold=readable_gold(str(row["answer"])),
            meta={"answer": str(row["answer"]), "answer_type": kind,
                  "family": family(str(row.get("task", "")), kind),
                  "task_group": row.get("task_group"), "task": row.get("task"),
                  "window_id": str(row.get("context_window_id", "")),
                  "target_tokens": row.get("context_len"), "dataset": row.get("dataset"),
                  "context_chars": len(text), "approx_tokens": approx_tokens(text),
                  "source": "official-data"},
        ))
    return tasks
