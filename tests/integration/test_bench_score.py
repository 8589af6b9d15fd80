"""`fleet bench score`: predictions made elsewhere, scored by a real `fleet` process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_rlm.bench.scoring import ScoreFileError, score_file

OOLONG = [
    {"id": 1, "prediction": "Label: entity", "answer": "['entity']",
     "answer_type": "ANSWER_TYPE.LABEL"},
    {"id": 2, "prediction": "Label: Entity.", "answer": "['entity']",
     "answer_type": "ANSWER_TYPE.LABEL"},
    {"id": 3, "prediction": "Answer: 22", "answer": "[23]", "answer_type": "ANSWER_TYPE.NUMERIC"},
    {"id": 4, "prediction": "Answer: 23 lines", "answer": "[23]", "answer_type": "NUMERIC"},
    {"id": 5, "prediction": "Date: 03/05/2023", "answer": "[datetime.date(2023, 3, 5)]",
     "answer_type": "ANSWER_TYPE.DATE"},
    {"id": 6, "prediction": "Answer: entity is more common than location",
     "answer": "['more common than']", "answer_type": "ANSWER_TYPE.COMPARISON"},
]
OFFICIAL = [1.0, 0.0, 0.75, 0.0, 1.0, 1.0]
LENIENT = [1.0, 1.0, 0.75, 1.0, 1.0, 1.0]


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def fleet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleet_rlm.cli", "bench", "score", *args],
                          cwd=cwd, text=True, capture_output=True, timeout=120)


def test_scores_another_systems_oolong_predictions_line_by_line(tmp_path: Path) -> None:
    preds = write(tmp_path / "preds.jsonl", OOLONG)
    run = fleet("oolong", str(preds), "--out", str(tmp_path / "scored.jsonl"), "--json",
                cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["n"] == 6 and summary["scorer"] == "official"
    assert summary["mean"] == pytest.approx(sum(OFFICIAL) / 6)
    assert summary["by_answer_type"]["ANSWER_TYPE.NUMERIC"] == {"n": 2, "mean": 0.375}
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [r["score"] for r in scored] == OFFICIAL
    assert [r["id"] for r in scored] == [1, 2, 3, 4, 5, 6]  # the input's own fields are kept

    table = fleet("oolong", str(preds), "--scorer", "lenient", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "scorer: lenient (not the published metric)" in table.stdout
    assert f"{sum(LENIENT) / 6:.4f}" in table.stdout


def test_a_bad_line_is_an_error_naming_its_number(tmp_path: Path) -> None:
    preds = write(tmp_path / "preds.jsonl", [OOLONG[0], OOLONG[1], "{not json",  OOLONG[2]])
    run = fleet("oolong", str(preds), cwd=tmp_path)
    assert run.returncode == 1
    assert "preds.jsonl:3:" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize(("row", "problem"), [
    ({"prediction": "Label: x", "answer": "['x']"}, "missing field 'answer_type'"),
    ({"prediction": "Label: x", "answer": "['x']", "answer_type": "FLOAT"}, "answer_type"),
    ({"prediction": "Label: x", "answer": "x", "answer_type": "LABEL"}, "not a Python list"),
    ({"prediction": 3, "answer": "[3]", "answer_type": "NUMERIC"}, "must be a string"),
    ([1, 2], "not a JSON object"),
])
def test_every_kind_of_bad_oolong_line_names_the_line(tmp_path: Path, row, problem: str) -> None:
    preds = write(tmp_path / "p.jsonl", [OOLONG[0], json.dumps(row)])
    with pytest.raises(ScoreFileError, match=problem) as caught:
        score_file("oolong", preds)
    assert caught.value.line == 2


def test_an_empty_line_is_not_skipped(tmp_path: Path) -> None:
    preds = write(tmp_path / "p.jsonl", [OOLONG[0], "", OOLONG[1]])
    with pytest.raises(ScoreFileError, match="empty line"):
        score_file("oolong", preds)


def test_pairs_predictions_score_by_f1_against_gold_pairs(tmp_path: Path) -> None:
    preds = write(tmp_path / "p.jsonl", [
        {"prediction": "(2, 1)\n(1, 2)\n(3, 4)", "answer": ["(1, 2)", "(3, 4)"]},
        {"prediction": "(1, 2)", "answer": [[1, 2], [5, 6]]},
        {"prediction": "None", "answer": []},
        {"prediction": "(1, 2)", "answer": "(5, 6)"},
    ])
    scored = score_file("oolong-pairs", preds)
    assert [r["score"] for r in scored.lines] == [1.0, pytest.approx(2 / 3), 1.0, 0.0]


def test_sniah_predictions_match_whole_words(tmp_path: Path) -> None:
    preds = write(tmp_path / "p.jsonl", [
        {"prediction": "It is lemur.", "answer": "emu"},
        {"prediction": "It is emu.", "answer": "emu"},
        {"prediction": "emu, 12", "answer": ["emu", "123"]},
    ])
    assert [r["score"] for r in score_file("sniah", preds).lines] == [0.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="oolong only"):
        score_file("sniah", preds, "lenient")
