"""Score predictions made anywhere: `fleet bench score oolong|oolong-pairs|sniah FILE`.

Each line of FILE is a JSON object with `prediction` and `answer`; OOLONG lines also carry
`answer_type`. `answer` is in the dataset's own form:

- oolong: the stored answer string, `"[23]"`, `"['entity']"`, `"[datetime.date(2023, 3, 5)]"`,
  and `answer_type` as the dataset writes it (`ANSWER_TYPE.NUMERIC`) or plain (`NUMERIC`);
- oolong-pairs: the gold pairs, as a list of `"(a, b)"` strings or of `[a, b]` lists, or one
  string listing them;
- sniah: the gold value, or a list of them (the score is the share named).

Other fields (`id`, `context_len`, `task`, ...) are carried into the per-line output. A line that
cannot be scored stops the run with an error naming its line number; nothing is skipped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from fleet_rlm.bench import oolong_score, pairs, sniah
from fleet_rlm.bench.oolong_score import Scorer

BENCHMARKS = ("oolong", "oolong-pairs", "sniah")


class ScoreFileError(ValueError):
    """A line of a predictions file that cannot be scored."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        super().__init__(f"{path}:{line}: {problem}")


def _text(row: dict[str, Any], key: str) -> str:
    if key not in row:
        raise ValueError(f"missing field {key!r}")
    if not isinstance(row[key], str):
        raise ValueError(f"field {key!r} must be a string, not {type(row[key]).__name__}")
    return row[key]


def _oolong(row: dict[str, Any], scorer: Scorer) -> tuple[float, str]:
    kind = oolong_score.answer_type(_text(row, "answer_type"))
    return oolong_score.score_answer(_text(row, "prediction"), _text(row, "answer"), kind,
                                     scorer), kind


def _gold_pairs(answer: Any) -> set[pairs.Pair]:
    if isinstance(answer, str):
        return pairs.parse_pairs(answer)
    if not isinstance(answer, list):
        raise ValueError("field 'answer' must be a list of pairs or a string listing them")
    found: set[pairs.Pair] = set()
    for item in answer:
        if isinstance(item, list) and len(item) == 2:
            found |= pairs.parse_pairs(f"({item[0]}, {item[1]})")
        elif isinstance(item, str) and (parsed := pairs.parse_pairs(item)):
            found |= parsed
        else:
            raise ValueError(f"gold pair {item!r} is neither \"(a, b)\" nor [a, b]")
    return found


def _pairs(row: dict[str, Any], scorer: Scorer) -> tuple[float, str]:
    if "answer" not in row:
        raise ValueError("missing field 'answer'")
    gold = _gold_pairs(row["answer"])
    return pairs.pair_f1(pairs.parse_pairs(_text(row, "prediction")), gold), "pairs"


def _sniah(row: dict[str, Any], scorer: Scorer) -> tuple[float, str]:
    answer = row.get("answer")
    golds: list[Any] = answer if isinstance(answer, list) else [answer]
    if not golds or not all(isinstance(g, str) and g for g in golds):
        raise ValueError("field 'answer' must be a non-empty string or a list of them")
    return sniah.score_values(golds, _text(row, "prediction")), "value"


SCORE_LINE: dict[str, Callable[[dict[str, Any], Scorer], tuple[float, str]]] = {
    "oolong": _oolong, "oolong-pairs": _pairs, "sniah": _sniah}


@dataclass(frozen=True)
class Scored:
    benchmark: str
    scorer: Scorer
    lines: list[dict[str, Any]]  # each input line with its `score` and `answer_type`

    @property
    def mean(self) -> float:
        return mean(r["score"] for r in self.lines) if self.lines else 0.0

    def by_type(self) -> dict[str, tuple[int, float]]:
        groups: dict[str, list[float]] = defaultdict(list)
        for r in self.lines:
            groups[r["answer_type"]].append(r["score"])
        return {k: (len(v), mean(v)) for k, v in sorted(groups.items())}

    def summary(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "scorer": self.scorer, "n": len(self.lines),
                "mean": self.mean,
                "by_answer_type": {k: {"n": n, "mean": m} for k, (n, m) in self.by_type().items()}}


def score_file(benchmark: str, path: Path, scorer: Scorer = "official") -> Scored:
    """Every line of `path` scored; `ScoreFileError` at the first line that cannot be."""
    if benchmark not in SCORE_LINE:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    if scorer not in oolong_score.SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}; choose from "
                         + ", ".join(oolong_score.SCORERS))
    if scorer != "official" and benchmark != "oolong":
        raise ValueError(f"--scorer {scorer} applies to oolong only; {benchmark} has one rule")
    scored = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                raise ScoreFileError(path, number, "empty line")
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                value, kind = SCORE_LINE[benchmark](row, scorer)
            except ValueError as exc:  # JSONDecodeError is one
                raise ScoreFileError(path, number, str(exc)) from None
            scored.append({**row, "answer_type": kind, "score": value, "scorer": scorer})
    if not scored:
        raise ScoreFileError(path, 0, "no predictions in the file")
    return Scored(benchmark, scorer, scored)


def write_lines(scored: Scored, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row in scored.lines:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
