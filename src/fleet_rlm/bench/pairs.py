"""OOLONG-Pairs: the twenty pair-listing queries of the RLM paper over OOLONG trec_coarse windows.

The queries are those of "Recursive Language Models" (Zhang, Kraska, Khattab 2025,
arXiv:2512.24601), appendix D.1: each asks for every pair of user IDs meeting a condition on the
users' hidden labels (and, for five of them, dates), so the answer grows quadratically with the
window. Queries 1-3, 6 and 8: both users have an instance with label A or B. Queries 4, 5, 7, 9
and 10: the same, and every instance of one of the two labels, for both users, is after (or
before) a date. Queries 11-20: one user meets one set of counts ("at least" / "exactly") and the
other user another.

The wording is the appendix's, taken from a text transcription of the paper that several public
reproductions agree on; it was not compared with the PDF itself. Two readings are ours: "all
instances that are a X ... must be after D" holds for a user with no X instance (the user still
needs an instance of A or B), and "after" / "before" are strict. Windows are built by the
official OOLONG-synth rules (`oolong_synth`), 32K tokens by default as in the paper's Table 1.

Gold is the set of pairs; an answer is scored by F1 between the pairs it lists, each normalised
to (lower, higher) and deduplicated, and that set (both empty scores 1).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import combinations
from typing import Literal

from fleet_rlm.bench.oolong_synth import SynthWindow, build
from fleet_rlm.bench.tasks import Task, approx_tokens

BENCHMARK = "oolong_pairs"
DEFAULT_TOKENS: tuple[int, ...] = (32_768,)
Pair = tuple[str, str]

PREFIX = "In the above data, list all pairs of user IDs (no duplicate pairs, list lower ID first) "
SUFFIX = (
    ". Each of the questions can be labelled as one of the labels (the data does not provide the "
    "labels, you need to figure out the label from the semantics of the question): description "
    "and abstract concept, entity, human being, numeric value, location, abbreviation. In your "
    "answer, list all pairs in the format (user_id_1, user_id_2), separated by newlines."
)


class Users:
    """Per-user views of a window's hidden labels."""

    def __init__(self, window: SynthWindow) -> None:
        self.lines: dict[str, list[tuple[date, str]]] = defaultdict(list)
        for r in window.rows:
            self.lines[str(r.user)].append((r.day, r.label))
        self.lines = dict(self.lines)

    def count(self, user: str, label: str, when: Callable[[date], bool] = lambda d: True) -> int:
        return sum(lb == label and when(d) for d, lb in self.lines[user])

    def has(self, user: str, label: str, when: Callable[[date], bool] = lambda d: True) -> bool:
        return self.count(user, label, when) > 0

    def where(self, test: Callable[[str], bool]) -> list[str]:
        return [user for user in self.lines if test(user)]

    def meets(self, user: str, counts: tuple[Count, ...]) -> bool:
        return all(self.count(user, label) == n if exact else self.count(user, label) >= n
                   for label, n, exact in counts)


def _both(users: Iterable[str]) -> set[Pair]:
    return {_pair(u, v) for u, v in combinations(sorted(set(users)), 2)}


def _cross(left: Iterable[str], right: Iterable[str]) -> set[Pair]:
    right = set(right)
    return {_pair(u, v) for u in set(left) for v in right if u != v}


DESC, ENTY, HUM, NUM, LOC, ABBR = ("description and abstract concept", "entity", "human being",
                                   "numeric value", "location", "abbreviation")
Count = tuple[str, int, bool]  # label, n, exactly (else at least)


@dataclass(frozen=True)
class Query:
    """One of the paper's queries: `clause` is its condition, worded as in the paper."""

    number: int
    clause: str
    any_of: tuple[str, str] = ("", "")  # symmetric: each user has an instance of one of these
    dated: tuple[str, Literal["after", "before"], date] | None = None
    one: tuple[Count, ...] = ()  # asymmetric: one user meets these counts ...
    other: tuple[Count, ...] = ()  # ... and the other user these

    @property
    def question(self) -> str:
        return PREFIX + self.clause + SUFFIX

    def gold(self, u: Users) -> set[Pair]:
        if self.one:
            return _cross(u.where(lambda x: u.meets(x, self.one)),
                          u.where(lambda x: u.meets(x, self.other)))
        return _both(u.where(lambda x: (u.has(x, self.any_of[0]) or u.has(x, self.any_of[1]))
                             and self._dates_hold(u, x)))

    def _dates_hold(self, u: Users, user: str) -> bool:
        if self.dated is None:
            return True
        label, side, day = self.dated
        dates = [d for d, lb in u.lines[user] if lb == label]
        return all(d > day for d in dates) if side == "after" else all(d < day for d in dates)


def _sym(number: int, a: str, b: str, article: str = "a") -> Query:
    return Query(number, f"where both users have at least one instance with {article} {a} or {b}",
                 any_of=(a, b))


def _dated(number: int, a: str, b: str, article: str, label: str, label_article: str,
           side: Literal["after", "before"], day: date) -> Query:
    shown = f"{day:%B} {day.day}, {day.year}"
    return Query(number, f"where both users have at least one instance with {article} {a} or {b}, "
                 f"and all instances that are {label_article} {label} for both users must be "
                 f"{side} {shown}", any_of=(a, b), dated=(label, side, day))


def _asym(number: int, clause: str, one: tuple[Count, ...], other: tuple[Count, ...]) -> Query:
    return Query(number, clause, one=one, other=other)


def _least(label: str, n: int = 1) -> Count:
    return label, n, False


def _exactly(label: str, n: int = 1) -> Count:
    return label, n, True


QUERIES: tuple[Query, ...] = (
    _sym(1, NUM, LOC),
    _sym(2, ENTY, HUM, "an"),
    _sym(3, DESC, ABBR),
    _dated(4, HUM, LOC, "a", HUM, "a", "after", date(2023, 1, 6)),
    _dated(5, ENTY, NUM, "an", ENTY, "an", "before", date(2023, 3, 15)),
    _sym(6, LOC, ABBR),
    _dated(7, DESC, NUM, "a", NUM, "a", "after", date(2023, 2, 1)),
    _sym(8, HUM, DESC),
    _dated(9, ENTY, LOC, "an", LOC, "a", "after", date(2023, 4, 10)),
    _dated(10, NUM, ABBR, "a", ABBR, "an", "before", date(2023, 5, 20)),
    _asym(11, "such that one user has at least one instance with entity and one with "
          "abbreviation, and the other user has exactly one instance with entity",
          (_least(ENTY), _least(ABBR)), (_exactly(ENTY),)),
    _asym(12, "such that one user has at least two instances with numeric value, and the other "
          "user has at least one instance with location and at least one instance with human "
          "being", (_least(NUM, 2),), (_least(LOC), _least(HUM))),
    _asym(13, "such that one user has exactly one instance with description and abstract "
          "concept, and the other user has at least one instance with abbreviation and at least "
          "one instance with entity", (_exactly(DESC),), (_least(ABBR), _least(ENTY))),
    _asym(14, "such that one user has at least one instance with human being and at least one "
          "instance with numeric value, and the other user has exactly two instances with "
          "location", (_least(HUM), _least(NUM)), (_exactly(LOC, 2),)),
    _asym(15, "such that one user has at least one instance with entity, at least one instance "
          "with location, and at least one instance with abbreviation, and the other user has "
          "exactly one instance with numeric value", (_least(ENTY), _least(LOC), _least(ABBR)),
          (_exactly(NUM),)),
    _asym(16, "such that one user has at least one instance with description and abstract "
          "concept and at least one instance with human being, and the other user has at least "
          "two instances with entity and exactly one instance with abbreviation",
          (_least(DESC), _least(HUM)), (_least(ENTY, 2), _exactly(ABBR))),
    _asym(17, "such that one user has exactly one instance with numeric value, and the other "
          "user has at least one instance with location and at least one instance with "
          "description and abstract concept", (_exactly(NUM),), (_least(LOC), _least(DESC))),
    _asym(18, "such that one user has at least one instance with abbreviation and exactly one "
          "instance with human being, and the other user has at least one instance with entity "
          "and at least one instance with numeric value", (_least(ABBR), _exactly(HUM)),
          (_least(ENTY), _least(NUM))),
    _asym(19, "such that one user has at least two instances with location and at least one "
          "instance with entity, and the other user has exactly one instance with description "
          "and abstract concept and exactly one instance with abbreviation",
          (_least(LOC, 2), _least(ENTY)), (_exactly(DESC), _exactly(ABBR))),
    _asym(20, "such that one user has at least one instance with numeric value and at least one "
          "instance with human being, and the other user has at least one instance with "
          "location, at least one instance with entity, and exactly one instance with "
          "abbreviation", (_least(NUM), _least(HUM)), (_least(LOC), _least(ENTY),
                                                       _exactly(ABBR))),
)


def window_tasks(window: SynthWindow, numbers: Sequence[int] | None = None) -> list[Task]:
    """One task per query (or per query in `numbers`), gold from the window's hidden labels."""
    users = Users(window)
    base = {"window_id": window.id, "target_tokens": window.context_len,
            "context_chars": len(window.text), "approx_tokens": approx_tokens(window.text),
            "n_instances": len(window.rows), "source": "paper-queries"}
    tasks = []
    for query in QUERIES:
        if numbers is not None and query.number not in numbers:
            continue
        gold = query.gold(users)
        tasks.append(Task(
            id=f"{window.id}-pairs-q{query.number:02d}", benchmark=BENCHMARK, context=window.text,
            question=query.question,
            gold=[f"({u}, {v})" for u, v in sorted(gold, key=_int_pair)],
            meta={**base, "family": f"q{query.number:02d}", "n_gold": len(gold)},
        ))
    return tasks


def _int_pair(pair: Pair) -> tuple[int, int]:
    return int(pair[0]), int(pair[1])


def generate(
    n: int = 1,
    seed: int = 0,
    lengths: Sequence[int] = DEFAULT_TOKENS,
    numbers: Sequence[int] | None = None,
) -> list[Task]:
    """`n` windows per target length (tokens), each with the twenty queries."""
    return [task for tokens in lengths for i in range(n)
            for task in window_tasks(build(tokens, seed, i), numbers)]


def _pair(u: str, v: str) -> Pair:
    a, b = sorted((u, v), key=int)
    return a, b


_PAREN = re.compile(r"\(\s*(\d+)\s*[,;&/-]\s*(\d+)\s*\)")
_LOOSE = re.compile(r"(?<![\d.:/])(\d+)\s*(?:,|-|\u2013|&|\band\b)\s*(\d+)(?![\d.:/])")


def parse_pairs(text: str) -> set[Pair]:
    """Unordered ID pairs written as "(1, 2)", or failing that "1-2" / "1, 2", anywhere in text."""
    found = _PAREN.findall(text) or _LOOSE.findall(text)
    return {_pair(u, v) for u, v in found if u != v}


def pair_f1(predicted: set[Pair], gold: set[Pair]) -> float:
    if not predicted and not gold:
        return 1.0
    hits = len(predicted & gold)
    if not hits:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(gold)
    return 2 * precision * recall / (precision + recall)


def score(task: Task, answer: str) -> float:
    gold = task.gold if isinstance(task.gold, list) else [task.gold]
    return pair_f1(parse_pairs(answer), parse_pairs("\n".join(gold)))
