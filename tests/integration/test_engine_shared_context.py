"""Child RLMs read their parent's context from the one copy the host wrote for the parent: no
new serialisation per child (real bubblewrap sandboxes, the scripted LM over HTTP)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import dspy
import pytest
from sandbox_support import count_files_put

from fleet_rlm.config import Settings
from fleet_rlm.engine.rlm import RecursiveRLM
from fleet_rlm.sandbox.base import DriverSession
from fleet_rlm.testing import dspy_reply

STEP = r"\[\[ ## iteration ## \]\]\n{}/"
ROOT = r"Variable: `question`.*"
SIZE = 200_000
MY_FILE = ("import os, hashlib, json\n"
           "name = [f for f in os.listdir('/fleet/vars') if f.endswith('context.text')][0]\n"
           "ino = os.stat('/fleet/vars/' + name).st_ino\n")
CHILD = MY_FILE + ("SUBMIT(answer=f\"{len(context)} {ino} "
                   "{hashlib.sha256(context.encode()).hexdigest()}\")")


@pytest.fixture(autouse=True)
def _no_global_lm() -> Iterator[None]:
    with dspy.context(lm=None):
        yield


def context_of(size: int) -> str:
    return "".join(f"line {i:08d} é\n" for i in range(size // 16 + 1))[:size]


def child_rule(chars: int, times: int) -> dict[str, Any]:
    """A child whose context the model was told is `chars` long."""
    return {"model": "root", "times": times,
            "match": rf"Total length: {chars:,} characters.*Variable: `query`.*" + STEP.format(1),
            "reply": dspy_reply(reasoning="Report.", code=CHILD)}


def test_children_read_the_parents_context_from_its_one_copy(scripted_lm, monkeypatch):
    written = count_files_put(monkeypatch)

    frames: list[int] = []
    queue = DriverSession._queue_callback

    def counting_frames(self: DriverSession, call: dict, callbacks: dict) -> None:
        frames.append(len(json.dumps(call)))
        queue(self, call, callbacks)

    monkeypatch.setattr(DriverSession, "_queue_callback", counting_frames)
    context = context_of(SIZE)
    part = context[1000:100_000]
    root = MY_FILE + ("answers = rlm_query_batched(['whole'] * 3, [context] * 3)\n"
                      "answers.append(rlm_query('part', context[1000:100000]))\n"
                      "SUBMIT(answer=json.dumps([ino, answers]))")
    server = scripted_lm([
        {"model": "root", "match": ROOT + STEP.format(1), "times": 1,
         "reply": dspy_reply(reasoning="Fan out.", code=root)},
        child_rule(SIZE, 3), child_rule(len(part), 1),
    ])
    settings = Settings(root_model="openai/root", sub_model="openai/sub",
                        api_base=server.api_base)

    result = RecursiveRLM(settings=settings, max_iterations=2)(context=context, question="q")

    assert result.status == "ok", result.error
    server.verify()
    ino, answers = json.loads(result.answer)
    whole = f"{SIZE} {ino} {hashlib.sha256(context.encode()).hexdigest()}"
    assert answers == [whole] * 3 + [
        f"{len(part)} {ino} {hashlib.sha256(part.encode()).hexdigest()}"]
    # The context was written once, for the root; each child links that file.
    assert written == {"context.text": 1}
    assert max(frames) < 2000  # references crossed, never the text
    started = [e for e in result.events if e.type == "rlm_started" and e.depth == 1]
    assert sorted(e.inputs["context"].chars for e in started) == [len(part)] + [SIZE] * 3
    assert {e.inputs["context"].type for e in started} == {"str"}
