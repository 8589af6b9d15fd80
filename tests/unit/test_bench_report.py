"""What a benchmark report says about how its scores were made."""

from __future__ import annotations

from fleet_rlm.bench import report


def _rec(task: str, scorer: str, score: float = 0.5) -> dict:
    return {"task_id": task, "benchmark": "oolong", "mode": "rlm", "family": "label_count",
            "length": 131_072, "score": score, "scorer": scorer, "status": "ok", "usd": 0.1,
            "calls": 3, "seconds": 2.0, "model": "openai/gpt-5", "sub_model": None}


def test_a_lenient_run_is_labelled_and_shows_no_published_figure() -> None:
    text = report.render([_rec("a", "lenient"), _rec("b", "lenient")])
    assert "**Scorer: lenient**" in text
    assert "0.565" not in text


def test_an_official_run_is_not_labelled_lenient() -> None:
    text = report.render([_rec("a", "official")])
    assert "lenient" not in text
