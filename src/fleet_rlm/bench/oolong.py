"""OOLONG trec_coarse: context windows, aggregation questions, the scorer and an official loader.

Windows follow the OOLONG-synth construction (Bertsch et al. 2025, "Oolong: Evaluating Long Context
Reasoning and Aggregation Capabilities", arXiv:2511.02817): a softmax-skewed label distribution,
questions sampled per label, skewed user IDs, uniform dates, and one unlabeled line per instance,
`Date: <Mon DD, YYYY> || User: <id> || Instance: <question>`. Gold answers are computed from the
window. Windows are sized at 4 characters a token rather than OOLONG's 39 tokens a line, so a
target length means the same thing here as in the S-NIAH grid.

Each task keeps its gold answer in the dataset's stored form (`meta["answer"]`, e.g. `[23]`) with
the dataset's `answer_type`, and is scored by the official OOLONG rule unless the lenient one is
asked for (`oolong_score.py`).

Data: `data/trec_coarse_validated.jsonl` is OOLONG-synth's validated trec_coarse split
(abertsch72/oolong, MIT, Copyright (c) 2025 Amanda Bertsch). Its questions come from the TREC
question-classification set (Li & Roth 2002, "Learning Question Classifiers"). Source, checksum and
licence notes are in `data/PROVENANCE.md`; use the data for research, with that attribution.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any

from fleet_rlm.bench.oolong_score import Scorer, answer_type, readable_gold, score_answer
from fleet_rlm.bench.tasks import (
    CHARS_PER_TOKEN,
    MONTHS,
    Task,
    approx_tokens,
    data_text,
    read_records,
)

BENCHMARK = "oolong"
LABELS: tuple[str, ...] = ("description and abstract concept", "entity", "human being",
                           "numeric value", "location", "abbreviation")
DEFAULT_TOKENS: tuple[int, ...] = (32_768, 131_072)
FIRST_DAY, LAST_DAY = date(2022, 2, 16), date(2025, 6, 21)
COMPARISONS = {1: "more common than", -1: "less common than", 0: "same frequency as"}
BEFORE_AFTER = {1: "more common", -1: "less common", 0: "the same frequency"}

Month = tuple[int, int]  # (year, month)
Question = tuple[str, str, str, dict[str, Any]]  # question, gold, answer_type, params


@dataclass(frozen=True)
class Instance:
    day: date
    user: str
    text: str
    label: str


@dataclass(frozen=True)
class Window:
    id: str
    target_tokens: int
    temperature: int
    instances: tuple[Instance, ...]  # in rendered order
    text: str


@cache
def trec_rows() -> tuple[tuple[str, str], ...]:
    """(question, label) for every line of the shipped file; OOLONG reads no other field."""
    rows = (json.loads(line) for line in data_text("trec_coarse_validated.jsonl").splitlines())
    return tuple((r["input"], r["label"]) for r in rows)


def oolong_instance_count(tokens: int) -> int:
    """OOLONG's own line count for a window (overhead 168 + 250 tokens, 39 tokens a line)."""
    return max(1, math.floor((0.95 * tokens - 168 - 250) / 39))


def show_date(d: date) -> str:
    return f"{MONTHS[d.month - 1][:3]} {d.day:02d}, {d.year}"


def month_name(m: Month) -> str:
    return f"{MONTHS[m[1] - 1]} {m[0]}"


def month_key(m: Month) -> str:
    return f"{m[0]:04d}-{m[1]:02d}"


def _description(n: int, recall: bool) -> str:
    lead = "Recall: the preceding" if recall else "The following"
    names = ", ".join(f"'{label}'" for label in LABELS)
    return (
        f"{lead} lines contain {n} general-knowledge questions, one per line, each with a date and "
        f"a user ID. The answer to each question falls into exactly one of {len(LABELS)} "
        f"categories: {names}. The category of each question is not shown. Questions will ask "
        f"about statistics of these categories over all {n} lines; compute the exact answer "
        "rather than guessing or estimating."
    )


def _label_counts(rng: random.Random, n: int) -> tuple[list[tuple[str, int]], int]:
    labels = rng.sample(LABELS, len(LABELS))
    temperature = rng.randint(2, 6)
    raw = [rng.randint(1, 30) ** (1 / temperature) for _ in labels]
    exps = [math.exp(x - max(raw)) for x in raw]
    counts = [round(e / sum(exps) * n) for e in exps]
    counts[0] += n - sum(counts)  # the first label absorbs rounding, as upstream
    while counts[0] < 0:  # only reachable for tiny n
        big = max(range(1, len(counts)), key=counts.__getitem__)
        counts[0], counts[big] = counts[0] + 1, counts[big] - 1
    return list(zip(labels, counts, strict=True)), temperature


def _draw(key: str, n: int) -> tuple[list[Instance], int]:
    """n instances in random order, and the distribution's temperature."""
    rng = random.Random(f"{key}:{n}")
    counts, temperature = _label_counts(rng, n)
    items: list[tuple[str, str]] = []
    for label, k in counts:
        pool = [text for text, lb in trec_rows() if lb == label]
        pool = pool * math.ceil(k / len(pool))  # a short pool repeats, as upstream
        items += [(text, label) for text in rng.sample(pool, k)]
    rng.shuffle(items)
    common = rng.sample(range(10_000, 100_000), max(n // 10, 1))
    common_set, span = set(common), (LAST_DAY - FIRST_DAY).days
    rows: list[Instance] = []
    for text, label in items:
        user = rng.choice(common) if rng.random() < 0.8 else None
        while user is None:  # a one-off user, drawn from outside the common pool
            user = rng.randint(10_000, 99_999)
            user = None if user in common_set else user
        day = FIRST_DAY + timedelta(days=rng.randint(0, span))
        rows.append(Instance(day, str(user), " ".join(text.split()), label))
    return rows, temperature


def _line(r: Instance) -> str:
    return f"Date: {show_date(r.day)} || User: {r.user} || Instance: {r.text}"


def _text_len(n: int, line_chars: int) -> int:
    return len(_description(n, False)) + len(_description(n, True)) + line_chars + n + 3


def build_window(
    target_tokens: int, seed: int = 0, index: int = 0, n_instances: int | None = None
) -> Window:
    """A window of about `target_tokens` * 4 characters, or of exactly `n_instances` lines.

    Sized windows draw a few more instances than needed and keep the prefix (a random subset,
    since the draw is shuffled) that lands closest to the target length.
    """
    key = f"oolong-{target_tokens}-s{seed}-w{index}"
    if n_instances is None:
        target = target_tokens * CHARS_PER_TOKEN
        mean = len("Date: Mar 05, 2023 || User: 12345 || Instance: ") + sum(
            len(t) for t, _ in trec_rows()) / len(trec_rows())
        rows, temperature = _draw(key, max(2, round(1.1 * target / mean) + 10))
        sizes, total = [], 0
        for k, r in enumerate(rows, 1):
            total += len(_line(r))
            sizes.append(abs(_text_len(k, total) - target))
        rows = rows[: 1 + sizes.index(min(sizes))]
    else:
        rows, temperature = _draw(key, n_instances)
    # Line order does not depend on the window seed: sort by text, then a fixed shuffle.
    rows.sort(key=lambda r: (r.text, r.user, r.day))
    random.Random(42).shuffle(rows)
    n = len(rows)
    text = "\n".join([_description(n, False), "", *map(_line, rows), "", _description(n, True)])
    return Window(key, target_tokens, temperature, tuple(rows), text)


@dataclass
class Stats:
    """Every aggregate a question needs, from the window's hidden labels."""

    window: Window

    def __post_init__(self) -> None:
        rows = self.window.instances
        self.n = len(rows)
        self.labels = Counter(dict.fromkeys(LABELS, 0))  # absent labels still rank
        self.labels.update(r.label for r in rows)
        self.users = Counter(r.user for r in rows)
        self.user_label = Counter((r.user, r.label) for r in rows)
        self.dates = Counter(r.day for r in rows)
        self.month_label = Counter(((r.day.year, r.day.month), r.label) for r in rows)
        self.days = sorted(r.day for r in rows)
        first, last = (FIRST_DAY.year, FIRST_DAY.month), (LAST_DAY.year, LAST_DAY.month)
        self.months = [(y, m) for y in range(first[0], last[0] + 1) for m in range(1, 13)
                       if first <= (y, m) <= last]


def ranked(counts: dict[Any, int], rank: int, margin: float = 0.0) -> Any | None:
    """The key at `rank` by descending count, if more than `margin` from both neighbours."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    if len(items) <= rank:
        return None
    value = items[rank][1]
    if rank > 0 and items[rank - 1][1] - value <= margin:
        return None
    if rank + 1 < len(items) and value - items[rank + 1][1] <= margin:
        return None
    return items[rank][0]


def _share_sign(a: int, total_a: int, b: int, total_b: int) -> int | None:
    """Sign of the share difference; None inside OOLONG's 2-point band (equal shares count)."""
    sa, sb = a / max(total_a, 1), b / max(total_b, 1)
    if sa != sb and abs(sa - sb) <= 0.02:
        return None
    return (sa > sb) - (sa < sb)


_FORMATS = {
    "label": "Give your final answer in the form 'Label: answer', where answer is one of the "
             "labels: " + ", ".join(f"'{label}'" for label in LABELS) + ".",
    "numeric": "Give your final answer in the form 'Answer: number'.",
    "user": "Give your final answer in the form 'User: [X]', where [X] is the user ID.",
    "date": "Give your final answer in the form 'Date: [X]', where [X] is in MM/DD/YYYY format.",
    "month_year": "Give your final answer in the form 'Answer: [month] [year]', for example "
                  "'Answer: January 2023'.",
    "comparison": "Give your final answer in the form 'Answer: [X]', where [X] is 'more common', "
                  "'less common', or 'the same frequency'.",
}


def _q(text: str, gold: Any, kind: str, fmt: str | None = None, **params: Any) -> Question:
    return f"In the above data, {text} {fmt or _FORMATS[kind]}", str(gold), kind, params


def _counting(s: Stats, rng: random.Random) -> Iterator[tuple[str, Question]]:
    margin = 0.02 * s.n
    if (top := ranked(s.labels, 0, margin)) is not None:
        yield "most_common_label", _q("which of the labels is the most common?", top, "label")
    if (second := ranked(s.labels, 1, margin)) is not None:
        yield "second_most_common_label", _q(
            "which of the labels is the second most common?", second, "label")
    if (least := ranked({k: -v for k, v in s.labels.items()}, 0)) is not None:
        yield "least_common_label", _q("which of the labels is the least common?", least, "label")
    for a, b in combinations(LABELS, 2):
        if (sign := _share_sign(s.labels[a], s.n, s.labels[b], s.n)) is not None:
            fmt = (f"Give your final answer in the form 'Answer: {a} is [X] {b}', where [X] is "
                   "'more common than', 'less common than', or 'same frequency as'.")
            yield "label_comparison", _q(
                f"is label '{a}' more common, less common, or the same frequency as label '{b}'?",
                COMPARISONS[sign], "comparison", fmt, label=a, label_b=b)
    for label in LABELS:
        yield "label_count", _q(f"how many data points should be classified as label '{label}'?",
                                s.labels[label], "numeric", label=label)


def _exactly(counts: Sequence[int]) -> tuple[int, int] | None:
    """(n, how many counts equal n) where n is the 4th largest count, as OOLONG picks it."""
    values = sorted(counts, reverse=True)
    return (values[3], values.count(values[3])) if len(values) > 3 and values[3] > 0 else None


def _users(s: Stats, rng: random.Random) -> Iterator[tuple[str, Question]]:
    if (top := ranked(s.users, 0)) is not None:
        yield "most_frequent_user", _q("which user ID appears the most often?", top, "user")
    if (second := ranked(s.users, 1)) is not None:
        yield "second_most_frequent_user", _q(
            "which user ID appears the second most often?", second, "user")
    if hit := _exactly(list(s.users.values())):
        yield "users_exactly_n", _q(f"how many user IDs appear exactly {hit[0]} times?", hit[1],
                                    "numeric", n=hit[0])
    for label in LABELS:
        per_user = {u: s.user_label[u, label] for u in s.users}
        if (best := ranked(per_user, 0)) is not None:
            yield "top_user_for_label", _q(
                f"which user ID has the most instances that should be classified as label "
                f"'{label}'?", best, "user", label=label)
        if hit := _exactly(list(per_user.values())):
            yield "users_exactly_n_label", _q(
                f"how many user IDs have exactly {hit[0]} instances that should be classified as "
                f"label '{label}'?", hit[1], "numeric", label=label, n=hit[0])
    regulars = sorted(u for u, c in s.users.items() if c >= 2)
    seen: set[tuple[str, ...]] = set()
    for _ in range(40 if len(regulars) >= 2 else 0):
        (u1, u2), label = rng.sample(regulars, 2), rng.choice(LABELS)
        c1, c2 = s.user_label[u1, label], s.user_label[u2, label]
        if abs(c1 - c2) > 1 and len(seen) < 6 and (key := (*sorted((u1, u2)), label)) not in seen:
            seen.add(key)
            yield "user_label_comparison", _q(
                f"which of user {u1} and user {u2} has more instances that should be classified "
                f"as label '{label}'?", u1 if c1 > c2 else u2, "user", label=label, users=[u1, u2])
    for user in rng.sample(regulars, min(6, len(regulars))):
        label = rng.choice(LABELS)
        yield "user_label_count", _q(
            f"considering only the lines from user {user}, how many instances should be "
            f"classified as label '{label}'?", s.user_label[user, label], "numeric",
            label=label, user=user)


def _timeline(s: Stats, rng: random.Random) -> Iterator[tuple[str, Question]]:
    if (top := ranked(s.dates, 0)) is not None:
        yield "most_frequent_date", _q("which date appears the most often?",
                                       top.strftime("%m/%d/%Y"), "date")
    if hit := _exactly(list(s.dates.values())):
        yield "dates_exactly_n", _q(f"how many distinct dates appear exactly {hit[0]} times?",
                                    hit[1], "numeric", n=hit[0])
    present = sorted({m for m, _ in s.month_label})
    for month in rng.sample(present, min(6, len(present))):
        label, name = rng.choice(LABELS), month_name(month)
        yield "label_count_in_month", _q(
            f"how many instances dated in {name} should be classified as label '{label}'?",
            s.month_label[month, label], "numeric", label=label, month=month_key(month))
        in_month = {lb: s.month_label[month, lb] for lb in LABELS}
        if (top := ranked(in_month, 0, 0.02 * sum(in_month.values()))) is not None:
            yield "most_common_label_in_month", _q(
                f"considering only instances dated in {name}, which of the labels is the most "
                "common?", top, "label", month=month_key(month))
    for _ in range(6):
        pivot = s.days[int(rng.uniform(0.15, 0.75) * (s.n - 1))]  # OOLONG's pivot range
        label, shown = rng.choice(LABELS), show_date(pivot)
        after = sum(r.label == label and r.day > pivot for r in s.window.instances)
        yield "label_count_after_date", _q(
            f"how many instances dated after {shown} (not counting that date) should be "
            f"classified as label '{label}'?", after, "numeric", label=label,
            date=pivot.isoformat())
        before = [r.label for r in s.window.instances if r.day < pivot]
        rest = [r.label for r in s.window.instances if r.day >= pivot]
        sign = _share_sign(before.count(label), len(before), rest.count(label), len(rest))
        if sign is not None and before and rest:
            yield "before_after_comparison", _q(
                f"was label '{label}' more common, less common, or the same frequency among "
                f"instances dated before {shown} than among instances dated on or after it?",
                BEFORE_AFTER[sign], "comparison", label=label, date=pivot.isoformat())
    every = "(each month of each year counted separately)"
    for a, b in rng.sample(list(combinations(LABELS, 2)), 6):
        a, b = (a, b) if rng.random() < 0.5 else (b, a)
        beats = [m for m in s.months if s.month_label[m, a] > s.month_label[m, b]]
        if beats:
            yield "first_month_label_beats", _q(
                f"in which month did instances of label '{a}' first outnumber instances of "
                f"label '{b}'?", month_name(beats[0]), "month_year", label=a, label_b=b)
        yield "months_label_beats", _q(
            f"in how many months {every} do instances of label '{a}' outnumber instances of "
            f"label '{b}'?", len(beats), "numeric", label=a, label_b=b)
    for label in rng.sample(LABELS, 3):
        tops = sum(ranked({lb: s.month_label[m, lb] for lb in LABELS}, 0) == label
                   for m in s.months)
        yield "months_label_top", _q(
            f"in how many months {every} is label '{label}' strictly the most common label?",
            tops, "numeric", label=label)


GROUPS: dict[str, Callable[[Stats, random.Random], Iterator[tuple[str, Question]]]] = {
    "counting": _counting, "user": _users, "timeline": _timeline,
}


def window_tasks(
    window: Window, per_window: int | None = 25, families: Sequence[str] | None = None
) -> list[Task]:
    """Questions for one window, taken round-robin across families so none crowds out the rest."""
    rng, stats = random.Random(f"{window.id}:questions"), Stats(window)
    pools: dict[str, list[tuple[str, Question]]] = {}
    for group, make in GROUPS.items():
        for family, q in make(stats, rng):
            if families is None or family in families:
                pools.setdefault(family, []).append((group, q))
    order = rng.sample(sorted(pools), len(pools))
    for family in order:
        rng.shuffle(pools[family])
    limit = per_window if per_window is not None else sum(map(len, pools.values()))
    picked: list[tuple[str, str, Question]] = []
    while len(picked) < limit and any(pools.values()):
        picked += [(f, *pools[f].pop()) for f in order if pools[f]][: limit - len(picked)]
    base = {"window_id": window.id, "target_tokens": window.target_tokens,
            "context_chars": len(window.text), "approx_tokens": approx_tokens(window.text),
            "n_instances": stats.n, "temperature": window.temperature}
    return [
        Task(id=f"{window.id}-q{i:02d}", benchmark=BENCHMARK, context=window.text, question=text,
             gold=gold, meta={**base, "family": family, "task_group": group,
                              "answer": stored_answer(gold, kind),
                              "answer_type": answer_type(kind), "params": params})
        for i, (family, group, (text, gold, kind, params)) in enumerate(picked)
    ]


def generate(n: int = 1, seed: int = 0, lengths: Sequence[int] = DEFAULT_TOKENS,
             per_window: int | None = 25, families: Sequence[str] | None = None) -> list[Task]:
    """`n` windows per target length (in tokens), each with up to `per_window` questions."""
    return [task for tokens in lengths for i in range(n)
            for task in window_tasks(build_window(tokens, seed, i), per_window, families)]


def stored_answer(gold: Any, kind: str) -> str:
    """A gold answer in the dataset's stored form: `[23]`, `['entity']`,
    `[datetime.date(2023, 3, 5)]` (user IDs are integers there)."""
    if kind == "date":
        d = datetime.strptime(gold, "%m/%d/%Y").date()
        return f"[datetime.date({d.year}, {d.month}, {d.day})]"
    if kind in ("numeric", "user"):
        return f"[{int(gold)}]"
    return repr([str(gold)])


def score(task: Task, answer: str, scorer: Scorer = "official") -> float:
    """`answer` scored against the task's stored gold by the official rule or the lenient one."""
    return score_answer(answer, task.meta["answer"], task.meta["answer_type"], scorer)


def load_official(
    path: str | Path, dataset: str | None = "trec_coarse", context_len: int | None = None
) -> list[Task]:
    """Tasks from a local OOLONG-synth file (JSONL, JSON or parquet). Never downloads."""
    tasks = []
    for row in read_records(Path(path)):
        if dataset is not None and row.get("dataset") != dataset:
            continue
        if context_len is not None and int(row.get("context_len", -1)) != context_len:
            continue
        text, kind = row["context_window_text"], str(row["answer_type"])
        tasks.append(Task(
            id=str(row["id"]), benchmark=BENCHMARK, context=text, question=row["question"],
            gold=readable_gold(str(row["answer"])),
            meta={"answer": str(row["answer"]), "answer_type": answer_type(kind),
                  "family": str(row.get("task", "")).rsplit(".", 1)[-1].lower(),
                  "task_group": row.get("task_group"),
                  "window_id": str(row.get("context_window_id", "")),
                  "target_tokens": row.get("context_len"), "dataset": row.get("dataset"),
                  "context_chars": len(text), "approx_tokens": approx_tokens(text),
                  "official": True},
        ))
    return tasks
