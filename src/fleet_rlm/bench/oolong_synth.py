"""OOLONG-synth trec_coarse windows and questions, built the way the official generator builds them.

Read from the OOLONG-synth construction code (`src/data_gen/oolong-synth/`: `datasets_loader.py`,
`example_constructor.py`, `task_constructors.py`, `EvalContextWindow.py`, `utils.py`). Those
files are not on the public branches of abertsch72/oolong; we read the copy vendored in
brycesandlund/infinite-context (`tasks/oolong/vendored_synth/`), which says it is verbatim apart
from two marked changes, and follow upstream where those differ. What this module matches:

- examples per window: int((0.95 * tokens - 168 - 250) // 39) (prompt, question and per-line
  token estimates for TREC); 131,072 tokens gives 3,182 lines;
- labels in shuffled order; a softmax over randint(1, 30) ** (1 / T), T drawn from 2..6; counts
  rounded (half to even), the first label absorbing the rounding; per label a random draw
  without replacement from that label's questions (the pool repeated when too small);
  the draw shuffled; user IDs with a common pool of max(int(0.1 N), 1) five-digit IDs taken with
  probability 0.8, else any other ID; dates uniform over 2022-02-16 .. 2025-06-21;
- the text: the opening and closing descriptions (labels listed in the shuffled order), then
  `Date: <Mon DD, YYYY> || User: <id> || Instance: <question>` lines ordered by sorting on the
  question and permuting with NumPy's default generator seeded 42 (what `Dataset.shuffle(seed=42)`
  does);
- every question of the official sets and their wording: counting (most / least common label,
  relative frequency of each label pair, count of each label), the user group (most / second most
  represented user, counting restricted to a one-user subset, the user with most instances of a
  label, which of two users has more of a label), the timeline group (most / second most
  represented date, dates represented exactly N times among the 50 most frequent, a label before vs
  after a date, counting restricted to a month of any year and to a date range, the month a label
  first occurs more often than another, months one label beats another, months a label is the
  single most frequent), with the official definitions, margins and answer forms.

Where this differs, and why:
- random draws use Python's `random` seeded per window, not the same interleaving of Python,
  NumPy, torch and Hugging Face `datasets` generators, so a window is built by the same rules
  but is not byte-identical to a released one (use `--data` with the released rows for that);
- the official code iterates Python sets of labels for the timeline questions (an order that
  depends on PYTHONHASHSEED); we iterate labels in sorted order;
- the order in which questions are assembled into a released row set (`generate_dataset.py`) and
  the 25-per-window subsample are not published; `select` takes questions round-robin over task
  types so a small run covers them all.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

import numpy as np

from fleet_rlm.bench.tasks import MONTHS, data_text

LABEL_ORDER = ("abbreviation", "entity", "description and abstract concept", "human being",
               "location", "numeric value")  # the loader's label_map order
FIRST_DAY, LAST_DAY = date(2022, 2, 16), date(2025, 6, 21)


def examples_in_context(tokens: int) -> int:
    return int((tokens * 0.95 - 168 - 250) // 39)


@dataclass(frozen=True)
class Row:
    day: date
    user: int
    text: str
    label: str

    @property
    def shown_date(self) -> str:
        return self.day.strftime("%b %d, %Y")


@dataclass(frozen=True)
class SynthWindow:
    id: str
    context_len: int
    temperature: int
    labels: tuple[str, ...]  # the shuffled label order, as the description lists them
    true_counts: tuple[tuple[str, int], ...]
    rows: tuple[Row, ...]  # in generation order (the questions' view)
    text: str


@cache
def trec_rows() -> tuple[tuple[str, str], ...]:
    """(question, label) for every line of the shipped file; OOLONG reads no other field."""
    rows = (json.loads(line) for line in data_text("trec_coarse_validated.jsonl").splitlines())
    return tuple((r["input"], r["label"]) for r in rows)


@cache
def _pools() -> dict[str, list[str]]:
    pools: dict[str, list[str]] = defaultdict(list)
    for text, label in trec_rows():
        pools[label].append(text)
    return dict(pools)


def _description(n: int, labels: Sequence[str], intro: bool) -> str:
    start = "The following" if intro else "Recall: the preceding"
    names = ", ".join(f"'{label}'" for label in labels)
    return (f"{start} lines contain {n} general-knowledge questions, one per line. Each question "
            f"has an answer that can be described as one of {len(labels)} categories: {names}."
            f"\n\nYou will be asked to answer questions about the aggregate label statistics "
            f"across all {n} examples in this dataset. Do not try to guess, estimate, or "
            "approximate the result. Calculate the exact answer given these datapoints.\n\n")


def build(context_len: int, seed: int = 0, index: int = 0) -> SynthWindow:
    """One window of `context_len` tokens; deterministic in (context_len, seed, index)."""
    if context_len < 1024:
        raise ValueError(f"OOLONG-synth windows start at 1,024 tokens, not {context_len}")
    rng = random.Random(f"oolong-synth:{context_len}:{seed}:{index}")
    temperature = rng.randint(2, 6)
    n = examples_in_context(context_len)
    labels = list(LABEL_ORDER)
    rng.shuffle(labels)
    raw = [rng.randint(1, 30) ** (1 / temperature) for _ in labels]
    exps = [math.exp(x - max(raw)) for x in raw]
    counts = [round(e / sum(exps) * n) for e in exps]
    counts[0] -= sum(counts) - n
    drawn: list[tuple[str, str]] = []
    for label, k in zip(labels, counts, strict=True):
        pool = _pools()[label]
        pool = pool * math.ceil(k / len(pool)) if k > len(pool) else pool
        order = list(range(len(pool)))
        rng.shuffle(order)
        drawn += [(pool[i], label) for i in order[:k]]
    rng.shuffle(drawn)
    common = rng.sample(range(10_000, 100_000), max(int(len(drawn) * 0.1), 1))
    uncommon = sorted(set(range(10_000, 100_000)) - set(common))
    users = [rng.choice(common) if rng.random() < 0.8 else rng.choice(uncommon) for _ in drawn]
    span = (LAST_DAY - FIRST_DAY).days + 1
    days = [FIRST_DAY + timedelta(days=rng.randint(0, span - 1)) for _ in drawn]
    rows = tuple(Row(d, u, text, label)
                 for (text, label), u, d in zip(drawn, users, days, strict=True))
    by_text = sorted(rows, key=lambda r: r.text)
    shown = [by_text[i] for i in np.random.default_rng(42).permutation(len(by_text))]
    lines = "".join(f"Date: {r.shown_date} || User: {r.user} || Instance: "
                    f"{r.text.replace(chr(10), ' ')}\n" for r in shown)
    text = (_description(len(rows), labels, True) + lines
            + _description(len(rows), labels, False))
    return SynthWindow(f"oolong-synth-{context_len}-s{seed}-w{index}", context_len, temperature,
                       tuple(labels), tuple(zip(labels, counts, strict=True)), rows, text)


# -- questions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    task_group: str
    task: str  # TASK_TYPE.<name>
    answer_type: str  # ANSWER_TYPE.<name>
    question: str
    answer: list  # the gold list; its str() is the stored form
    input_subset: bool = False


def counting(counts: dict[str, int], prefix: str = "In the above data,",
             group: str = "counting", subset: bool = False) -> list[Question]:
    """The official counting questions over label counts (in the dict's order)."""
    out: list[Question] = []
    names, total = ", ".join(counts), sum(counts.values())

    def q(task: str, kind: str, text: str, answer: list) -> None:
        out.append(Question(group, f"TASK_TYPE.{task}", f"ANSWER_TYPE.{kind}",
                            text.replace("In the above data,", prefix, 1), answer, subset))

    def closest(key: str) -> float:
        share = counts[key] / total
        return min([abs(share - counts[k] / total) for k in counts if k != key], default=1)

    top = max(counts.values())
    tops = [k for k in counts if counts[k] == top]
    if len(tops) == 1 and closest(tops[0]) > 0.02:
        q("MOST_FREQ", "LABEL", "In the above data, which of the labels is the most common? Give "
          f"your final answer in the form 'Label: answer' where answer is one of the labels: "
          f"{names}.", tops)
    low = min(counts.values())
    q("LEAST_FREQ", "LABEL", "In the above data, which of the labels is the least common? Give "
      f"your final answer in the form 'Label: answer' where answer is one of the labels: {names}.",
      [k for k in counts if counts[k] == low])
    for a, b in itertools.combinations(counts, 2):
        diff = counts[a] / total - counts[b] / total
        if abs(diff) > 0.02 or diff == 0:
            word = ("more common than" if counts[a] > counts[b] else "less common than"
                    if counts[a] < counts[b] else "same frequency as")
            q("RELATIVE_FREQ", "COMPARISON", f"In the above data, is label '{a}' more common, "
              f"less common, or the same frequency as label '{b}'? Give your final answer in the "
              f"form 'Answer: {a} is [X] {b}', where [X] is 'more common than', 'less common "
              "than', or 'same frequency as'.", [word])
    for label in counts:
        q("NUMERIC_ONE_CLASS", "NUMERIC", "In the above data, how many data points should be "
          f"classified as label '{label}'? Give your final answer in the form 'Answer: number'.",
          [counts[label]])
    return out


def _ranked(items: Iterable) -> list[tuple]:
    """(key, count) by descending count; ties keep first-seen order (a stable sort)."""
    return sorted(Counter(items).items(), key=lambda kv: kv[1], reverse=True)


_USER = "Give your final answer in the form 'User: [X]', where [X] is the user ID."


def user_questions(w: SynthWindow, rng: random.Random) -> list[Question]:
    out: list[Question] = []
    top = _ranked(r.user for r in w.rows)[:50]

    def q(task: str, text: str, answer: list, subset: bool = False) -> None:
        out.append(Question("user", f"TASK_TYPE.{task}", "ANSWER_TYPE.USER", text, answer, subset))

    if len(top) > 1 and top[0][1] > top[1][1]:
        q("MOST_FREQ", f"In the above data, which user is represented most often? {_USER}",
          [top[0][0]])
        if len(top) == 2 or top[1][1] > top[2][1]:
            q("SECOND_MOST_FREQ", "In the above data, which user is represented the second most "
              f"often? {_USER}", [top[1][0]])
    # Upstream draws min(1, ...) users: the subset is always one user.
    chosen = rng.sample(top, 1)[0][0]
    subset_counts = dict(Counter(r.label for r in w.rows if r.user == chosen))
    out += counting(subset_counts, "For the following question, only consider the subset of "
                    f"instances that are associated with user IDs {chosen}. Among instances "
                    "associated with these users,", "user", True)
    for label in dict.fromkeys(r.label for r in w.rows):
        best = _ranked(r.user for r in w.rows if r.label == label)[:10]
        if len(best) > 1 and best[0][1] > best[1][1]:
            q("MOST_FREQ", "In the above data, which user has the most instances with the label "
              f"{label}? {_USER}", [best[0][0]])
        end = min(9, len(best) - 1)
        middle = 5 if end == 9 else end // 2
        for _ in range(10):
            i, j = rng.randint(0, middle), rng.randint(middle, end)
            if best[i][1] > best[j][1] + 1:
                q("RELATIVE_FREQ", "In the above data, which user has more instances with the "
                  f"label {label}: User {best[i][0]} or User {best[j][0]}? {_USER}", [best[i][0]])
                break
    return out


_DATE = ("Give your final answer in the form 'Date: [X]', where [X] is the date in the format "
         "MM/DD/YYYY.")


def timeline_questions(w: SynthWindow, rng: random.Random) -> list[Question]:
    out: list[Question] = []
    rows = list(w.rows)

    def q(task: str, kind: str, text: str, answer: list) -> None:
        out.append(Question("timeline", f"TASK_TYPE.{task}", f"ANSWER_TYPE.{kind}", text, answer))

    dates = _ranked(r.day for r in rows)[:50]  # upstream keeps the 50 most frequent dates
    if dates[0][1] > dates[1][1]:
        q("MOST_FREQ", "DATE", f"In the above data, which date is represented most often? {_DATE}",
          [dates[0][0]])
        if dates[1][1] > dates[2][1]:
            q("SECOND_MOST_FREQ", "DATE", "In the above data, which date is represented the "
              f"second most often? {_DATE}", [dates[1][0]])
    n = dates[3][1]
    q("REPRESENTED_N_TIMES", "NUMERIC", f"In the above data, how many dates are represented "
      f"exactly {n} times? Give your final answer in the form 'Answer: [X]', where [X] is the "
      f"number of dates represented exactly {n} times.", [sum(c == n for _, c in dates)])
    by_date = sorted(rows, key=lambda r: r.day)
    out += _before_after(by_date, rng)
    month = rng.randint(1, 12)
    for _ in range(20):
        if any(r.day.month == month for r in rows):
            break
        month = rng.randint(1, 12)
    name = MONTHS[month - 1]
    out += counting(dict(Counter(r.label for r in rows if r.day.month == month)),
                    "For the following question, only consider the subset of instances that "
                    f"occur in {name} of any year. Among instances occuring in {name},",
                    "timeline", True)
    out += _date_range(by_date, rng)
    out += _monthly(by_date)
    return out


def _before_after(by_date: list[Row], rng: random.Random) -> list[Question]:
    out: list[Question] = []
    n = len(by_date)
    for _ in range(10):
        start = rng.randint(int(n * 0.15), int(n * 0.75))
        start -= 2 if start == n - 1 else 0
        pivot = by_date[start].day
        lo = start
        while by_date[lo - 1].day == pivot:
            lo -= 1
        hi = start + 1
        while by_date[hi].day == pivot:
            hi += 1
        before, after = [r.label for r in by_date[:lo]], [r.label for r in by_date[hi:]]
        keys = sorted(set(before))
        rng.shuffle(keys)
        asked = False
        for key in keys:
            diff = before.count(key) / len(before) - (after.count(key) / len(after) if after
                                                       else 0.0)
            if abs(diff) > 0.02 or diff == 0:
                answer = ("more common" if diff > 0 else "less common" if diff < 0
                          else "the same frequency")
                out.append(Question(
                    "timeline", "TASK_TYPE.RELATIVE_FREQ", "ANSWER_TYPE.COMPARISON",
                    f"In the above data, was label '{key}' more common, less common, or the same "
                    f"frequency before {pivot}, as compared to after {pivot}? Give your final "
                    f"answer in the form 'Answer: {key} is [X] before {pivot}', where [X] is "
                    "'more common', 'less common', or 'the same frequency'.", [answer]))
                asked = asked or diff != 0
        if asked:
            break
    return out


def _date_range(by_date: list[Row], rng: random.Random) -> list[Question]:
    n = len(by_date)
    start = rng.randint(int(n * 0.1), int(n * 0.5))
    first = by_date[start].shown_date
    while by_date[start - 1].shown_date == first:
        start -= 1
    offset = 10
    if n < 11:
        offset = n // 2
        if start + offset + 2 >= n:
            offset = -1
    if offset <= 2:
        return []
    end = min(rng.randint(start + offset, max(start + offset + 2, int(n * 0.9))), n - 1)
    last = by_date[end].shown_date
    while end < n - 1 and by_date[end + 1].shown_date == last:
        end += 1
    picked = by_date[start:end + 1]
    return counting(dict(Counter(r.label for r in picked)), "For the following question, only "
                    f"consider the subset of instances that occur between {first} and {last}, "
                    "inclusive. Among instances occuring in this date range,", "timeline", True)


def month_shares(by_date: list[Row]) -> dict[tuple[int, int], dict[str, float]]:
    """Per (month, year), in date order: each present label's share of that month."""
    months: dict[tuple[int, int], list[str]] = defaultdict(list)
    for r in by_date:
        months[r.day.month, r.day.year].append(r.label)
    return {m: {k: c / len(ls) for k, c in Counter(ls).items()} for m, ls in months.items()}


def _monthly(by_date: list[Row]) -> list[Question]:
    out: list[Question] = []
    shares = month_shares(by_date)
    labels = sorted({r.label for r in by_date})
    first_month = next(iter(shares))
    for a, b in itertools.permutations(labels, 2):
        # Upstream stops at the first month whatever it finds, so it asks only when the
        # earliest month already qualifies.
        if shares[first_month].get(a, 0.0) > shares[first_month].get(b, 0.0):
            out.append(Question(
                "timeline", "TASK_TYPE.RELATIVE_FREQ", "ANSWER_TYPE.MONTH_YEAR",
                f"In which month did the label '{a} first occur more often than the label '{b}'? "
                "Give your final answer in the form 'Answer: [month] [year]', where [month] is the "
                f"name of the month and [year] is the four-digit year where '{a}' first occured "
                f"more often than '{b}.'",
                [f"{MONTHS[first_month[0] - 1]} {first_month[1]}"]))
    for a, b in itertools.permutations(labels, 2):
        beats = sum(s.get(a, 0.0) > s.get(b, 0.0) for s in shares.values())
        out.append(Question(
            "timeline", "TASK_TYPE.RELATIVE_FREQ", "ANSWER_TYPE.NUMERIC",
            f"For how many months does the label '{a}' occur more frequently than the label "
            f"'{b}'? Disregard months where there is a tie.  Give your final answer in the form "
            f"'Answer: [X]', where [X] is the number of months where '{a}' occurs more often than "
            f"'{b}.'", [beats]))
    for label in labels:
        alone = sum(all(v < s.get(label, 0.0) for k, v in s.items() if k != label)
                    for s in shares.values())
        out.append(Question(
            "timeline", "TASK_TYPE.MOST_FREQ", "ANSWER_TYPE.NUMERIC",
            f"For how many months is the label '{label}' the single most frequently occuring "
            "label? Disregard months where there is a tie for the most common label.  Give your "
            f"final answer in the form 'Answer: [X]', where [X] is the number of months where "
            f"'{label}' is the most common label.", [alone]))
    return out


def questions(w: SynthWindow) -> list[Question]:
    """Every official question for the window, counting, user and timeline groups in turn."""
    rng = random.Random(f"{w.id}:questions")
    return [*counting(dict(w.true_counts)), *user_questions(w, rng), *timeline_questions(w, rng)]
