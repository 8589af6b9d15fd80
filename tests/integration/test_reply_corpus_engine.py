"""How the recursive engine reads realistic model replies: each shape of a first iteration,
played by the scripted server in a real sandbox, with what must come of it.

    first  the reply is read and its code SUBMITs the answer in iteration 1
    next   the reply is read and its code runs (or is refused), and the model sees `says` in
           iteration 1's output; iteration 2 SUBMITs
    retry  the reply cannot be read: iteration 1 is asked again with the parse error shown, and
           the second reply SUBMITs

Every run ends `ok` with the answer 42: a bad reply never ends the run by itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dspy
import pytest

from fleet_rlm.config import Settings
from fleet_rlm.engine.rlm import RecursiveRLM
from fleet_rlm.engine.steps import EMPTY_CODE
from fleet_rlm.testing import dspy_reply

STEP = r"\[\[ ## iteration ## \]\]\n{}/"
RETRY_PROMPT = "Your reply could not be read"
SUBMIT = "SUBMIT(answer='42')"
REASONING = "I will answer directly."


@pytest.fixture(autouse=True)
def _no_global_lm() -> Iterator[None]:
    with dspy.context(lm=None):
        yield


def fields(*pairs: tuple[str, str]) -> str:
    return "\n\n".join(f"[[ ## {k} ## ]]\n{v}" for k, v in pairs) + "\n\n[[ ## completed ## ]]"


def code(text: str) -> str:
    return fields(("reasoning", REASONING), ("code", text))


FIRST: dict[str, Any] = {"outcome": "first"}
RETRY: dict[str, Any] = {"outcome": "retry"}


def then(says: str) -> dict[str, Any]:
    return {"outcome": "next", "says": says}


CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "bare code": (code(SUBMIT), FIRST),
    "a python fence": (code(f"```python\n{SUBMIT}\n```"), FIRST),
    "a py fence": (code(f"```py\n{SUBMIT}\n```"), FIRST),
    "a python3 fence": (code(f"```python3\n{SUBMIT}\n```"), FIRST),
    "a capitalised Python fence": (code(f"```Python\n{SUBMIT}\n```"), FIRST),
    "an unlabelled fence": (code(f"```\n{SUBMIT}\n```"), FIRST),
    "decorative double fences": (code(f"```\n```python\n{SUBMIT}\n```\n```"), FIRST),
    "prose before the fence": (code(f"Here is the code:\n```python\n{SUBMIT}\n```"), FIRST),
    "an unclosed fence": (code(f"```python\n{SUBMIT}"), FIRST),
    "an indented fence": (code(f"    ```python\n    {SUBMIT}\n    ```"), FIRST),
    "inline code": (code(f"`{SUBMIT}`"), FIRST),
    "Windows line endings": (code("x = 40\r\nSUBMIT(answer=str(x + 2))\r\n"), FIRST),
    "several python blocks": (code("```python\nx = 40\n```\nthen\n```python\n"
                                   "SUBMIT(answer=str(x + 2))\n```"), FIRST),
    "fields out of order": (fields(("code", SUBMIT), ("reasoning", REASONING)), FIRST),
    "code without reasoning": (fields(("code", SUBMIT)), FIRST),
    "no completed marker": (code(SUBMIT).rsplit("\n\n", 1)[0], FIRST),
    "positional SUBMIT": (code("SUBMIT('42')"), FIRST),
    "JSON instead of fields": (json.dumps({"reasoning": REASONING, "code": SUBMIT}), FIRST),
    "JSON in a fence": ("```json\n" + json.dumps({"reasoning": "r", "code": SUBMIT}) + "\n```",
                        FIRST),
    "markdown headings": (f"## Reasoning\n{REASONING}\n\n## Code\n```python\n{SUBMIT}\n```",
                          FIRST),
    "bold labels": (f"**Reasoning:** {REASONING}\n\n**Code:**\n```python\n{SUBMIT}\n```", FIRST),
    "capitalised headers": (fields(("Reasoning", REASONING), ("Code", SUBMIT)), FIRST),
    "XML tags": (f"<reasoning>{REASONING}</reasoning>\n<code>\n{SUBMIT}\n</code>", FIRST),
    "prose around a fence, no fields": (f"Let me answer.\n\n```python\n{SUBMIT}\n```\nDone.",
                                        FIRST),
    "only a fence": (f"```python\n{SUBMIT}\n```", FIRST),
    "a python block and an output block": (
        code("```python\nprint('six times seven')\n```\n```text\nsix times seven\n```"),
        then("six times seven\n[Note] A ```text block was not run: only Python blocks run.")),
    "a bash fence": (code("```bash\necho 42\n```"),
                     then("Expected Python code but got ```bash fence")),
    "a javascript fence": (code("```javascript\nconsole.log(42)\n```"),
                           then("Expected Python code but got ```javascript fence")),
    "a sql fence": (code("```sql\nSELECT 42;\n```"), then("got ```sql fence")),
    "an empty code field": (code(""), then(EMPTY_CODE)),
    "an empty fence": (code("```python\n```"), then(EMPTY_CODE)),
    "SUBMIT inside prose": (code(f"The answer is 42, so I call {SUBMIT} now."),
                            then("SyntaxError")),
    "truncated code": (code("```python\nfor i in range(3):\n"), then("IndentationError")),
    "SUBMIT with no values": (code("SUBMIT()"), then("SUBMIT expects answer; missing "
                                                     "['answer'], unexpected []")),
    "SUBMIT with a wrong field": (code("SUBMIT(result='42')"),
                                  then("missing ['answer'], unexpected ['result']")),
    "code that raises": (code("print(undefined_name)"), then("NameError")),
    "code that only looks": (code("print(len(context))"), then("7")),
    "a prose answer": ("The answer is 42.", RETRY),
    "a refusal": ("I'm sorry, but I can't help with that.", RETRY),
    "an empty reply": ("", RETRY),
    "reasoning only": (fields(("reasoning", REASONING)), RETRY),
    "cut off before the code": (f"[[ ## reasoning ## ]]\n{REASONING}\n\n[[ ## co", RETRY),
}


@pytest.mark.parametrize("shape", list(CASES))
def test_the_engine_reads_or_recovers_from_a_reply_shape(scripted_lm, shape):
    reply, expected = CASES[shape]
    answer = dspy_reply(reasoning="done", code=SUBMIT)
    server = scripted_lm([
        {"model": "root", "match": STEP.format(1) + ".*" + RETRY_PROMPT, "reply": answer},
        {"model": "root", "match": STEP.format(2), "reply": answer},
        {"model": "root", "match": STEP.format(1), "reply": reply, "times": 1},
    ])
    settings = Settings(root_model="openai/root", api_base=server.api_base)

    result = RecursiveRLM(settings=settings, max_iterations=3)(context="context",
                                                               question="What is 6 x 7?")

    assert (result.status, result.answer) == ("ok", "42"), result.error
    server.verify()
    retries = [e for e in result.events if e.type == "error"]
    calls = {"first": 1, "next": 2, "retry": 2}[expected["outcome"]]
    assert server.stats()["calls"] == result.usage.calls == calls
    assert result.iterations == calls - (expected["outcome"] == "retry")
    if expected["outcome"] == "next":
        assert expected["says"] in result.trajectory[0]["output"]
    if expected["outcome"] == "retry":
        (retry,) = retries
        assert retry.error_type == "UnreadableReply" and "retrying" in retry.detail
    else:
        assert not retries


def test_the_corpus_holds_at_least_30_shapes():
    assert len(CASES) >= 30
