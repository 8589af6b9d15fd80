"""`fleet bench` as a real subprocess against the scripted LM server, and the code-only baseline."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from fleet_rlm.bench import baseline, runner, score, sniah
from fleet_rlm.bench.results import load_results
from fleet_rlm.testing import dspy_reply

PNG = b"\x89PNG\r\n\x1a\n"
LENGTH = 2000  # tokens: tiny windows keep every run quick


def fleet_bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None, server=None,
                wait: bool = True, sigint: Any = signal.SIG_DFL
                ) -> subprocess.CompletedProcess | subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    clean["FLEET_ALLOW_UNPRICED_MODELS"] = "true"  # the scripted models have no price
    clean.update(FLEET_DATA_DIR=str(tmp_path / "data"), FLEET_ROOT_MODEL="openai/root",
                 FLEET_SUB_MODEL="openai/sub", FLEET_API_KEY="test", **(env or {}))
    api = ["--api-base", server.api_base] if server is not None else []
    cmd = [sys.executable, "-m", "fleet_rlm.cli", "bench", *args, *api]
    if not wait:
        # SIGINT's disposition is set, not inherited from however the test suite was started.
        return subprocess.Popen(cmd, cwd=tmp_path, env=clean, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    return subprocess.run(cmd, cwd=tmp_path, env=clean, text=True, capture_output=True,
                          timeout=300)


def gold_text(task) -> str:
    """The gold answer, written the way the questions ask for it."""
    return "\n".join(task.gold) if isinstance(task.gold, list) else f"Answer: {task.gold}"


def rlm_rule(task, answer: str) -> dict:
    """The root model's first iteration on this task's question SUBMITs `answer`."""
    code = f"SUBMIT(answer={answer!r})"
    return {"model": "root", "times": 1, "reply": dspy_reply(reasoning="answer", code=code),
            "match": rf"{re.escape(task.question)}.*\[\[ ## iteration ## \]\]\n1/"}


def direct_rule(task, answer: str) -> dict:
    """The plain call, whose prompt is the whole context and then the question, gets `answer`."""
    return {"model": "root", "times": 1, "reply": answer,
            "match": rf"\n{re.escape(task.question)}$"}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# The scripted answers: rlm gets the first task right, direct the second; the rest are wrong.
RIGHT = {"rlm": 0, "direct": 1}


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", ["sniah", "oolong", "oolong-pairs"])
def test_rlm_and_direct_runs_write_results_report_and_plots_and_resume(
        tmp_path, scripted_lm, benchmark):
    tasks = runner.make_tasks(benchmark, 3, 0, [LENGTH])
    assert len({t.question for t in tasks}) == 3

    def answers(mode: str) -> list[str]:
        return [gold_text(t) if i == RIGHT[mode] else "wrong" for i, t in enumerate(tasks)]

    server = scripted_lm([*map(rlm_rule, tasks, answers("rlm")),
                          *map(direct_rule, tasks, answers("direct"))])
    out = tmp_path / "out"
    common = [benchmark, "--n", "3", "--lengths", str(LENGTH), "--out", str(out)]
    for mode in ("rlm", "direct"):
        done = fleet_bench(tmp_path, *common, "--mode", mode, "--concurrency", "3",
                           server=server)
        assert done.returncode == 0, done.stderr
    server.verify()
    assert server.stats()["calls"] == 6

    records = lines(out / "results.jsonl")
    assert len(records) == 6
    for mode in ("rlm", "direct"):
        mine = {r["task_id"]: r for r in records if r["mode"] == mode}
        assert set(mine) == {t.id for t in tasks}
        for i, task in enumerate(tasks):
            rec = mine[task.id]
            assert rec["status"] == "ok" and rec["calls"] == 1 and rec["tokens"] > 0
            assert rec["score"] == (1.0 if i == RIGHT[mode] else 0.0), rec
            assert rec["answer"] == answers(mode)[i] and rec["length"] == LENGTH
            assert rec["turn_id"] and rec["seconds"] > 0 and rec["gold"] == task.gold

    report = (out / "report.md").read_text()
    assert "| benchmark | mode | context length (tokens) | n | mean score |" in report
    assert f"| rlm | {LENGTH} | 3 | 0.333 |" in report
    assert f"| direct | {LENGTH} | 3 | 0.333 |" in report
    for plot in ("score_vs_length.png", "cost_hist.png"):
        assert (out / plot).read_bytes().startswith(PNG)

    # Run again: everything is already in results.jsonl, so no model is called.
    for mode in ("rlm", "direct"):
        again = fleet_bench(tmp_path, *common, "--mode", mode, server=server)
        assert again.returncode == 0, again.stderr
        assert "resuming: 3 of 3" in again.stderr
    assert server.stats()["calls"] == 6
    assert len(lines(out / "results.jsonl")) == 6

    (out / "report.md").unlink()
    rebuilt = fleet_bench(tmp_path, "report", str(out))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (out / "report.md").read_text().split("\n", 3)[3] == report.split("\n", 3)[3]


@pytest.mark.slow
@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
def test_an_interrupted_run_resumes_with_the_tasks_left(tmp_path, scripted_lm, sigint):
    """Also when started with SIGINT ignored, as a script's background job is."""
    tasks = runner.make_tasks("sniah", 4, 0, [LENGTH])
    server = scripted_lm([{**direct_rule(t, "wrong"), "delay_ms": 1500} for t in tasks])
    out = tmp_path / "out"
    args = ["sniah", "--n", "4", "--lengths", str(LENGTH), "--out", str(out), "--mode", "direct",
            "--concurrency", "2"]
    running = fleet_bench(tmp_path, *args, server=server, wait=False, sigint=sigint)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while not (results.exists() and len(results.read_text().splitlines()) >= 2):
        assert running.poll() is None and time.monotonic() < deadline, running.communicate()
        time.sleep(0.05)
    running.send_signal(signal.SIGINT)  # the next two tasks are in flight
    _, stderr = running.communicate(timeout=60)
    assert running.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    assert len(lines(results)) == 2  # the cancelled tasks were not recorded
    with results.open("a") as f:
        f.write('{"task_id": "torn by a kill')

    done = fleet_bench(tmp_path, *args, server=server)
    assert done.returncode == 0, done.stderr
    assert "resuming: 2 of 4" in done.stderr
    records = load_results(out)
    assert sorted(r["task_id"] for r in records) == sorted(t.id for t in tasks)
    assert len(results.read_text().splitlines()) == 5  # the torn line stays on its own


@pytest.mark.slow
def test_agent_mode_answers_in_a_chat_turn_with_the_context_as_a_document(tmp_path, scripted_lm):
    tasks = runner.make_tasks("sniah", 2, 0, [LENGTH])
    finish = dspy_reply(next_thought="done", next_tool_name="finish", next_tool_args="{}")
    final = r"then `\[\[ ## answer ## \]\]`"  # only the agent's answer prompt asks for this
    server = scripted_lm([
        *({"model": "root", "times": 1, "match": rf"{re.escape(t.question)}.*{final}",
           "reply": dspy_reply(reasoning="read it", answer=a)}
          for t, a in zip(tasks, [gold_text(tasks[0]), "wrong"], strict=True)),
        *({"model": "root", "times": 1, "match": re.escape(t.question), "reply": finish}
          for t in tasks),
    ])
    out = tmp_path / "out"
    done = fleet_bench(tmp_path, "sniah", "--n", "2", "--lengths", str(LENGTH), "--out",
                       str(out), "--mode", "agent", "--concurrency", "2", server=server)
    assert done.returncode == 0, done.stderr
    server.verify()
    records = {r["task_id"]: r for r in lines(out / "results.jsonl")}
    assert [records[t.id]["score"] for t in tasks] == [1.0, 0.0]
    assert all(r["status"] == "ok" and r["calls"] == 2 and r["turn_id"] for r in records.values())


@pytest.mark.slow
def test_export_writes_the_tasks_without_calling_a_model(tmp_path, scripted_lm):
    server = scripted_lm([])
    target = tmp_path / "tasks.jsonl"
    done = fleet_bench(tmp_path, "oolong-pairs", "--n", "3", "--lengths", str(LENGTH),
                       "--export", str(target), "--out", str(tmp_path / "out"), server=server)
    assert done.returncode == 0, done.stderr
    exported = lines(target)
    expected = runner.make_tasks("oolong-pairs", 3, 0, [LENGTH])
    assert [t["id"] for t in exported] == [t.id for t in expected]
    assert all({"id", "context", "question", "gold"} <= set(t) for t in exported)
    assert exported[0]["context"] == expected[0].context
    assert server.stats()["calls"] == 0
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_max_usd_stops_launching_tasks(tmp_path, scripted_lm):
    tasks = runner.make_tasks("sniah", 3, 0, [LENGTH])
    server = scripted_lm([direct_rule(t, "wrong") for t in tasks])
    prices = json.dumps({"openai/root": {"input_per_mtok": 1000, "output_per_mtok": 1000}})
    out = tmp_path / "out"
    done = fleet_bench(tmp_path, "sniah", "--n", "3", "--lengths", str(LENGTH), "--out",
                       str(out), "--mode", "direct", "--max-usd", "1", env={"FLEET_PRICES": prices,
                       "FLEET_CALL_MAX_TOKENS": "100"}, server=server)
    assert done.returncode == 2, done.stderr
    assert "--max-usd 1 reached" in done.stderr
    [record] = lines(out / "results.jsonl")
    assert record["usd"] > 1 and record["usd_unknown_calls"] == 0
    assert server.stats()["calls"] == 1
    assert (out / "report.md").exists()


def test_unpriced_models_are_refused_before_any_task_runs(tmp_path, scripted_lm):
    server = scripted_lm([])
    out = tmp_path / "out"
    args = ("sniah", "--n", "1", "--lengths", str(LENGTH), "--out", str(out), "--mode", "direct",
            "--max-usd", "1")
    refused = fleet_bench(tmp_path, *args, env={"FLEET_ALLOW_UNPRICED_MODELS": "false"},
                          server=server)
    assert refused.returncode == 1
    assert "'openai/root' has no known price" in refused.stderr
    assert "FLEET_ALLOW_UNPRICED_MODELS" in refused.stderr
    assert server.stats()["calls"] == 0 and not out.exists()

    server.set_rules([{"model": "root", "reply": "wrong"}])
    allowed = fleet_bench(tmp_path, *args, server=server)
    assert allowed.returncode == 0, allowed.stderr
    assert "--max-usd cannot stop this run: no price for openai/root" in allowed.stderr


# -- the code-only baseline ----------------------------------------------------------------------
@pytest.mark.slow
def test_code_only_cli_needs_no_model(tmp_path):
    out = tmp_path / "out"
    done = fleet_bench(tmp_path, "oolong", "--mode", "code-only", "--n", "10", "--lengths",
                       str(LENGTH), "--out", str(out))
    assert done.returncode == 0, done.stderr
    records = lines(out / "results.jsonl")
    assert len(records) == 10 and all(r["calls"] == 0 and r["model"] is None for r in records)
    assert "Code-only on OOLONG" in (out / "report.md").read_text()
    pairs = fleet_bench(tmp_path, "oolong-pairs", "--mode", "code-only", "--n", "1",
                        "--lengths", str(LENGTH), "--out", str(out))
    assert pairs.returncode == 1 and "no code-only baseline" in pairs.stderr


def test_code_only_oolong_is_at_chance_on_label_questions():
    tasks = runner.make_tasks("oolong", 200, 0, [32_768])
    scores = {t.id: score(t, baseline.answer(t)) for t in tasks}
    label = [scores[t.id] for t in tasks if baseline.needs_labels(t.meta["family"])]
    free = [scores[t.id] for t in tasks if not baseline.needs_labels(t.meta["family"])]
    assert len(label) > 150 and free
    assert mean(label) < 0.35
    # Six-way label answers sit near 1/6.
    assert mean(scores[t.id] for t in tasks if t.meta["answer_type"] == "ANSWER_TYPE.LABEL") < 0.25
    assert mean(free) == 1.0  # users and dates need no labels: code alone gets them right
    assert all(score(t, gold_text(t)) == 1.0 for t in tasks)  # the gold answer itself scores 1


def test_code_only_solves_sniah():
    tasks = sniah.generate(1, 0, [4000])
    assert all(sniah.score(t, baseline.answer(t)) == 1.0 for t in tasks)
