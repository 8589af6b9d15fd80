"""`fleet bench oolong --data FILE`: released OOLONG-synth rows run exactly as given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fleet_rlm.bench import oolong, oolong_synth


def released_rows(tokens: int, count: int) -> list[dict]:
    """Rows in the released dataset's fields, made from one window built by the official rules."""
    window = oolong_synth.build(tokens, seed=9)
    rows = []
    for i, q in enumerate(oolong_synth.questions(window)[:count]):
        rows.append({"id": 10_000_000 + i, "context_len": tokens, "dataset": "trec_coarse",
                     "context_window_id": 1, "context_window_text": window.text,
                     "question": q.question, "answer": str(q.answer), "task_group": q.task_group,
                     "task": q.task, "answer_type": q.answer_type, "num_labels": 6,
                     "input_subset": q.input_subset})
    return rows


def fleet(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FLEET_DATA_DIR=str(tmp_path / "data"), COLUMNS="400")
    return subprocess.run([sys.executable, "-m", "fleet_rlm.cli", "bench", *args], cwd=tmp_path,
                          env=env, text=True, capture_output=True, timeout=300)


def test_data_rows_run_exactly_as_given(tmp_path: Path) -> None:
    rows = released_rows(2048, 5) + released_rows(4096, 3)
    rows.append({**rows[0], "id": 1, "dataset": "spam"})  # another dataset: not trec_coarse
    data = tmp_path / "validation.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    done = fleet(tmp_path, "oolong", "--data", str(data), "--lengths", "2048", "--mode",
                 "code-only", "--out", str(out))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in records) == [str(10_000_000 + i) for i in range(5)]
    assert {r["length"] for r in records} == {2048}
    by_id = {str(r["id"]): r for r in rows}
    for rec in records:
        assert rec["gold"] == oolong.load_official(data)[int(rec["task_id"]) % 100].gold
        assert by_id[rec["task_id"]]["question"]  # the row's own question was asked


def test_data_errors_are_clear(tmp_path: Path) -> None:
    missing = fleet(tmp_path, "oolong", "--data", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(released_rows(2048, 1)[0]) + "\n")
    wrong = fleet(tmp_path, "oolong", "--data", str(data), "--lengths", "8192")
    assert wrong.returncode == 1 and "no trec_coarse rows at lengths [8192]" in wrong.stderr
    pairs = fleet(tmp_path, "oolong-pairs", "--data", str(data))
    assert pairs.returncode == 1 and "no released data" in pairs.stderr
