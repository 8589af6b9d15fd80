"""Benchmark generators and scorers: determinism, sizes, gold answers by recount, scoring rules."""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime
from functools import cache
from itertools import combinations
from pathlib import Path

import pytest

from fleet_rlm import bench
from fleet_rlm.bench import oolong, pairs, sniah
from fleet_rlm.bench.tasks import Task

DATA = Path(oolong.__file__).parent / "data"
LINE = re.compile(r"^Date: ([A-Z][a-z]{2} \d{2}, \d{4}) \|\| User: (\d{5}) \|\| Instance: (.+)$")


def fingerprint(tasks: list[Task]) -> list[tuple[str, str, str, object]]:
    return [(t.id, t.context_sha256, t.question, t.gold) for t in tasks]


@cache
def truth() -> dict[str, str]:
    """Question text -> label, read straight from the shipped data file."""
    rows = [json.loads(line) for line in (DATA / "trec_coarse_validated.jsonl").open()]
    return {" ".join(r["input"].split()): r["label"] for r in rows}


def parse_window(context: str) -> list[tuple[date, str, str]]:
    rows = []
    for line in context.splitlines():
        if m := LINE.match(line):
            day = datetime.strptime(m[1], "%b %d, %Y").date()
            rows.append((day, m[2], truth()[m[3]]))
    return rows


# --- S-NIAH ----------------------------------------------------------------------------------


SMALL = {"lengths": (10_000, 20_000), "depths": (0.0, 0.3, 0.7, 1.0)}


def test_sniah_deterministic_by_seed() -> None:
    a, b = sniah.generate(2, seed=7, **SMALL), sniah.generate(2, seed=7, **SMALL)
    assert fingerprint(a) == fingerprint(b)
    assert len(a) == 2 * 2 * 4 * 3
    other = {t.context_sha256 for t in sniah.generate(2, seed=8, **SMALL)}
    assert other.isdisjoint(t.context_sha256 for t in a)
    assert len({t.context_sha256 for t in a}) == len(a)


def test_sniah_needles_follow_ruler() -> None:
    tasks = sniah.generate(1, seed=0, lengths=(20_000, 40_000), depths=(0.0, 0.33, 0.67, 1.0))
    assert {t.meta["kind"] for t in tasks} == {"number", "uuid", "word"}
    for t in tasks:
        target, kind = t.meta["target_chars"], t.meta["kind"]
        assert abs(len(t.context) - target) <= 0.05 * target
        assert t.meta["context_chars"] == len(t.context)
        assert t.context.startswith(f"A special magic {kind} is hidden within the following "
                                    f"text. Make sure to memorize it. I will quiz you about the "
                                    f"{kind} afterwards.\n")
        needle = f"One of the special magic {kind}s for {t.meta['key']} is: {t.gold}."
        assert t.context.count(needle) == 1
        assert t.context.count(t.meta["key"]) == 1 and t.context.count(str(t.gold)) == 1
        assert t.context.count("special magic") == 2  # the opening and the needle
        assert abs(t.context.index(needle) / len(t.context) - t.meta["depth"]) <= 0.05
        assert t.question == (f"What is the special magic {kind} for {t.meta['key']} mentioned "
                              "in the provided text?")


def test_sniah_defaults_are_the_papers_range_and_rulers_depths() -> None:
    assert [c // 4 for c in sniah.DEFAULT_LENGTHS] == [2**p for p in range(13, 19)]
    assert len(sniah.DEFAULT_DEPTHS) == 40 == len(set(sniah.DEFAULT_DEPTHS))
    assert sniah.DEFAULT_DEPTHS[0] == 0.0 and sniah.DEFAULT_DEPTHS[-1] == 1.0


def test_fifty_sniah_tasks_spread_over_the_six_lengths() -> None:
    from fleet_rlm.bench import runner

    tasks = runner.make_tasks("sniah", 50)
    per_length = Counter(t.meta["target_chars"] // 4 for t in tasks)
    assert per_length == {8192: 9, 16384: 9, 32768: 8, 65536: 8, 131072: 8, 262144: 8}
    for length in per_length:
        cell = [t for t in tasks if t.meta["target_chars"] // 4 == length]
        assert len({t.meta["depth"] for t in cell}) == len(cell)  # no depth twice in a length
        assert {t.meta["kind"] for t in cell} == {"number", "uuid", "word"}
    assert len({t.id for t in tasks}) == 50
    # The id's length is the report's: tokens, as --lengths takes them.
    for task in tasks:
        assert f"-{runner.target_tokens(task)}-d" in task.id, task.id


def test_sniah_values_have_the_right_shape() -> None:
    tasks = sniah.generate(3, seed=1, lengths=(5_000,), depths=(0.5,))
    filler = " ".join(sniah.filler_sentences()).lower()
    assert not re.search(r"\d", filler)
    for t in tasks:
        gold = str(t.gold)
        if t.meta["kind"] == "number":
            assert re.fullmatch(r"[1-9]\d{6}", gold)
        elif t.meta["kind"] == "uuid":
            assert str(uuid.UUID(gold)) == gold and uuid.UUID(gold).version == 4
        else:
            assert not re.search(rf"\b{gold}\b", filler)
    for word in sniah._VALUE_WORDS:
        assert not re.search(rf"\b{word}\b", filler)


@pytest.mark.parametrize(
    ("gold", "answer", "expected"),
    [
        ("4831920", "The special magic number is 4831920.", 1.0),
        ("4831920", "4831921", 0.0),
        ("ce3dcefd-e7dd-4abe-9841-60636b104aa2", "CE3DCEFD-E7DD-4ABE-9841-60636B104AA2", 1.0),
        ("mongoose", "Answer: Mongoose", 1.0),
        ("mongoose", "I could not find it.", 0.0),
        ("mongoose", "", 0.0),
        ("emu", "The value is lemur.", 0.0),
        ("emu", "The value is emu.", 1.0),
        ("emu", "EMU", 1.0),
        ("emu", "emus", 0.0),
        ("4831920", "48319201", 0.0),
        ("4831920", "the number 14831920", 0.0),
        ("4831920", "Answer: 4831920", 1.0),
        ("ce3dcefd-e7dd-4abe-9841-60636b104aa2", "xce3dcefd-e7dd-4abe-9841-60636b104aa2", 0.0),
        ("ce3dcefd-e7dd-4abe-9841-60636b104aa2", "(ce3dcefd-e7dd-4abe-9841-60636b104aa2)", 1.0),
    ],
)
def test_sniah_score(gold: str, answer: str, expected: float) -> None:
    task = Task(id="t", benchmark="sniah", context="", question="", gold=gold)
    assert sniah.score(task, answer) == expected
    assert bench.score(task, answer) == expected


def test_sniah_scores_several_values_as_a_share() -> None:
    assert sniah.score_values(["emu", "4831920"], "emu and 4831921") == 0.5


# --- OOLONG ----------------------------------------------------------------------------------


def _stored(gold: str, kind: str) -> str:
    """The dataset's stored form of a gold answer."""
    if kind == "date":
        d = datetime.strptime(gold, "%m/%d/%Y").date()
        return f"[datetime.date({d.year}, {d.month}, {d.day})]"
    return f"[{int(gold)}]" if kind in ("numeric", "user") else repr([gold])


def _task(gold: str, answer_type: str) -> Task:
    return Task(id="t", benchmark="oolong", context="", question="", gold=gold,
                meta={"answer": _stored(gold, answer_type), "answer_type": answer_type})


@pytest.mark.parametrize(
    ("gold", "answer_type", "answer", "expected"),
    [
        ("entity", "label", "Label: entity", 1.0),
        ("entity", "label", "label: **Entity**.", 1.0),
        ("entity", "label", "I think it is location. Final answer: 'entity'", 1.0),
        ("entity", "label", "Label: entity: no, location", 0.0),
        ("human being", "label", "Label: [human being]", 1.0),
        ("human being", "label", "Label: human", 0.0),
        ("entity", "label", "entity", 1.0),
        ("10", "numeric", "Answer: 10", 1.0),
        ("10", "numeric", "Answer: 8", 0.75**2),
        ("10", "numeric", "Answer: 11 instances", 0.75),
        ("10", "numeric", "Count: about 13, maybe 14", 0.75**3),
        ("1234", "numeric", "Answer: 1,234", 1.0),
        ("10", "numeric", "Answer: ten", 0.0),
        ("10", "numeric", "There are 10 of them. Answer: none", 0.0),
        ("03/05/2023", "date", "Date: 03/05/2023", 1.0),
        ("03/05/2023", "date", "Date: March 5, 2023", 1.0),
        ("03/05/2023", "date", "Date: Mar 05, 2023", 1.0),
        ("03/05/2023", "date", "Date: 2023-03-05", 1.0),
        ("03/05/2023", "date", "Date: 5th March 2023", 1.0),
        ("03/05/2023", "date", "Date: 05/03/2023", 0.0),
        ("03/05/2023", "date", "Date: soon", 0.0),
        ("more common than", "comparison", "Answer: entity is more common than location", 1.0),
        ("more common than", "comparison", "Answer: more common than", 1.0),
        ("less common than", "comparison", "Answer: entity is more common than location", 0.0),
        ("same frequency as", "comparison", "Answer: same frequency as", 1.0),
        ("the same frequency", "comparison", "Answer: The same frequency.", 1.0),
        ("less common", "comparison", "Answer: less common", 1.0),
        ("less common", "comparison", "Answer: more common", 0.0),
        ("12345", "user", "User: 12345", 1.0),
        ("12345", "user", "User: [12345]", 1.0),
        ("12345", "user", "User: 12346", 0.0),
        ("May 2023", "month_year", "Answer: May 2023", 1.0),
        ("May 2023", "month_year", "Answer: may, 2023", 1.0),
        ("May 2023", "month_year", "Answer: 2023-05", 1.0),
        ("May 2023", "month_year", "Answer: June 2023", 0.0),
        ("entity", "label", "asdf qwer zxcv uiop hjkl", 0.0),
        ("10", "numeric", "", 0.0),
        ("more common than", "comparison", "Answer: ???", 0.0),
    ],
)
def test_oolong_lenient_scorer(gold: str, answer_type: str, answer: str, expected: float) -> None:
    assert oolong.score(_task(gold, answer_type), answer, "lenient") == pytest.approx(expected)


def test_load_official_reads_jsonl(tmp_path: Path) -> None:
    rows = [
        {"id": 11500001, "context_len": 2048, "dataset": "trec_coarse", "context_window_id": 7,
         "context_window_text": "Date: Mar 05, 2023 || User: 12345 || Instance: Who ?",
         "question": "In the above data, how many ...?", "answer": "[23]", "task_group": "counting",
         "task": "TASK_TYPE.NUMERIC_ONE_CLASS", "answer_type": "ANSWER_TYPE.NUMERIC"},
        {"id": 11500002, "context_len": 2048, "dataset": "trec_coarse", "context_window_id": 7,
         "context_window_text": "x", "question": "q", "answer": "['more common than']",
         "task_group": "counting", "task": "TASK_TYPE.RELATIVE_FREQ",
         "answer_type": "ANSWER_TYPE.COMPARISON"},
        {"id": 11500003, "context_len": 2048, "dataset": "trec_coarse", "context_window_id": 7,
         "context_window_text": "x", "question": "q",
         "answer": "[datetime.date(2023, 3, 5)]", "task_group": "timeline",
         "task": "TASK_TYPE.MOST_FREQ_DATE", "answer_type": "ANSWER_TYPE.DATE"},
        {"id": 21500001, "context_len": 4096, "dataset": "spam", "context_window_id": 1,
         "context_window_text": "x", "question": "q", "answer": "['spam']",
         "task_group": "counting", "task": "TASK_TYPE.MOST_FREQ",
         "answer_type": "ANSWER_TYPE.LABEL"},
    ]
    path = tmp_path / "oolong-synth.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = oolong.load_official(path)
    assert [t.gold for t in tasks] == ["23", "more common than", "03/05/2023"]
    first = tasks[0]
    assert first.id == "11500001" and first.benchmark == "oolong"
    assert first.context == rows[0]["context_window_text"]
    assert first.meta["answer_type"] == "ANSWER_TYPE.NUMERIC"
    assert first.meta["family"] == "numeric_one_class/numeric" and first.meta["answer"] == "[23]"
    assert first.meta["source"] == "official-data"
    assert oolong.score(first, "Answer: 22") == 0.75
    assert oolong.score(tasks[2], "Date: 03/05/2023") == 1.0
    assert len(oolong.load_official(path, dataset=None)) == 4
    assert len(oolong.load_official(path, dataset=None, context_len=4096)) == 1


def test_load_official_parquet_without_reader(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    for name in ("pyarrow", "pyarrow.parquet", "pandas"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="pyarrow or pandas"):
        oolong.load_official(tmp_path / "validation.parquet")


# --- OOLONG-Pairs ----------------------------------------------------------------------------


def test_pairs_deterministic_with_the_papers_twenty_queries() -> None:
    a, b = pairs.generate(1, seed=2, lengths=(4096,)), pairs.generate(1, seed=2, lengths=(4096,))
    assert fingerprint(a) == fingerprint(b)
    assert [t.meta["family"] for t in a] == [f"q{k:02d}" for k in range(1, 21)]
    c = pairs.generate(1, seed=3, lengths=(4096,))
    assert fingerprint(a) != fingerprint(c)
    for t in a:
        assert t.benchmark == "oolong_pairs" and isinstance(t.gold, list)
        assert len(t.gold) == t.meta["n_gold"] == len(set(t.gold))
        assert pairs.score(t, "\n".join(t.gold)) == 1.0
        assert t.question.startswith("In the above data, list all pairs of user IDs (no "
                                     "duplicate pairs, list lower ID first) ")
        assert t.question.endswith("In your answer, list all pairs in the format (user_id_1, "
                                   "user_id_2), separated by newlines.")


def test_pairs_wording_of_the_paper() -> None:
    q = {query.number: query.clause for query in pairs.QUERIES}
    assert q[1] == "where both users have at least one instance with a numeric value or location"
    assert q[4] == ("where both users have at least one instance with a human being or location, "
                    "and all instances that are a human being for both users must be after "
                    "January 6, 2023")
    assert q[10].endswith("all instances that are an abbreviation for both users must be before "
                          "May 20, 2023")
    assert q[11] == ("such that one user has at least one instance with entity and one with "
                     "abbreviation, and the other user has exactly one instance with entity")


E, L, N, H, D, A = ("entity", "location", "numeric value", "human being",
                    "description and abstract concept", "abbreviation")


def _paper_condition(number: int, one: list[tuple[date, str]], two: list[tuple[date, str]]) -> bool:
    """The paper's query `number` for one pair of users, read from the appendix, pair by pair."""
    def n(rows: list[tuple[date, str]], label: str) -> int:
        return [lb for _, lb in rows].count(label)

    def either(x: str, y: str, dated: tuple[str, str, date] | None = None) -> bool:
        def ok(rows: list[tuple[date, str]]) -> bool:
            if not (n(rows, x) or n(rows, y)):
                return False
            if dated is None:
                return True
            label, side, day = dated
            return all((d > day) if side == "after" else (d < day)
                       for d, lb in rows if lb == label)
        return ok(one) and ok(two)

    def asym(p, q) -> bool:
        return (p(one) and q(two)) or (p(two) and q(one))

    symmetric = {1: (N, L), 2: (E, H), 3: (D, A), 6: (L, A), 8: (H, D)}
    dated = {4: (H, L, (H, "after", date(2023, 1, 6))), 5: (E, N, (E, "before", date(2023, 3, 15))),
             7: (D, N, (N, "after", date(2023, 2, 1))), 9: (E, L, (L, "after", date(2023, 4, 10))),
             10: (N, A, (A, "before", date(2023, 5, 20)))}
    if number in symmetric:
        return either(*symmetric[number])
    if number in dated:
        return either(*dated[number])
    return asym(*{
        11: (lambda r: n(r, E) >= 1 and n(r, A) >= 1, lambda r: n(r, E) == 1),
        12: (lambda r: n(r, N) >= 2, lambda r: n(r, L) >= 1 and n(r, H) >= 1),
        13: (lambda r: n(r, D) == 1, lambda r: n(r, A) >= 1 and n(r, E) >= 1),
        14: (lambda r: n(r, H) >= 1 and n(r, N) >= 1, lambda r: n(r, L) == 2),
        15: (lambda r: n(r, E) >= 1 and n(r, L) >= 1 and n(r, A) >= 1, lambda r: n(r, N) == 1),
        16: (lambda r: n(r, D) >= 1 and n(r, H) >= 1, lambda r: n(r, E) >= 2 and n(r, A) == 1),
        17: (lambda r: n(r, N) == 1, lambda r: n(r, L) >= 1 and n(r, D) >= 1),
        18: (lambda r: n(r, A) >= 1 and n(r, H) == 1, lambda r: n(r, E) >= 1 and n(r, N) >= 1),
        19: (lambda r: n(r, L) >= 2 and n(r, E) >= 1, lambda r: n(r, D) == 1 and n(r, A) == 1),
        20: (lambda r: n(r, N) >= 1 and n(r, H) >= 1,
             lambda r: n(r, L) >= 1 and n(r, E) >= 1 and n(r, A) == 1),
    }[number])


def test_pairs_gold_matches_a_pair_by_pair_recount() -> None:
    for seed in (4, 5):
        tasks = pairs.generate(1, seed=seed, lengths=(8192,))
        by_user: dict[str, list[tuple[date, str]]] = defaultdict(list)
        for d, u, lb in parse_window(tasks[0].context):
            by_user[u].append((d, lb))
        for number, task in enumerate(tasks, 1):
            expected = {f"({u}, {v})" for u, v in combinations(sorted(by_user, key=int), 2)
                        if _paper_condition(number, by_user[u], by_user[v])}
            assert set(task.gold) == expected, task.meta["family"]
            assert expected or number in (16, 19, 20)  # most queries have pairs at 8K


GOLD = ["(10001, 10002)", "(10003, 10004)", "(10005, 10006)", "(10007, 10008)"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("\n".join(GOLD), 1.0),
        ("(10002, 10001)\n(10004, 10003)\n(10006, 10005)\n(10008, 10007)", 1.0),
        ("10001-10002, 10003-10004, 10005-10006, 10007-10008", 1.0),
        ("10001, 10002\n10003, 10004\n10005, 10006\n10007, 10008", 1.0),
        ("(10001, 10002), (10003, 10004)", 2 / 3),
        # duplicates count once: precision 2/3, recall 2/4
        ("(10001, 10002)\n(10001, 10002)\n(10003, 10004)\n(10009, 10010)", 4 / 7),
        ("(10001, 10003)\n(10002, 10004)", 0.0),
        ("None", 0.0),
        ("", 0.0),
        ("I could not determine the pairs.", 0.0),
        ("(10001, 10001)", 0.0),
    ],
)
def test_pairs_f1(answer: str, expected: float) -> None:
    task = Task(id="p", benchmark="oolong_pairs", context="", question="", gold=GOLD)
    assert pairs.score(task, answer) == pytest.approx(expected)
    assert bench.score(task, answer) == pytest.approx(expected)


def test_pairs_empty_gold() -> None:
    task = Task(id="p", benchmark="oolong_pairs", context="", question="", gold=[])
    assert pairs.score(task, "None") == 1.0
    assert pairs.score(task, "(1, 2)") == 0.0
    assert pairs.pair_f1(set(), set()) == 1.0
