"""OOLONG answer scoring: the official rule (the default) and our lenient one.

`official` reproduces the behaviour of OOLONG-synth's own scorer (`synth_attempt_answer_parse` and
`synth_process_response` in `src/eval/eval_helpers.py` of abertsch72/oolong, commit adbf1cb),
written here from a reading of that code:

- the candidate: with no `:` in the answer, the whole answer when it is shorter than 20
  characters, else its last whitespace-separated word; otherwise the text after the last colon,
  stripped, then with every `*`, `[` and `]` removed. A candidate of 20 characters or more that
  contains "more common", "less common" or "same frequency" (checked in that order) becomes
  that phrase;
- the gold: the first element of the stored Python-list answer, or for an answer containing
  `datetime` the date of `[datetime.date(Y, M, D)]` at midnight;
- 1 when `str(candidate) == str(gold)`; else for a comparison phrase, 1 when it occurs in the
  gold string (and nothing else is tried); else for NUMERIC answers `0.75 ** |gold - int(c)|`,
  0 when `int()` fails; else for DATE answers 1 when `dateutil.parser.parse(c)` equals the gold;
  else 0. Case, punctuation and extra words all count.

Where the official code would raise (a whitespace-only answer of 20 or more characters, a gold
answer that is not a list), this module scores 0 or raises `ValueError` naming the value.

`lenient` is this project's earlier rule: case, whitespace and edge punctuation ignored, the first
number anywhere, any written date or month form. It is not comparable with published figures, and
reports label it.
"""

from __future__ import annotations

import ast
from datetime import date, datetime
from typing import Any, Literal

from dateutil import parser as date_parser

from fleet_rlm.bench.tasks import first_number, normalize, parse_date, parse_month_year

Scorer = Literal["official", "lenient"]
SCORERS: tuple[Scorer, ...] = ("official", "lenient")
ANSWER_TYPES = ("LABEL", "NUMERIC", "COMPARISON", "USER", "DATE", "MONTH_YEAR")
PHRASES = ("more common", "less common", "same frequency")


def answer_type(value: str) -> str:
    """The dataset's spelling, `ANSWER_TYPE.NUMERIC`, from it or from `NUMERIC` / `numeric`."""
    name = value.strip().rsplit(".", 1)[-1].upper()
    if name not in ANSWER_TYPES:
        raise ValueError(f"unknown OOLONG answer_type {value!r}; expected one of "
                         + ", ".join(f"ANSWER_TYPE.{t}" for t in ANSWER_TYPES))
    return f"ANSWER_TYPE.{name}"


def candidate(answer: str) -> str:
    """The part of a reply the official scorer compares."""
    if ":" not in answer:
        if len(answer) < 20:
            return answer
        words = answer.split()
        return words[-1] if words else ""
    text = answer.split(":")[-1].strip()
    text = text.replace("*", "").replace("[", "").replace("]", "")
    if len(text) >= 20:
        for phrase in PHRASES:
            if phrase in text:
                return phrase
    return text


def gold_value(answer: str) -> Any:
    """The first element of a stored answer (`"[23]"`, `"['entity']"`,
    `"[datetime.date(2023, 3, 5)]"`); a date becomes a datetime at midnight."""
    if "datetime" in answer:
        try:
            return datetime.strptime(answer, "[datetime.date(%Y, %m, %d)]")
        except ValueError:
            raise ValueError(f"gold answer {answer!r} is not of the form "
                             "[datetime.date(Y, M, D)]") from None
    try:
        value = ast.literal_eval(answer)
    except (ValueError, SyntaxError):
        raise ValueError(f"gold answer {answer!r} is not a Python list literal") from None
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"gold answer {answer!r} is not a non-empty list")
    return value[0]


def official(prediction: str, answer: str, kind: str) -> float:
    """The official OOLONG-synth score of `prediction` against the stored `answer`."""
    gold, kind = gold_value(answer), answer_type(kind)
    got = candidate(prediction)
    if got == str(gold):
        return 1.0
    if got in PHRASES:
        return float(got in str(gold))
    if kind == "ANSWER_TYPE.NUMERIC":
        try:
            return 0.75 ** abs(int(gold) - int(got))
        except ValueError:
            return 0.0
    if kind == "ANSWER_TYPE.DATE":
        try:
            return float(date_parser.parse(got) == gold)
        except (ValueError, OverflowError):
            return 0.0
    return 0.0


def readable_gold(answer: str) -> str:
    """The stored answer as a person writes it: `23`, `entity`, `03/05/2023`."""
    gold = gold_value(answer)
    return gold.strftime("%m/%d/%Y") if isinstance(gold, date) else str(gold)


def lenient(prediction: str, answer: str, kind: str) -> float:
    """Our forgiving rule; see the module docstring. Not the published metric."""
    gold, kind = readable_gold(answer), answer_type(kind)
    text = prediction.strip()
    if ":" in text:
        text = text.rsplit(":", 1)[1]
    elif len(text) >= 20 and text.split():
        text = text.split()[-1]
    got_raw = text.replace("*", "").replace("[", "").replace("]", "").strip()
    if kind == "ANSWER_TYPE.NUMERIC" and (gold_n := first_number(gold)) is not None:
        value = first_number(got_raw)
        return 0.0 if value is None else 0.75 ** abs(gold_n - value)
    if kind == "ANSWER_TYPE.DATE":
        gold_day = parse_date(gold)
        return float(gold_day is not None and parse_date(got_raw) == gold_day)
    got, want = normalize(got_raw), normalize(gold)
    if got == want:
        return 1.0
    if kind == "ANSWER_TYPE.MONTH_YEAR":
        gold_month = parse_month_year(want)
        return float(gold_month is not None and parse_month_year(got) == gold_month)
    if kind == "ANSWER_TYPE.COMPARISON":
        for phrase in PHRASES:
            if phrase in got:
                return float(phrase in want)
    return 0.0


SCORE = {"official": official, "lenient": lenient}


def score_answer(prediction: str, answer: str, kind: str, scorer: Scorer = "official") -> float:
    return SCORE[scorer](prediction, answer, kind)
