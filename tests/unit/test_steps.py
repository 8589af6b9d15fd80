"""The reading of replies that are not in dspy's format, and the code an RLM reply runs."""

from __future__ import annotations

import threading
from typing import Any

import dspy
import pytest

from fleet_rlm.engine.steps import EMPTY_CODE, RetryAllowance, cell_code, lenient_parse

ACTION = dspy.Signature("question -> reasoning: str, code: str")
COUNT = dspy.Signature("question -> reasoning: str, count: int, names: list[str]")


@pytest.mark.parametrize(("text", "expected"), [
    ('{"reasoning": "r", "count": "3", "names": ["a"]}', {"reasoning": "r", "count": 3,
                                                         "names": ["a"]}),
    ("Sure:\n```json\n{'reasoning': 'r', 'count': 3, 'names': []}\n```", {
        "reasoning": "r", "count": 3, "names": []}),
    ("### Reasoning\nr\n### Count\n3\n### Names\n[\"a\", \"b\"]",
     {"reasoning": "r", "count": 3, "names": ["a", "b"]}),
    ("reasoning: r\ncount: 3\nnames: []", {"reasoning": "r", "count": 3, "names": []}),
    ("<count>3</count><names>[]</names><reasoning>r</reasoning>",
     {"reasoning": "r", "count": 3, "names": []}),
])
def test_replies_out_of_format_are_read_with_their_types(text: str, expected: dict) -> None:
    assert lenient_parse(COUNT, text) == expected


@pytest.mark.parametrize("text", [
    "I cannot help with that.", "", '{"reasoning": "r", "count": "many", "names": []}',
    "count: 3", '["a list", "not an object"]',
])
def test_replies_without_every_field_or_with_a_bad_value_are_not_read(text: str) -> None:
    assert lenient_parse(COUNT, text) is None


def test_prose_around_a_code_fence_is_reasoning_and_code() -> None:
    fields = lenient_parse(ACTION, "Count them.\n```python\nprint(len(x))\n```\nThen submit.")
    assert fields == {"reasoning": "Count them.",
                      "code": "```python\nprint(len(x))\n```\nThen submit."}
    assert cell_code(fields["code"]) == ("print(len(x))", [])


def test_a_code_fence_is_not_taken_for_fields_of_other_types() -> None:
    assert lenient_parse(COUNT, "```python\nprint(1)\n```") is None


@pytest.mark.parametrize(("text", "code", "notes"), [
    ("x = 1", "x = 1", []),
    ("`x = 1`", "x = 1", []),
    ("```py\nx = 1\n```", "x = 1", []),
    ("```\n```python\nx = 1\n```\n```", "x = 1", []),
    ("```python\nx = 1\n```\n```python\ny = 2\n```", "x = 1\n\ny = 2", []),
    ("```python\nx = 1\n```\n```text\n1\n```", "x = 1",
     ["[Note] A ```text block was not run: only Python blocks run."]),
    ("```python\nif x:\n    y = 1", "if x:\n    y = 1", []),
    ("```python x = 1```", "x = 1", []),
    ("```x = 1```", "x = 1", []),
])
def test_the_code_a_reply_runs(text: str, code: str, notes: list[Any]) -> None:
    assert cell_code(text) == (code, notes)


@pytest.mark.parametrize(("text", "message"), [
    ("", EMPTY_CODE), ("   \n", EMPTY_CODE), ("```python\n```", EMPTY_CODE),
    ("```bash\nls\n```", "Expected Python code but got ```bash fence"),
    ("```js\n1\n```\n```sql\n2\n```", "got ```js fence"),
])
def test_code_that_cannot_run_is_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(SyntaxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cell_code(text)


def test_the_turns_retries_are_never_overdrawn_from_many_threads() -> None:
    allowance = RetryAllowance(50)
    taken: list[bool] = []
    threads = [threading.Thread(target=lambda: taken.extend(allowance.take() for _ in range(10)))
               for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken.count(True) == 50 and allowance.used == 50
