"""Committed OOLONG rows in the released dataset's format, and their gold recomputed afresh.

`tests/data/oolong_synth_regression.jsonl` holds 16 questions from each of three windows (1K, 2K
and 4K tokens) built by the official construction from the shipped TREC data. The first test
fails when the construction changes what it builds; if that change is meant, rewrite the file
with `uv run python tests/unit/test_oolong_regression.py`. The second recomputes every gold
answer from the window text and the TREC labels alone, by code written from the official
definitions and independent of `fleet_rlm.bench.oolong_synth`.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime
from functools import cache
from pathlib import Path

from fleet_rlm.bench import oolong, oolong_synth
from fleet_rlm.bench.oolong_score import gold_value, official

ROWS = Path(__file__).parent.parent / "data" / "oolong_synth_regression.jsonl"
WINDOWS = ((1024, 0), (2048, 1), (4096, 2))  # (tokens, seed)
PER_WINDOW = 16
LINE = re.compile(r"^Date: (\w{3} \d{2}, \d{4}) \|\| User: (\d+) \|\| Instance: (.+)$", re.M)
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def build_rows() -> list[dict]:
    rows = []
    for window_id, (tokens, seed) in enumerate(WINDOWS):
        window = oolong_synth.build(tokens, seed)
        for k, task in enumerate(oolong.window_tasks(window, PER_WINDOW)):
            rows.append({"id": int(f"10{tokens.bit_length() - 1:02d}{window_id:02d}{k:02d}"),
                         "context_len": tokens, "dataset": "trec_coarse",
                         "context_window_id": window_id, "num_labels": 6,
                         "context_window_text": window.text, "question": task.question,
                         "answer": task.meta["answer"], "task_group": task.meta["task_group"],
                         "task": task.meta["task"], "answer_type": task.meta["answer_type"],
                         "input_subset": task.meta["input_subset"]})
    return rows


def test_the_construction_still_builds_the_committed_rows() -> None:
    committed = [json.loads(line) for line in ROWS.read_text().splitlines()]
    assert len(committed) == PER_WINDOW * len(WINDOWS)
    assert committed == build_rows()


@cache
def labels() -> dict[str, str]:
    path = Path(oolong.__file__).parent / "data" / "trec_coarse_validated.jsonl"
    return {r["input"]: r["label"] for r in map(json.loads, path.open())}


def day(text: str) -> date:
    return datetime.strptime(text, "%b %d, %Y").date()


def recount(question: str, context: str) -> list:
    """Every acceptable gold answer for `question` over `context`."""
    rows = [(day(d), int(u), labels()[x]) for d, u, x in LINE.findall(context)]
    order = re.findall(r"'([^']+)'", re.search(r"categories: (.*?)\.\n", context)[1])
    q, subset = question, None
    if m := re.match(r"For the following question, only consider the subset of instances that are "
                     r"associated with user IDs (\d+)\. Among instances associated with these "
                     r"users, ", q):
        subset = [r for r in rows if r[1] == int(m[1])]
    elif m := re.match(r"For the following question, only consider the subset of instances that "
                       r"occur in (\w+) of any year\. Among instances occuring in \w+, ", q):
        subset = [r for r in rows if r[0].month == MONTHS.index(m[1]) + 1]
    elif m := re.match(r"For the following question, only consider the subset of instances that "
                       r"occur between (.+?) and (.+?), inclusive\. Among instances occuring in "
                       r"this date range, ", q):
        subset = [r for r in rows if day(m[1]) <= r[0] <= day(m[2])]
    if subset is not None:
        q = "In the above data, " + q[m.end():]
    use = rows if subset is None else subset
    counts = Counter(r[2] for r in use)
    names = order if subset is None else list(counts)
    if "which of the labels is the most common" in q:
        return [max(names, key=lambda lb: counts[lb])]
    if "which of the labels is the least common" in q:
        return [lb for lb in names if counts[lb] == min(counts[n] for n in names)]
    if m := re.search(r"is label '(.+?)' more common, less common, or the same frequency as "
                      r"label '(.+?)'", q):
        a, b = counts[m[1]], counts[m[2]]
        return ["more common than" if a > b else "less common than" if a < b
                else "same frequency as"]
    if m := re.search(r"how many data points should be classified as label '(.+?)'", q):
        return [counts[m[1]]]
    if m := re.search(r"which user is represented (the second )?most often", q):
        return [Counter(r[1] for r in use).most_common(2)[1 if m[1] else 0][0]]
    if m := re.search(r"which user has the most instances with the label (.+?)\?", q):
        return [Counter(r[1] for r in use if r[2] == m[1]).most_common(1)[0][0]]
    if m := re.search(r"with the label (.+?): User (\d+) or User (\d+)\?", q):
        per = Counter(r[1] for r in use if r[2] == m[1])
        return [max((int(m[2]), int(m[3])), key=per.__getitem__)]
    dates = Counter(r[0] for r in use)
    if m := re.search(r"which date is represented (the second )?most often", q):
        return [datetime.combine(dates.most_common(2)[1 if m[1] else 0][0], datetime.min.time())]
    if m := re.search(r"how many dates are represented exactly (\d+) times", q):
        top50 = sorted(dates.values(), reverse=True)[:50]
        return [top50.count(int(m[1]))]
    if m := re.search(r"was label '(.+?)' more common, less common, or the same frequency before "
                      r"(\S+),", q):
        pivot = date.fromisoformat(m[2])
        before = [r[2] for r in use if r[0] < pivot]
        after = [r[2] for r in use if r[0] > pivot]
        diff = before.count(m[1]) / len(before) - after.count(m[1]) / max(len(after), 1)
        return ["more common" if diff > 0 else "less common" if diff < 0
                else "the same frequency"]
    months: dict[tuple[int, int], Counter] = defaultdict(Counter)
    for d, _, lb in sorted(use):
        months[d.year, d.month][lb] += 1
    if m := re.search(r"label '(.+?) first occur more often than the label '(.+?)'", q):
        first = min(months)
        c = months[first]
        assert c[m[1]] > c[m[2]]  # asked only when the earliest month already qualifies
        return [f"{MONTHS[first[1] - 1]} {first[0]}"]
    if m := re.search(r"does the label '(.+?)' occur more frequently than the label '(.+?)'", q):
        return [sum(c[m[1]] / sum(c.values()) > c[m[2]] / sum(c.values())
                    for c in months.values())]
    if m := re.search(r"is the label '(.+?)' the single most frequently", q):
        return [sum(all(c[m[1]] > v for k, v in c.items() if k != m[1]) for c in months.values())]
    raise AssertionError(f"no recount for {question!r}")


def test_every_committed_gold_answer_is_recomputed_from_the_text() -> None:
    kinds = Counter()
    for row in map(json.loads, ROWS.read_text().splitlines()):
        expected = recount(row["question"], row["context_window_text"])
        gold = gold_value(row["answer"])
        assert gold in expected, row["question"]
        # and the stored answer, written out as asked, scores 1 by the official rule
        written = gold.strftime("%m/%d/%Y") if isinstance(gold, datetime) else gold
        assert official(f"Answer: {written}", row["answer"], row["answer_type"]) == 1.0
        kinds[row["task"], row["answer_type"]] += 1
    assert len(kinds) >= 8


if __name__ == "__main__":
    ROWS.parent.mkdir(parents=True, exist_ok=True)
    ROWS.write_text("".join(json.dumps(r) + "\n" for r in build_rows()))
