"""The official OOLONG scorer, pinned case by case, and the lenient one beside it.

Each expected score is what OOLONG-synth's own `synth_process_response` gives for the same
(answer, stored gold, answer type); see the rules in `fleet_rlm.bench.oolong_score`.
"""

from __future__ import annotations

import pytest

from fleet_rlm import bench
from fleet_rlm.bench import oolong
from fleet_rlm.bench.oolong_score import (
    answer_type,
    candidate,
    gold_value,
    lenient,
    official,
    readable_gold,
)
from fleet_rlm.bench.tasks import Task

L, N, C, U, D, M = ("ANSWER_TYPE.LABEL", "ANSWER_TYPE.NUMERIC", "ANSWER_TYPE.COMPARISON",
                    "ANSWER_TYPE.USER", "ANSWER_TYPE.DATE", "ANSWER_TYPE.MONTH_YEAR")

# (prediction, stored answer, answer type, official score)
CASES = [
    # labels: exact characters after the last colon
    ("Label: entity", "['entity']", L, 1.0),
    ("Label: Entity", "['entity']", L, 0.0),
    ("Label: entity.", "['entity']", L, 0.0),
    ("Label: **entity**", "['entity']", L, 1.0),
    ("Label: [entity]", "['entity']", L, 1.0),
    ("Label:entity", "['entity']", L, 1.0),
    ("Label:   human being  ", "['human being']", L, 1.0),
    ("Label: 'entity'", "['entity']", L, 0.0),
    ("Label: `entity`", "['entity']", L, 0.0),
    ("The answer is entity. Label: location", "['entity']", L, 0.0),
    ("Label: entity: no wait, location", "['entity']", L, 0.0),
    ("Label: location\nLabel: entity", "['entity']", L, 1.0),
    ("Label: entity\n", "['entity']", L, 1.0),
    ("Label: entity (most common)", "['entity']", L, 0.0),
    ("Label: description and abstract concept", "['description and abstract concept']", L, 1.0),
    ("entity", "['entity']", L, 1.0),
    (" entity ", "['entity']", L, 0.0),  # short answers are taken whole, unstripped
    ("human being", "['human being']", L, 1.0),
    ("I think it is entity", "['entity']", L, 1.0),  # 20 characters: the last word
    ("I think it's: entity", "['entity']", L, 1.0),
    ("The most common label is entity", "['entity']", L, 1.0),
    ("The most common label is human being", "['human being']", L, 0.0),
    ("The most common label is **entity**", "['entity']", L, 0.0),  # no colon: nothing removed
    ("The most common label is entity.", "['entity']", L, 0.0),
    ("", "['entity']", L, 0.0),
    ("                         ", "['entity']", L, 0.0),
    ("Label: entity", "['entity', 'location']", L, 1.0),  # ties: only the first is gold
    ("Label: location", "['entity', 'location']", L, 0.0),
    # numbers: int() of the candidate, 0.75 per unit away
    ("Answer: 23", "[23]", N, 1.0),
    ("Answer: 22", "[23]", N, 0.75),
    ("Answer: 25", "[23]", N, 0.75**2),
    ("Answer: 13", "[23]", N, 0.75**10),
    ("Answer: 0", "[0]", N, 1.0),
    ("Answer: -1", "[1]", N, 0.75**2),
    ("Answer: +23", "[23]", N, 1.0),
    ("Answer: 023", "[23]", N, 1.0),
    ("Answer: 2_3", "[23]", N, 1.0),
    ("Answer: **23**", "[23]", N, 1.0),
    ("Answer: [23]", "[23]", N, 1.0),
    ("Answer: ** 24 **", "[23]", N, 0.75),  # int() allows the spaces left inside
    ("Answer: 23.", "[23]", N, 0.0),
    ("Answer: 23.0", "[23]", N, 0.0),
    ("Answer: 1,234", "[1234]", N, 0.0),
    ("Answer: 23 instances", "[23]", N, 0.0),
    ("Answer: about 23", "[23]", N, 0.0),
    ("Answer: twenty-three", "[23]", N, 0.0),
    ("There are 23 of them. Answer: none", "[23]", N, 0.0),
    ("23", "[23]", N, 1.0),
    ("24", "[23]", N, 0.75),
    ("After counting every line the total is 23", "[23]", N, 1.0),
    ("After counting every line the total is 23.", "[23]", N, 0.0),
    ("Answer: 23", "[23]", "NUMERIC", 1.0),
    ("Answer: 22", "[23]", L, 0.0),  # partial credit only for NUMERIC
    # comparisons: the short phrase matches inside the gold
    ("Answer: more common than", "['more common than']", C, 1.0),
    ("Answer: more common", "['more common than']", C, 1.0),
    ("Answer: less common", "['more common than']", C, 0.0),
    ("Answer: entity is more common than location", "['more common than']", C, 1.0),
    ("Answer: entity is less common than location", "['more common than']", C, 0.0),
    ("Answer: entity is the same frequency as location", "['same frequency as']", C, 1.0),
    ("Answer: same frequency", "['the same frequency']", C, 1.0),
    ("Answer: the same frequency", "['the same frequency']", C, 1.0),
    ("Answer: same frequency as", "['the same frequency']", C, 0.0),  # < 20 chars, no collapse
    ("Answer: More common than", "['more common than']", C, 0.0),
    ("Answer: more common than.", "['more common than']", C, 0.0),
    ("Answer: it is more common", "['more common']", C, 0.0),  # under 20 chars: no collapse
    ("Answer: [more common]", "['more common']", C, 1.0),
    ("Answer: it was more common before", "['more common']", C, 1.0),
    ("Answer: neither more common nor less common", "['less common']", C, 0.0),
    ("entity is more common than location", "['more common than']", C, 0.0),  # no colon
    ("more common", "['more common than']", C, 1.0),
    # users: the gold is an int; its digits must match
    ("User: 12345", "[12345]", U, 1.0),
    ("User: [12345]", "[12345]", U, 1.0),
    ("User: 12346", "[12345]", U, 0.0),
    ("User: user 12345", "[12345]", U, 0.0),
    ("User: 12345.", "[12345]", U, 0.0),
    ("12345", "[12345]", U, 1.0),
    # dates: dateutil, month first, against the gold at midnight
    ("Date: 03/05/2023", "[datetime.date(2023, 3, 5)]", D, 1.0),
    ("Date: 3/5/2023", "[datetime.date(2023, 3, 5)]", D, 1.0),
    ("Date: March 5, 2023", "[datetime.date(2023, 3, 5)]", D, 1.0),
    ("Date: Mar 05, 2023", "[datetime.date(2023, 3, 5)]", D, 1.0),
    ("Date: 2023-03-05", "[datetime.date(2023, 3, 5)]", D, 1.0),
    ("Date: 05/03/2023", "[datetime.date(2023, 3, 5)]", D, 0.0),
    ("Date: [03/05/2023]", "[datetime.date(2023, 3, 5)]", D, 1.0),
    ("Date: 03/05/2023 10:00", "[datetime.date(2023, 3, 5)]", D, 0.0),  # the last colon wins
    ("Date: 03/06/2023", "[datetime.date(2023, 3, 5)]", D, 0.0),
    ("Date: soon", "[datetime.date(2023, 3, 5)]", D, 0.0),
    ("Date: 2023-03-05 00:00:00", "[datetime.date(2023, 3, 5)]", D, 0.0),  # last colon: "00"
    ("The most frequent date is 03/05/2023", "[datetime.date(2023, 3, 5)]", D, 1.0),
    # month and year: exact text
    ("Answer: May 2023", "['May 2023']", M, 1.0),
    ("Answer: may 2023", "['May 2023']", M, 0.0),
    ("Answer: 2023-05", "['May 2023']", M, 0.0),
    ("Answer: May, 2023", "['May 2023']", M, 0.0),
]


@pytest.mark.parametrize(("prediction", "answer", "kind", "expected"), CASES)
def test_official_scorer(prediction: str, answer: str, kind: str, expected: float) -> None:
    assert official(prediction, answer, kind) == pytest.approx(expected)


def test_there_are_at_least_sixty_cases_over_every_answer_type() -> None:
    assert len(CASES) >= 60
    assert {answer_type(kind) for _, _, kind, _ in CASES} == {L, N, C, U, D, M}


@pytest.mark.parametrize(("prediction", "answer", "kind", "expected"), [
    ("Label: Entity.", "['entity']", L, 1.0),
    ("Answer: 23 instances", "[23]", N, 1.0),
    ("Answer: 1,234", "[1234]", N, 1.0),
    ("Answer: 23.5", "[23]", N, 0.75**0.5),
    ("Answer: may, 2023", "['May 2023']", M, 1.0),
    ("Answer: 2023-05", "['May 2023']", M, 1.0),
    ("Date: 03/05/2023 (a Sunday)", "[datetime.date(2023, 3, 5)]", D, 1.0),
    ("Answer: The same frequency.", "['the same frequency']", C, 1.0),
])
def test_the_lenient_scorer_accepts_what_the_official_one_does_not(
        prediction: str, answer: str, kind: str, expected: float) -> None:
    assert lenient(prediction, answer, kind) == pytest.approx(expected)
    assert official(prediction, answer, kind) == 0.0


@pytest.mark.parametrize(("answer", "gold"), [
    ("[23]", 23), ("['entity']", "entity"), ("['more common than', 'x']", "more common than"),
    ("[12345]", 12345), ("['May 2023']", "May 2023"),
])
def test_gold_is_the_first_element_of_the_stored_list(answer: str, gold: object) -> None:
    assert gold_value(answer) == gold


def test_a_date_gold_is_midnight_of_that_day() -> None:
    assert str(gold_value("[datetime.date(2023, 3, 5)]")) == "2023-03-05 00:00:00"


@pytest.mark.parametrize("answer", ["23", "entity", "[]", "[datetime.date(2023, 3)]"])
def test_a_gold_answer_not_in_the_stored_form_is_an_error_naming_it(answer: str) -> None:
    with pytest.raises(ValueError, match="gold answer"):
        gold_value(answer)


@pytest.mark.parametrize(("written", "spelled"), [
    ("ANSWER_TYPE.NUMERIC", N), ("NUMERIC", N), ("numeric", N), ("month_year", M)])
def test_answer_types_are_read_in_either_spelling(written: str, spelled: str) -> None:
    assert answer_type(written) == spelled


def test_an_unknown_answer_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="ANSWER_TYPE.NUMERIC"):
        answer_type("FLOAT")


@pytest.mark.parametrize(("prediction", "expected"), [
    ("Answer: entity is more common than location", "more common"),
    ("Answer: **more common**", "more common"),
    ("Answer: a much less common label than", "less common"),
    ("Answer: they have the same frequency overall", "same frequency"),
    ("no colon and quite a long answer", "answer"),
    ("short", "short"),
])
def test_candidate(prediction: str, expected: str) -> None:
    assert candidate(prediction) == expected


def test_generated_tasks_store_the_dataset_form_and_both_scorers_apply() -> None:
    tasks = oolong.generate(2, seed=3, lengths=[2048], per_window=None)
    kinds = {t.meta["answer_type"] for t in tasks}
    assert {L, N, C, U, M, D} <= kinds
    for task in tasks:
        assert readable_gold(task.meta["answer"]) == task.gold
        reply = ("Date: " if task.meta["answer_type"] == D else "Answer: ") + str(task.gold)
        assert oolong.score(task, reply) == 1.0, task
        assert bench.score(task, reply, "lenient") == 1.0, task
    numeric = next(t for t in tasks if t.meta["answer_type"] == N)
    assert bench.score(numeric, f"Answer: {numeric.gold} lines") == 0.0
    assert bench.score(numeric, f"Answer: {numeric.gold} lines", "lenient") == 1.0


def test_lenient_is_the_only_other_scorer() -> None:
    task = Task(id="t", benchmark="oolong", context="", question="",
                gold="entity", meta={"answer": "['entity']", "answer_type": L})
    assert bench.score(task, "Label: ENTITY", "lenient") == 1.0
    assert bench.score(task, "Label: ENTITY") == 0.0
    with pytest.raises(KeyError):
        bench.score(task, "Label: entity", "strict")  # type: ignore[arg-type]
