"""Code-only baselines: what a program that reads the context with string and regex code alone,
and never asks a model, scores on each benchmark.

OOLONG: every line is parsed exactly (date, user, text), and every official question is solved
exactly from those fields, so questions about users and dates come out right. The one thing code
cannot do is classify a line's question into a label; the baseline puts a uniform random guess
(seeded by the window text, so the run is deterministic) where each label would go. With the true
labels in that place the same program reproduces the gold answers (`answer_oolong(task,
labels=...)`; where the official generator breaks a tie by the order it drew the lines, which the
text does not show, it may differ), so what the guess costs is what classifying the lines is worth.

S-NIAH: a regex finds the needle sentence for the question's key, so code alone solves it.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime

from fleet_rlm.bench import oolong, sniah
from fleet_rlm.bench.oolong import LABELS
from fleet_rlm.bench.oolong_synth import Row, month_shares
from fleet_rlm.bench.tasks import MONTHS, Task, sha256

BENCHMARKS = (sniah.BENCHMARK, oolong.BENCHMARK)
# Question types whose answer needs no label: code alone can get them right.
LABEL_FREE = frozenset({"most_freq/date", "second_most_freq/date", "represented_n_times/numeric"})

_LINE = re.compile(r"^Date: (\w{3} \d{2}, \d{4}) \|\| User: (\d+) \|\| Instance: (.*)$", re.M)
_CATEGORIES = re.compile(r"described as one of \d+ categories: (.*)\.\n")

Labeler = Callable[[list[tuple[date, str, str]]], list[str]]


def parse_lines(context: str) -> list[tuple[date, str, str]]:
    """(date, user, text) of every data line, in order."""
    return [(datetime.strptime(d, "%b %d, %Y").date(), user, text)
            for d, user, text in _LINE.findall(context)]


def guess_labels(lines: list[tuple[date, str, str]]) -> list[str]:
    """A uniform random label per line, seeded by the lines themselves: chance, reproducibly."""
    rng = random.Random(sha256("\n".join(text for _, _, text in lines)))
    return [rng.choice(LABELS) for _ in lines]


def _ranked(items) -> list[tuple]:
    return sorted(Counter(items).items(), key=lambda kv: kv[1], reverse=True)


def _subset(question: str, rows: list[Row]) -> tuple[str, list[Row] | None]:
    """The question without its subset prefix, and the rows that prefix keeps (None: all)."""
    if m := re.match(r"For the following question, only consider the subset of instances that are "
                     r"associated with user IDs (\d+)\. Among instances associated with these "
                     r"users, ", question):
        return question[m.end():], [r for r in rows if str(r.user) == m[1]]
    if m := re.match(r"For the following question, only consider the subset of instances that "
                     r"occur in (\w+) of any year\. Among instances occuring in \w+, ", question):
        month = MONTHS.index(m[1]) + 1
        return question[m.end():], [r for r in rows if r.day.month == month]
    if m := re.match(r"For the following question, only consider the subset of instances that "
                     r"occur between (.+?) and (.+?), inclusive\. Among instances occuring in this "
                     r"date range, ", question):
        lo, hi = (datetime.strptime(d, "%b %d, %Y").date() for d in m.groups())
        return question[m.end():], [r for r in rows if lo <= r.day <= hi]
    return question.removeprefix("In the above data, "), None


def _solve(question: str, rows: list[Row], order: list[str]) -> str:  # noqa: C901 - one table
    q, subset = _subset(question, rows)
    rows = rows if subset is None else subset
    counts = Counter(r.label for r in rows)
    # The whole window lists every label in its description's order; a subset, those it has.
    labels = order if subset is None else list(counts)
    if q.startswith("which of the labels is the most common?"):
        return f"Label: {max(labels, key=lambda lb: counts[lb])}"
    if q.startswith("which of the labels is the least common?"):
        return f"Label: {min(labels, key=lambda lb: counts[lb])}"
    if m := re.match(r"is label '(.+?)' more common, less common, or the same frequency as label "
                     r"'(.+?)'\?", q):
        a, b = counts[m[1]], counts[m[2]]
        word = "more common than" if a > b else "less common than" if a < b else "same frequency as"
        return f"Answer: {m[1]} is {word} {m[2]}"
    if m := re.match(r"how many data points should be classified as label '(.+?)'\?", q):
        return f"Answer: {counts[m[1]]}"
    if m := re.match(r"which user is represented (the second )?most often\?", q):
        return f"User: {_ranked(r.user for r in rows)[1 if m[1] else 0][0]}"
    if m := re.match(r"which user has the most instances with the label (.+?)\? ", q):
        return f"User: {_ranked(r.user for r in rows if r.label == m[1])[0][0]}"
    if m := re.match(r"which user has more instances with the label (.+?): User (\d+) or User "
                     r"(\d+)\?", q):
        per = Counter(str(r.user) for r in rows if r.label == m[1])
        return f"User: {m[2] if per[m[2]] >= per[m[3]] else m[3]}"
    if m := re.match(r"which date is represented (the second )?most often\?", q):
        return f"Date: {_ranked(r.day for r in rows)[1 if m[1] else 0][0]:%m/%d/%Y}"
    if m := re.match(r"how many dates are represented exactly (\d+) times\?", q):
        return f"Answer: {sum(c == int(m[1]) for _, c in _ranked(r.day for r in rows)[:50])}"
    if m := re.match(r"was label '(.+?)' more common, less common, or the same frequency before "
                     r"(\S+), as compared to after", q):
        pivot = date.fromisoformat(m[2])
        before = [r.label for r in rows if r.day < pivot]
        after = [r.label for r in rows if r.day > pivot]
        diff = before.count(m[1]) / max(len(before), 1) - after.count(m[1]) / max(len(after), 1)
        return "Answer: " + ("more common" if diff > 0 else "less common" if diff < 0
                             else "the same frequency")
    shares = month_shares(sorted(rows, key=lambda r: r.day))
    if m := re.match(r"In which month did the label '(.+?) first occur more often than the label "
                     r"'(.+?)'\?", question):
        month = next((k for k, s in shares.items() if s.get(m[1], 0) > s.get(m[2], 0)), None)
        return "Answer: unknown" if month is None else f"Answer: {MONTHS[month[0] - 1]} {month[1]}"
    if m := re.match(r"For how many months does the label '(.+?)' occur more frequently than the "
                     r"label '(.+?)'\?", question):
        return f"Answer: {sum(s.get(m[1], 0) > s.get(m[2], 0) for s in shares.values())}"
    if m := re.match(r"For how many months is the label '(.+?)' the single most", question):
        return "Answer: " + str(sum(all(v < s.get(m[1], 0) for k, v in s.items() if k != m[1])
                                    for s in shares.values()))
    return "Answer: unknown"


def answer_oolong(task: Task, labels: Labeler = guess_labels) -> str:
    """Answer an OOLONG question from the context and question text, with `labels` standing in
    for classifying the lines (the default guesses at random)."""
    lines = parse_lines(task.context)
    rows = [Row(day, int(user), text, label)
            for (day, user, text), label in zip(lines, labels(lines), strict=True)]
    listed = _CATEGORIES.search(task.context)
    order = re.findall(r"'([^']+)'", listed[1]) if listed else list(LABELS)
    return _solve(task.question, rows, order)


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
