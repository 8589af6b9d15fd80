"""Datasets to optimise on and the metrics that score them: built from JSONL files, benchmark
results and feedback; refused, with every bad example named, before any model is called."""

from __future__ import annotations

import json

import pytest

from fleet_rlm.bench import sniah
from fleet_rlm.bench.results import RESULTS, save_context
from fleet_rlm.bench.runner import Outcome, record
from fleet_rlm.config import Settings
from fleet_rlm.optimize.datasets import (
    DatasetError,
    Example,
    enough,
    from_bench_results,
    from_feedback,
    from_jsonl,
)
from fleet_rlm.optimize.metrics import METRICS, metric


def test_a_jsonl_file_becomes_examples_and_a_bad_line_is_named(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in [
        {"question": "q1", "context": "c1", "answer": "a1"},
        {"question": "q2", "answer": "a2"},
        {"question": "q3", "document_ids": ["d1", "d2"], "answer": "a3"}]))
    examples = from_jsonl(good, lambda ids: "|".join(ids))
    assert [(e.question, e.context, e.answer) for e in examples] == [
        ("q1", "c1", "a1"), ("q2", "", "a2"), ("q3", "d1|d2", "a3")]

    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in [
        {"question": "q1", "answer": "a1"}, {"question": "q2"}, {"answer": "a3", "extra": 1}]))
    with pytest.raises(DatasetError) as refused:
        from_jsonl(bad)
    assert refused.value.problems == [
        f"{bad} example 2: answer: Field required",
        f"{bad} example 3: question: Field required; extra: Extra inputs are not permitted"]


def test_too_few_examples_are_refused_with_the_count():
    with pytest.raises(DatasetError, match="has 0 example.*at least 4"):
        enough([], "empty")
    with pytest.raises(DatasetError, match="'small' has 3 example"):
        enough([Example(question="q", answer="a")] * 3, "small")


def test_feedback_keeps_a_thumbs_up_answer_and_a_thumbs_down_correction():
    turns = [{"id": f"t{i}", "user_message": f"q{i}", "answer": f"a{i}"} for i in range(4)]
    examples = from_feedback([
        ({"thumbs_up": True}, turns[0]),
        ({"thumbs_up": False, "corrected_answer": "right", "comment": "off by one"}, turns[1]),
        ({"thumbs_up": False, "comment": "bad"}, turns[2]),  # no correction: teaches nothing
        ({"thumbs_up": True}, turns[3]),
        ({"thumbs_up": False, "comment": "changed my mind"}, turns[3]),  # the latest wins
    ])
    assert [(e.turn_id, e.question, e.answer, e.comment) for e in examples] == [
        ("t0", "q0", "a0", None), ("t1", "q1", "right", "off by one")]


def test_benchmark_results_become_examples_scored_by_the_official_scorer(tmp_path):
    tasks = sniah.generate(n=4, lengths=[2**13], seed=1)[:4]
    lines = []
    for task in tasks:
        save_context(tmp_path, task.context_sha256, task.context)
        lines.append(record(task, "rlm", Settings(), Outcome("x", "ok", {}), 1.0))
    (tmp_path / RESULTS).write_text("\n".join(json.dumps(r) for r in lines))

    benchmark, examples = from_bench_results(tmp_path)
    assert benchmark == sniah.BENCHMARK and len(examples) == 4
    assert examples[0].context == tasks[0].context
    scorer = metric("bench", benchmark)
    gold = tasks[0].gold if isinstance(tasks[0].gold, str) else tasks[0].gold[0]
    assert scorer.score(examples[0], f"The value is {gold}.", benchmark)[0] == \
        sniah.score(tasks[0], f"The value is {gold}.")
    assert scorer.score(examples[0], "no idea", benchmark)[0] == 0.0


def test_metrics_say_what_was_wrong_and_an_unknown_one_is_refused():
    example = Example(question="capital?", answer="Paris", comment="it is the capital of France")
    score, feedback = METRICS["normalised"].score(example, "  paris. ", None)
    assert score == 1.0 and feedback.startswith("Correct")
    score, feedback = METRICS["exact"].score(example, "paris", None)
    assert score == 0.0
    assert "'paris'" in feedback and "'Paris'" in feedback
    assert "it is the capital of France" in feedback
    with pytest.raises(DatasetError, match="unknown metric 'fuzzy'; choose from exact"):
        metric("fuzzy", None)
    with pytest.raises(DatasetError, match="benchmark datasets only"):
        metric("bench", None)
