"""Code-only baselines: what a program that reads the context with string and regex code alone,
and never asks a model, scores on each benchmark.

OOLONG: every line is parsed exactly (date, user, text), and every question template is solved
exactly from those fields, so questions about users and dates come out right. The one thing code
cannot do is classify a line's question into a label; the baseline puts a uniform random guess
(seeded by the window text, so the run is deterministic) where each label would go. With the true
labels in that place the same program reproduces every gold answer (`answer_oolong(task,
labels=...)`), so what the guess costs is exactly what classifying the lines is worth.

S-NIAH: a regex finds the needle sentence for the question's key, so code alone solves it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime

from fleet_rlm.bench import oolong, sniah
from fleet_rlm.bench.oolong import (
    BEFORE_AFTER,
    COMPARISONS,
    LABELS,
    Instance,
    Stats,
    Window,
    month_name,
    ranked,
)
from fleet_rlm.bench.tasks import MONTHS, Task, sha256

# Questions whose answer needs no label: code alone can get them right.
LABEL_FREE = frozenset({"most_frequent_user", "second_most_frequent_user", "users_exactly_n",
                        "most_frequent_date", "dates_exactly_n"})
BENCHMARKS = (sniah.BENCHMARK, oolong.BENCHMARK)

_LINE = re.compile(r"^Date: (\w{3} \d{2}, \d{4}) \|\| User: (\d+) \|\| Instance: (.*)$", re.M)
_LABEL = r"'([^']+)'"
_MONTH = r"(" + "|".join(MONTHS) + r") (\d{4})"
_DAY = r"(\w{3} \d{2}, \d{4})"
_PREFIX = r"In the above data, "

Labeler = Callable[[list[tuple[date, str, str]]], list[str]]


def parse_lines(context: str) -> list[tuple[date, str, str]]:
    """(date, user, text) of every data line, in order."""
    return [(datetime.strptime(d, "%b %d, %Y").date(), user, text)
            for d, user, text in _LINE.findall(context)]


def guess_labels(lines: list[tuple[date, str, str]]) -> list[str]:
    """A uniform random label per line, seeded by the lines themselves: chance, reproducibly."""
    rng = random.Random(sha256("\n".join(text for _, _, text in lines)))
    return [rng.choice(LABELS) for _ in lines]


def _top(counts: dict, rank: int = 0) -> object:
    """The key at `rank` by descending count; ties broken by key, so a guess is always made."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return items[min(rank, len(items) - 1)][0]


def _sign(a: int, total_a: int, b: int, total_b: int) -> int:
    sa, sb = a / max(total_a, 1), b / max(total_b, 1)
    return (sa > sb) - (sa < sb)


def _month(name: str, year: str) -> tuple[int, int]:
    return int(year), MONTHS.index(name) + 1


def _exactly(values: Sequence[int], n: int) -> int:
    return sum(v == n for v in values)


def _solvers(s: Stats) -> list[tuple[str, str, Callable[..., str]]]:
    """(family, question regex, answer from the regex groups) for every OOLONG template."""
    rows = s.window.instances

    def per_user(label: str) -> dict[str, int]:
        return {u: s.user_label[u, label] for u in s.users}

    def in_month(m: tuple[int, int]) -> dict[str, int]:
        return {lb: s.month_label[m, lb] for lb in LABELS}

    def beats(a: str, b: str) -> list[tuple[int, int]]:
        return [m for m in s.months if s.month_label[m, a] > s.month_label[m, b]]

    def before_after(label: str, shown: str) -> str:
        pivot = datetime.strptime(shown, "%b %d, %Y").date()
        before = [r.label for r in rows if r.day < pivot]
        rest = [r.label for r in rows if r.day >= pivot]
        sign = _sign(before.count(label), len(before), rest.count(label), len(rest))
        return f"Answer: {BEFORE_AFTER[sign]}"

    def after(shown: str, label: str) -> str:
        pivot = datetime.strptime(shown, "%b %d, %Y").date()
        return f"Answer: {sum(r.label == label and r.day > pivot for r in rows)}"

    def first_beats(a: str, b: str) -> str:
        months = beats(a, b)
        return f"Answer: {month_name(months[0])}" if months else "Answer: never"

    def months_top(label: str) -> str:
        return f"Answer: {sum(ranked(in_month(m), 0) == label for m in s.months)}"

    def user_more(u1: str, u2: str, label: str) -> str:
        return f"User: {u1 if s.user_label[u1, label] >= s.user_label[u2, label] else u2}"

    return [
        ("most_common_label", r"which of the labels is the most common\?",
         lambda: f"Label: {_top(s.labels)}"),
        ("second_most_common_label", r"which of the labels is the second most common\?",
         lambda: f"Label: {_top(s.labels, 1)}"),
        ("least_common_label", r"which of the labels is the least common\?",
         lambda: f"Label: {_top({k: -v for k, v in s.labels.items()})}"),
        ("label_comparison", rf"is label {_LABEL} more common, less common, or the same "
         rf"frequency as label {_LABEL}\?",
         lambda a, b: f"Answer: {a} is {COMPARISONS[_sign(s.labels[a], 1, s.labels[b], 1)]} {b}"),
        ("label_count", rf"how many data points should be classified as label {_LABEL}\?",
         lambda label: f"Answer: {s.labels[label]}"),
        ("most_frequent_user", r"which user ID appears the most often\?",
         lambda: f"User: {_top(s.users)}"),
        ("second_most_frequent_user", r"which user ID appears the second most often\?",
         lambda: f"User: {_top(s.users, 1)}"),
        ("users_exactly_n", r"how many user IDs appear exactly (\d+) times\?",
         lambda n: f"Answer: {_exactly(list(s.users.values()), int(n))}"),
        ("top_user_for_label", rf"which user ID has the most instances that should be "
         rf"classified as label {_LABEL}\?", lambda label: f"User: {_top(per_user(label))}"),
        ("users_exactly_n_label", rf"how many user IDs have exactly (\d+) instances that should "
         rf"be classified as label {_LABEL}\?",
         lambda n, label: f"Answer: {_exactly(list(per_user(label).values()), int(n))}"),
        ("user_label_comparison", rf"which of user (\d+) and user (\d+) has more instances that "
         rf"should be classified as label {_LABEL}\?", user_more),
        ("user_label_count", rf"considering only the lines from user (\d+), how many instances "
         rf"should be classified as label {_LABEL}\?",
         lambda user, label: f"Answer: {s.user_label[user, label]}"),
        ("most_frequent_date", r"which date appears the most often\?",
         lambda: f"Date: {_top(s.dates).strftime('%m/%d/%Y')}"),
        ("dates_exactly_n", r"how many distinct dates appear exactly (\d+) times\?",
         lambda n: f"Answer: {_exactly(list(s.dates.values()), int(n))}"),
        ("label_count_in_month", rf"how many instances dated in {_MONTH} should be classified "
         rf"as label {_LABEL}\?",
         lambda name, year, label: f"Answer: {s.month_label[_month(name, year), label]}"),
        ("most_common_label_in_month", rf"considering only instances dated in {_MONTH}, which of "
         r"the labels is the most common\?",
         lambda name, year: f"Label: {_top(in_month(_month(name, year)))}"),
        ("label_count_after_date", rf"how many instances dated after {_DAY} \(not counting that "
         rf"date\) should be classified as label {_LABEL}\?", after),
        ("before_after_comparison", rf"was label {_LABEL} more common, less common, or the same "
         rf"frequency among instances dated before {_DAY} than", before_after),
        ("first_month_label_beats", rf"in which month did instances of label {_LABEL} first "
         rf"outnumber instances of label {_LABEL}\?", first_beats),
        ("months_label_beats", r"in how many months \(each month of each year counted "
         rf"separately\) do instances of label {_LABEL} outnumber instances of label "
         rf"{_LABEL}\?", lambda a, b: f"Answer: {len(beats(a, b))}"),
        ("months_label_top", r"in how many months \(each month of each year counted "
         rf"separately\) is label {_LABEL} strictly the most common label\?", months_top),
    ]


def answer_oolong(task: Task, labels: Labeler = guess_labels) -> str:
    """Answer an OOLONG question from the context and question text, with `labels` standing in
    for classifying the lines (the default guesses at random)."""
    lines = parse_lines(task.context)
    rows = tuple(Instance(day, user, text, label)
                 for (day, user, text), label in zip(lines, labels(lines), strict=True))
    stats = Stats(Window("code-only", 0, 0, rows, task.context))
    for _, pattern, solve in _solvers(stats):
        if found := re.match(_PREFIX + pattern, task.question):
            return solve(*found.groups())
    return "Answer: unknown"


def answer_sniah(task: Task) -> str:
    """The value in the needle sentence for the key the question names."""
    kind_key = re.search(r"special magic (\w+) for (\S+) mentioned", task.question)
    if kind_key is None:
        return ""
    kind, key = kind_key.groups()
    needle = re.search(rf"special magic {kind}s for {re.escape(key)} is: (\S+?)\.(?:\s|$)",
                       task.context)
    return needle[1] if needle else ""


def answer(task: Task) -> str:
    """The code-only answer to a task of a benchmark that has one."""
    if task.benchmark == oolong.BENCHMARK:
        return answer_oolong(task)
    if task.benchmark == sniah.BENCHMARK:
        return answer_sniah(task)
    raise ValueError(f"no code-only baseline for {task.benchmark!r}; "
                     f"there is one for: {', '.join(BENCHMARKS)}")


def needs_labels(family: str) -> bool:
    return family not in LABEL_FREE
