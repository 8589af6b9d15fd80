"""The budget holds in a real run: real bubblewrap sandboxes, the scripted LM over HTTP.

Each test here is a way the limits were once escaped: concurrent calls past the USD limit, a
model with no price, a cell sleeping past the wall limit, depth counted twice in chat turns,
dspy's in-sandbox `dspy.RLM`, a cancelled call with no record, a child sandbox started on a
spent budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dspy
import pytest

from fleet_rlm.budget import UnpricedModel
from fleet_rlm.config import Settings
from fleet_rlm.engine.agent import InMemorySession
from fleet_rlm.engine.rlm import RecursiveRLM
from fleet_rlm.engine.turn import Turn
from fleet_rlm.events import EventStream
from fleet_rlm.testing import ScriptedLMServer, dspy_agent_step, dspy_reply

STEP = r"\[\[ ## iteration ## \]\]\n{}/"
ROOT = r"Variable: `question`.*"
CHILD = r"Variable: `query`.*"


@pytest.fixture(autouse=True)
def _no_global_lm() -> Iterator[None]:
    with dspy.context(lm=None):
        yield


def root_step(n: int, code: str, **rule: Any) -> dict[str, Any]:
    return {"model": "root", "match": ROOT + STEP.format(n),
            "reply": dspy_reply(reasoning="next", code=code), "times": 1, **rule}


def child_step(n: int, code: str, **rule: Any) -> dict[str, Any]:
    return {"model": "root", "match": CHILD + STEP.format(n),
            "reply": dspy_reply(reasoning="next", code=code), **rule}


def make_settings(server: ScriptedLMServer, **overrides: Any) -> Settings:
    return Settings(root_model="openai/root", sub_model="openai/sub", api_base=server.api_base,
                    **overrides)


def of_type(events: list, kind: str) -> list:
    return [e for e in events if e.type == kind]


# -- USD: every call reserves its worst case before it is sent ---------------------------------

def test_usd_limit_holds_under_64_concurrent_calls(scripted_lm):
    reply = "x" * 2000  # 500 completion tokens as the scripted server counts them
    server = scripted_lm([
        root_step(1, "got = llm_query_batched(['item %d' % i for i in range(64)])\n"
                     "print('answered', sum(not r.startswith('[ERROR]') for r in got))"),
        root_step(2, "SUBMIT(answer='done')"),
        {"model": "sub", "match": r"item \d+", "reply": reply, "delay_ms": 400},
    ])
    # The sub-model: $0.0001 a prompt token, $0.001 a completion token, so a call costs about
    # $0.50 and reserves $0.60 (600 completion tokens at most); the root model is free.
    prices = {"openai/sub": {"input_per_mtok": 100.0, "output_per_mtok": 1000.0},
              "openai/root": {"input_per_mtok": 0.0, "output_per_mtok": 0.0}}
    settings = make_settings(server, prices=prices, call_max_tokens=600,
                             allow_unpriced_models=False)
    run, root = RecursiveRLM(settings=settings, max_iterations=3, max_usd=5.0).start()
    run.batch_workers = 64  # all 64 calls in flight together

    result = root(context="c", question="q")

    assert result.status == "ok", result.error
    sub_calls = [e for e in of_type(run.stream.events, "lm_call") if e.role == "sub"]
    admitted = len(sub_calls)
    assert 1 <= admitted <= 8  # $5 / $0.60 reserved each
    assert f"answered {admitted}" in result.trajectory[0]["output"]
    assert server.stats()["calls"] == result.usage.calls == admitted + 2
    assert result.usage.usd == pytest.approx(sum(e.cost_usd for e in sub_calls))
    assert result.usage.usd <= 5.0
    # Every call asked for no more completion than it reserved.
    assert all(e.completion_tokens <= 600 for e in sub_calls)


def test_a_run_with_a_usd_limit_and_an_unpriced_model_is_refused(scripted_lm):
    server = scripted_lm([root_step(1, "SUBMIT(answer='never')")])
    rlm = RecursiveRLM(settings=make_settings(server, allow_unpriced_models=False), max_usd=1.0)

    with pytest.raises(UnpricedModel, match="'openai/root' has no known price.*FLEET_PRICES"):
        rlm(context="c", question="q")
    assert server.stats()["calls"] == 0

    priced = {"openai/root": {"input_per_mtok": 1.0, "output_per_mtok": 1.0},
              "openai/sub": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}
    rlm = RecursiveRLM(settings=make_settings(server, allow_unpriced_models=False,
                                              prices=priced), max_usd=1.0)
    assert rlm(context="c", question="q").status == "ok"
    allowed = RecursiveRLM(settings=make_settings(server, allow_unpriced_models=True), max_usd=1.0)
    server.set_rules([root_step(1, "SUBMIT(answer='unmetered')")])
    result = allowed(context="c", question="q")
    assert result.status == "ok" and result.usage.usd_unknown_calls == 1


# -- wall time: a watchdog stops the run wherever it is ----------------------------------------

def test_a_cell_still_sleeping_at_the_wall_limit_is_interrupted(scripted_lm):
    server = scripted_lm([root_step(1, "import time\ntime.sleep(60)\nprint('woke up')")])
    rlm = RecursiveRLM(settings=make_settings(server, exec_timeout_s=30), max_iterations=3,
                       max_wall_s=2.0)
    started = time.monotonic()
    result = rlm(context="c", question="q")
    elapsed = time.monotonic() - started

    assert result.status == "budget", result.error
    assert result.error.startswith("budget exceeded: wall_s")
    assert elapsed < 6, f"the run went on {elapsed:.1f} s past a 2 s limit"
    assert "woke up" not in str(result.trajectory)
    assert [e.status for e in of_type(result.events, "rlm_finished")] == ["budget"]
    assert server.stats()["calls"] == result.usage.calls == 1


def test_a_chat_turn_stops_at_the_wall_limit_and_its_sandbox_keeps_its_variables(scripted_lm):
    server = scripted_lm([
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": dspy_agent_step("wait a while", "python",
                                  code="x = 7\nimport time\ntime.sleep(60)\nprint('woke up')")},
    ])
    settings = Settings(root_model="openai/root", api_base=server.api_base, max_wall_s=2.0,
                        exec_timeout_s=30)
    session = InMemorySession(settings)
    stream = EventStream("t")
    started = time.monotonic()
    try:
        result = Turn(settings, session, stream, "sleep, please").run()
        elapsed = time.monotonic() - started
        assert result.status == "budget", result.error
        assert result.error.startswith("budget exceeded: wall_s")
        assert elapsed < 6, f"the turn went on {elapsed:.1f} s past a 2 s limit"
        assert [e.type for e in stream.events][-2:] == ["error", "turn_finished"]
        # Interrupted, not killed: the session's sandbox and its variables are still there.
        assert session.sandbox().execute("print(x)", timeout=10).stdout == "7\n"
    finally:
        session.close()
    server.verify()
