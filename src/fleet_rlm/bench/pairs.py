"""OOLONG-Pairs: twenty pair-listing queries over OOLONG trec_coarse windows.

Each query asks for every unordered pair of user IDs that meets a condition on the users' hidden
labels, dates and counts, so the answer grows quadratically with the window. Gold is the set of
pairs; an answer is scored by F1 between the pairs it lists and that set.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import combinations
from typing import Any

from fleet_rlm.bench.oolong import (
    LABELS,
    Month,
    Window,
    build_window,
    month_key,
    month_name,
    show_date,
)
from fleet_rlm.bench.tasks import Task, approx_tokens

BENCHMARK = "oolong_pairs"
DEFAULT_TOKENS: tuple[int, ...] = (32_768,)
Pair = tuple[str, str]

ANSWER_FORMAT = (
    "List each pair once, one per line, in the form (user_id_1, user_id_2) with the smaller ID "
    "first. If no pair qualifies, answer 'None'."
)


class Users:
    """Per-user views of a window's hidden labels."""

    def __init__(self, window: Window) -> None:
        self.lines: dict[str, list[tuple[date, str]]] = defaultdict(list)
        for r in window.instances:
            self.lines[r.user].append((r.day, r.label))
        self.lines = dict(self.lines)

    def count(self, user: str, label: str, when: Callable[[date], bool] = lambda d: True) -> int:
        return sum(lb == label and when(d) for d, lb in self.lines[user])

    def has(self, user: str, label: str, when: Callable[[date], bool] = lambda d: True) -> bool:
        return self.count(user, label, when) > 0

    def total(self, user: str) -> int:
        return len(self.lines[user])

    def where(self, test: Callable[[str], bool]) -> list[str]:
        return [user for user in self.lines if test(user)]


def _both(users: Iterable[str]) -> set[Pair]:
    return {_pair(u, v) for u, v in combinations(sorted(set(users)), 2)}


def _cross(left: Iterable[str], right: Iterable[str]) -> set[Pair]:
    right = set(right)
    return {_pair(u, v) for u in set(left) for v in right if u != v}


def _grouped(keys: dict[str, Iterable[Any]]) -> set[Pair]:
    """Pairs of users sharing at least one key."""
    groups: dict[Any, set[str]] = defaultdict(set)
    for user, ks in keys.items():
        for k in ks:
            groups[k].add(user)
    return set().union(*(_both(g) for g in groups.values()))


def _pair(u: str, v: str) -> Pair:
    a, b = sorted((u, v), key=int)
    return a, b


@dataclass(frozen=True)
class Params:
    a: str  # label
    b: str  # another label
    pivot: date
    month: Month
    year: int
    k: int  # a minimum number of lines per user


Solver = Callable[[Users, Params], tuple[str, set[Pair]]]
TEMPLATES: dict[str, Solver] = {}


def template(fn: Solver) -> Solver:
    TEMPLATES[fn.__name__] = fn
    return fn


@template
def both_any_of(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have at least one instance with label '{p.a}' or label '{p.b}'",
            _both(u.where(lambda x: u.has(x, p.a) or u.has(x, p.b))))


@template
def both_each_of(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have at least one instance with label '{p.a}' and at least one with "
            f"label '{p.b}'", _both(u.where(lambda x: u.has(x, p.a) and u.has(x, p.b))))


@template
def both_a_not_b(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have at least one instance with label '{p.a}' and no instance with "
            f"label '{p.b}'", _both(u.where(lambda x: u.has(x, p.a) and not u.has(x, p.b))))


@template
def both_only_ab(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"every instance of both users has label '{p.a}' or label '{p.b}'",
            _both(u.where(lambda x: u.count(x, p.a) + u.count(x, p.b) == u.total(x))))


@template
def both_exactly_one(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have exactly one instance with label '{p.a}'",
            _both(u.where(lambda x: u.count(x, p.a) == 1)))


@template
def both_active_with_a(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have at least {p.k} instances in total and at least one instance with "
            f"label '{p.a}'", _both(u.where(lambda x: u.total(x) >= p.k and u.has(x, p.a))))


@template
def both_a_after(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have at least one instance with label '{p.a}' dated after "
            f"{show_date(p.pivot)}", _both(u.where(lambda x: u.has(x, p.a, lambda d: d > p.pivot))))


@template
def both_a_before(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have at least one instance with label '{p.a}' dated before "
            f"{show_date(p.pivot)}", _both(u.where(lambda x: u.has(x, p.a, lambda d: d < p.pivot))))


@template
def both_a_in_month(u: Users, p: Params) -> tuple[str, set[Pair]]:
    def in_month(d: date) -> bool:
        return (d.year, d.month) == p.month

    return (f"both users have at least one instance with label '{p.a}' dated in "
            f"{month_name(p.month)}", _both(u.where(lambda x: u.has(x, p.a, in_month))))


@template
def both_a_in_year(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have at least one instance with label '{p.a}' dated in {p.year}",
            _both(u.where(lambda x: u.has(x, p.a, lambda d: d.year == p.year))))


@template
def cross_a_b(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"one user has at least one instance with label '{p.a}' and the other has at least "
            f"one instance with label '{p.b}'",
            _cross(u.where(lambda x: u.has(x, p.a)), u.where(lambda x: u.has(x, p.b))))


@template
def cross_a_none(u: Users, p: Params) -> tuple[str, set[Pair]]:
    active = u.where(lambda x: u.total(x) >= p.k)
    return (f"both users have at least {p.k} instances in total, one of them has at least one "
            f"instance with label '{p.a}' and the other has none",
            _cross([x for x in active if u.has(x, p.a)], [x for x in active if not u.has(x, p.a)]))


@template
def cross_after_before(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"one user has an instance with label '{p.a}' dated after {show_date(p.pivot)} and "
            f"the other has an instance with label '{p.b}' dated before that date",
            _cross(u.where(lambda x: u.has(x, p.a, lambda d: d > p.pivot)),
                   u.where(lambda x: u.has(x, p.b, lambda d: d < p.pivot))))


@template
def same_count_a(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have the same number of instances with label '{p.a}', and that number "
            "is at least 2", _grouped({x: [u.count(x, p.a)] for x in u.where(
                lambda x: u.count(x, p.a) >= 2)}))


@template
def both_more_a_than_b(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have more instances with label '{p.a}' than with label '{p.b}'",
            _both(u.where(lambda x: u.count(x, p.a) > u.count(x, p.b))))


@template
def both_first_is_a(u: Users, p: Params) -> tuple[str, set[Pair]]:
    def first_is_a(x: str) -> bool:
        first = min(d for d, _ in u.lines[x])
        return all(lb == p.a for d, lb in u.lines[x] if d == first)

    return (f"both users appear at least twice, and every instance on each user's earliest date "
            f"has label '{p.a}'", _both(u.where(lambda x: u.total(x) >= 2 and first_is_a(x))))


@template
def same_month_a(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"the two users have instances with label '{p.a}' in the same month (the same month "
            "of the same year)", _grouped(
                {x: {(d.year, d.month) for d, lb in u.lines[x] if lb == p.a} for x in u.lines}))


@template
def same_total_with_a(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have at least one instance with label '{p.a}' and the same total "
            "number of instances", _grouped({x: [u.total(x)] for x in u.where(
                lambda x: u.has(x, p.a))}))


@template
def both_neither_ab(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"both users have at least {p.k} instances in total and none with label '{p.a}' or "
            f"label '{p.b}'", _both(u.where(
                lambda x: u.total(x) >= p.k and not (u.has(x, p.a) or u.has(x, p.b)))))


@template
def cross_year(u: Users, p: Params) -> tuple[str, set[Pair]]:
    return (f"one user has an instance with label '{p.a}' dated in {p.year} and the other has "
            f"an instance with label '{p.b}' dated in {p.year}",
            _cross(u.where(lambda x: u.has(x, p.a, lambda d: d.year == p.year)),
                   u.where(lambda x: u.has(x, p.b, lambda d: d.year == p.year))))


def _params(rng: random.Random, window: Window) -> Params:
    a, b = rng.sample(LABELS, 2)
    days = sorted(r.day for r in window.instances)
    pivot = days[int(rng.uniform(0.15, 0.75) * (len(days) - 1))]
    day = rng.choice(days)
    return Params(a, b, pivot, (day.year, day.month), rng.choice(days).year, rng.choice((2, 3)))


def window_tasks(window: Window, templates: Sequence[str] | None = None) -> list[Task]:
    """One task per template; parameters are redrawn (up to 20 times) until some pair qualifies."""
    users = Users(window)
    base = {"window_id": window.id, "target_tokens": window.target_tokens,
            "context_chars": len(window.text), "approx_tokens": approx_tokens(window.text),
            "n_instances": len(window.instances)}
    tasks = []
    for name, solve in TEMPLATES.items():
        if templates is not None and name not in templates:
            continue
        rng = random.Random(f"{window.id}:pairs:{name}")
        for _ in range(20):
            params = _params(rng, window)
            condition, gold = solve(users, params)
            if gold:
                break
        question = (f"In the above data, list all pairs of user IDs where {condition}. "
                    f"{ANSWER_FORMAT}")
        tasks.append(Task(
            id=f"{window.id}-pairs-{name}", benchmark=BENCHMARK, context=window.text,
            question=question, gold=[f"({u}, {v})" for u, v in sorted(gold, key=_int_pair)],
            meta={**base, "family": name, "n_gold": len(gold),
                  "params": {"label": params.a, "label_b": params.b, "k": params.k,
                             "date": params.pivot.isoformat(), "month": month_key(params.month),
                             "year": params.year}},
        ))
    return tasks


def _int_pair(pair: Pair) -> tuple[int, int]:
    return int(pair[0]), int(pair[1])


def generate(
    n: int = 1,
    seed: int = 0,
    lengths: Sequence[int] = DEFAULT_TOKENS,
    templates: Sequence[str] | None = None,
) -> list[Task]:
    """`n` windows per target length (tokens), each with one task per pair template."""
    return [task for tokens in lengths for i in range(n)
            for task in window_tasks(build_window(tokens, seed, i), templates)]


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
