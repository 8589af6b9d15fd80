"""What a benchmark report says about how its scores were made."""

from __future__ import annotations

import time

from fleet_rlm.bench import report

REFERENCE = "## Reference (different model, same benchmark definition)"


def _rec(task: str, scorer: str = "official", source: str = "official-construction",
         score: float = 0.5, benchmark: str = "oolong", length: int = 131_072,
         family: str = "numeric_one_class/numeric") -> dict:
    return {"task_id": task, "benchmark": benchmark, "mode": "rlm", "family": family,
            "length": length, "score": score, "scorer": scorer, "source": source,
            "status": "ok", "usd": 0.1, "calls": 3, "seconds": 2.0, "model": "openai/gpt-5",
            "sub_model": "openai/gpt-5-mini", "ts": time.time()}


def test_a_lenient_run_is_labelled_and_shows_no_published_figure() -> None:
    text = report.render([_rec("a", "lenient"), _rec("b", "lenient")])
    assert "**Scorer: lenient**" in text
    assert REFERENCE not in text and "0.565" not in text
    assert "(lenient scorer)" in report.summary_line([_rec("a", "lenient")])
    assert "lenient" not in report.summary_line([_rec("a")])


def test_an_official_run_on_official_windows_gets_a_labelled_reference_section() -> None:
    text = report.render([_rec("a"), _rec("b", score=1.0)])
    assert "lenient" not in text
    reference = text[text.index(REFERENCE):]
    assert "| oolong | rlm | 131072 | 0.750 | 0.565 · $0.43 |" in reference
    assert "0.565" not in text[:text.index(REFERENCE)]  # never beside the run's own tables


def test_other_data_or_one_unofficial_record_keeps_the_paper_out() -> None:
    assert REFERENCE not in report.render([_rec("a", source="paraphrased")])
    assert REFERENCE not in report.render([_rec("a"), _rec("b", source=None)])
    assert REFERENCE not in report.render([_rec("a"), _rec("b", "lenient")])
    pairs = report.render([_rec("p", benchmark="oolong_pairs", length=32_768,
                                source="paper-queries", family="q01")])
    assert "0.580 · $0.33" in pairs[pairs.index(REFERENCE):]


def test_the_head_names_model_scorer_data_size_lengths_cost_and_time() -> None:
    text = report.render([_rec("a"), _rec("b", length=32_768)])
    head = text[:text.index("## By context length")]
    assert ("| oolong | rlm | openai/gpt-5 (sub openai/gpt-5-mini) | official | "
            "official-construction | 2 | 32768, 131072 | $0.2000 |") in head
    assert "wall time" in head


def test_a_breakdown_by_question_type() -> None:
    text = report.render([_rec("a"), _rec("b", family="most_freq/user", score=0.0)])
    table = text[text.index("## By question type"):]
    assert "| oolong | rlm | most_freq/user | 1 | 0.000 |" in table
    assert "| oolong | rlm | numeric_one_class/numeric | 1 | 0.500 |" in table


def test_plots_without_matplotlib_name_the_bench_extra(tmp_path, monkeypatch) -> None:
    import sys

    import pytest

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(ImportError, match=r"fleet-rlm\[bench\]"):
        report.plot_costs([_rec("a")], tmp_path / "cost.png")
    assert not (tmp_path / "cost.png").exists()


def test_report_and_runner_do_not_import_each_other() -> None:
    import ast
    import inspect


    def imported(module) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.ImportFrom):
                names |= {f"{node.module}.{a.name}" for a in node.names} | {node.module or ""}
        return names

    assert not any("runner" in name for name in imported(report))
