"""OOLONG windows and questions built by the official OOLONG-synth rules, checked from the text."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime
from functools import cache
from pathlib import Path

import pytest

from fleet_rlm.bench import baseline, oolong, oolong_synth
from fleet_rlm.bench.oolong_score import gold_value

LINE = re.compile(r"^Date: ([A-Z][a-z]{2} \d{2}, \d{4}) \|\| User: (\d{5}) \|\| Instance: (.+)$")


@cache
def truth() -> dict[str, str]:
    path = Path(oolong.__file__).parent / "data" / "trec_coarse_validated.jsonl"
    return {r["input"]: r["label"] for r in map(json.loads, path.open())}


def parse(text: str) -> list[tuple[date, str, str]]:
    """(date, user, label) of every data line, the label looked up in the shipped file."""
    return [(datetime.strptime(m[1], "%b %d, %Y").date(), m[2], truth()[m[3]])
            for line in text.splitlines() if (m := LINE.match(line))]


@pytest.mark.parametrize(("tokens", "lines"), [(1024, 14), (2048, 39), (32_768, 787),
                                               (131_072, 3182)])
def test_lines_per_window_follow_the_official_token_model(tokens: int, lines: int) -> None:
    assert oolong_synth.examples_in_context(tokens) == lines
    if tokens <= 32_768:
        window = oolong_synth.build(tokens, seed=1)
        assert len(parse(window.text)) == lines == len(window.rows)


def test_the_128k_window_has_the_official_line_count() -> None:
    window = oolong_synth.build(131_072)
    assert sum(1 for line in window.text.splitlines() if LINE.match(line)) == 3182


def test_window_text_layout_and_label_counts() -> None:
    window = oolong_synth.build(4096, seed=2)
    labels = "'" + "', '".join(window.labels) + "'"
    n = len(window.rows)
    assert window.text.startswith(
        f"The following lines contain {n} general-knowledge questions, one per line. Each "
        f"question has an answer that can be described as one of 6 categories: {labels}.\n\n"
        f"You will be asked to answer questions about the aggregate label statistics across all "
        f"{n} examples in this dataset.")
    assert "\nRecall: the preceding lines contain" in window.text
    assert window.text.endswith("Calculate the exact answer given these datapoints.\n\n")
    rows = parse(window.text)
    assert Counter(lb for _, _, lb in rows) == Counter(
        {k: v for k, v in window.true_counts if v})
    assert sorted(window.labels) == sorted(oolong.LABELS)
    assert all(date(2022, 2, 16) <= d <= date(2025, 6, 21) for d, _, _ in rows)


def test_most_instances_come_from_a_small_pool_of_users() -> None:
    rows = parse(oolong_synth.build(32_768, seed=3).text)
    users = Counter(u for _, u, _ in rows)
    pool = int(len(rows) * 0.1)
    share = sum(c for _, c in users.most_common(pool)) / len(rows)
    assert 0.74 < share < 0.86  # 80 % from the common pool, a few one-off users collide


def test_deterministic_by_seed_and_index() -> None:
    a, b = oolong_synth.build(2048, 5, 1), oolong_synth.build(2048, 5, 1)
    assert a.text == b.text and a.text != oolong_synth.build(2048, 5, 2).text
    assert [t.question for t in oolong.generate(1, 5, [2048])] == [
        t.question for t in oolong.generate(1, 5, [2048])]


def recount(question: str, rows: list[tuple[date, str, str]], order: list[str]) -> object | None:
    """Gold for the whole-window questions, from the official definitions, written afresh."""
    labels = Counter(lb for _, _, lb in rows)
    n = len(rows)
    if question.startswith("In the above data, how many data points"):
        return labels[re.search(r"label '(.+?)'", question)[1]]
    if question.startswith("In the above data, is label"):
        a, b = re.findall(r"label '(.+?)'", question)[:2]
        return ["same frequency as", "more common than", "less common than"][
            (labels[a] > labels[b]) - (labels[a] < labels[b])]
    if question.startswith("In the above data, which of the labels is the least common"):
        return min(order, key=lambda lb: labels[lb])
    if question.startswith("In the above data, which of the labels is the most common"):
        best = max(order, key=lambda lb: labels[lb])
        assert all(abs(labels[best] - labels[o]) / n > 0.02 for o in order if o != best)
        return best
    if question.startswith("In the above data, which user is represented most often"):
        (top, c1), (_, c2) = Counter(u for _, u, _ in rows).most_common(2)
        assert c1 > c2
        return int(top)
    if question.startswith("In the above data, which date is represented most often"):
        (top, c1), (_, c2) = Counter(d for d, _, _ in rows).most_common(2)
        assert c1 > c2
        return top
    months: dict[tuple[int, int], Counter] = defaultdict(Counter)
    for d, _, lb in rows:
        months[d.year, d.month][lb] += 1
    if m := re.match(r"For how many months does the label '(.+?)' occur more frequently than "
                     r"the label '(.+?)'", question):
        return sum(c[m[1]] > c[m[2]] for c in months.values())
    if m := re.match(r"For how many months is the label '(.+?)' the single most", question):
        return sum(all(c[m[1]] > v for k, v in c.items() if k != m[1]) for c in months.values())
    return None


def test_whole_window_gold_matches_a_recount_from_the_text() -> None:
    checked = Counter()
    for seed in range(3):
        window = oolong_synth.build(8192, seed)
        rows = parse(window.text)
        for task in oolong.window_tasks(window, per_window=None):
            want = recount(task.question, rows, list(window.labels))
            if want is not None:
                got = gold_value(task.meta["answer"])
                got = got.date() if isinstance(got, datetime) else got
                assert got == want, task.question
                checked[task.meta["family"]] += 1
    assert len(checked) >= 7 and sum(checked.values()) > 150


def test_every_question_type_is_answered_by_code_given_the_true_labels() -> None:
    """The code-only program reads the questions' wording; with the true labels it gets the
    gold answer except where upstream breaks a tie by an order the text does not show."""
    misses, total, families = 0, 0, set()
    for seed in range(2):
        window = oolong_synth.build(4096, seed)
        truth_of = {(r.day, str(r.user), r.text): r.label for r in window.rows}
        for task in oolong.window_tasks(window, per_window=None):
            reply = baseline.answer_oolong(task, lambda ls, t=truth_of: [t[x] for x in ls])
            total += 1
            families.add(task.meta["family"])
            misses += oolong.score(task, reply) != 1.0
    assert total > 150 and misses <= 2
    assert {"most_freq/user", "relative_freq/user", "relative_freq/month_year",
            "represented_n_times/numeric", "numeric_one_class/numeric"} <= families


def test_windows_below_the_official_minimum_are_refused() -> None:
    with pytest.raises(ValueError, match="start at 1,024 tokens"):
        oolong_synth.build(1000)
