"""The budget holds in a real run: real bubblewrap sandboxes, the scripted LM over HTTP.

Each test here is a way the limits were once escaped: concurrent calls past the USD limit, a
model with no price, a cell sleeping past the wall limit, depth counted twice in chat turns,
dspy's in-sandbox `dspy.RLM`, a cancelled call with no record, a child sandbox started on a
spent budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dspy
import pytest

from fleet_rlm.budget import Budget, Limits, UnpricedModel
from fleet_rlm.config import Settings
from fleet_rlm.engine.agent import InMemorySession
from fleet_rlm.engine.rlm import RecursiveRLM
from fleet_rlm.engine.turn import Turn
from fleet_rlm.events import EventStream
from fleet_rlm.sandbox import SandboxInterpreter, create_sandbox
from fleet_rlm.testing import AGENT_ANSWER, ScriptedLMServer, dspy_agent_step, dspy_reply

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


def counted_sandboxes(settings: Settings) -> tuple[list, Callable[[], SandboxInterpreter]]:
    """An interpreter factory for RecursiveRLM, and the list of every sandbox it made."""
    made: list = []

    def interpreter() -> SandboxInterpreter:
        made.append(create_sandbox(settings))
        return SandboxInterpreter(made[-1], timeout=settings.exec_timeout_s)

    return made, interpreter


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


def test_a_chat_turn_with_an_unpriced_model_ends_with_a_clear_error(scripted_lm, tmp_path):
    server = scripted_lm([])
    settings = make_settings(server, allow_unpriced_models=False)
    stream = EventStream("t")
    result = Turn(settings, InMemorySession(settings, workspace=tmp_path), stream, "hi").run()

    assert result.status == "error"
    assert result.error.startswith("UnpricedModel: model 'openai/root' has no known price")
    assert [e.type for e in stream.events] == ["turn_started", "error", "turn_finished"]
    assert server.stats()["calls"] == 0


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


def test_a_budget_stopped_chat_turn_answers_with_its_partial_result(scripted_lm):
    """Two calls: the agent's step and the delegated run's first iteration; the second
    iteration is refused, and the turn's answer is what the run had printed."""
    server = scripted_lm([
        {"model": "root", "match": r"iteration ## \]\]\n1/", "times": 1,
         "reply": dspy_reply(reasoning="half", code="print('half counted: 250')")},
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": dspy_agent_step("delegate", "rlm_query", question="How many?")},
    ])
    settings = Settings(root_model="openai/root", api_base=server.api_base, max_calls=2,
                        allow_unpriced_models=True)
    session = InMemorySession(settings)
    session.add_document("hay.txt", "hay needle " * 50)
    stream = EventStream("t")
    try:
        result = Turn(settings, session, stream, "How many needles?").run()
    finally:
        session.close()
    assert result.status == "budget", result.error
    assert result.answer is not None and "half counted: 250" in result.answer
    finished = stream.events[-1]
    assert (finished.type, finished.status, finished.answer) == ("turn_finished", "budget",
                                                                 result.answer)
    server.verify()


# -- depth: one number, counted from the top of the tree, in every entry point ------------------

def test_in_a_chat_turn_rlm_query_at_max_depth_falls_back_to_llm_query(scripted_lm, tmp_path):
    """max_depth=1: the agent is depth 0 and its delegated RLM depth 1, so that RLM's own
    rlm_query is answered by llm_query, as in the Python API."""
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": dspy_reply(reasoning="r", answer="ok")},
        root_step(1, "SUBMIT(answer=rlm_query('go deeper', context))"),
        {"model": "sub", "match": r"go deeper\n\nContext:\nthe report", "reply": "fell back",
         "times": 1},
        {"model": "root", "match": "observation_0", "times": 1,
         "reply": dspy_agent_step("done", "finish")},
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": dspy_agent_step("delegate", "rlm_query", question="what is deep?")},
    ])
    settings = make_settings(server, max_depth=1)
    session = InMemorySession(settings, workspace=tmp_path)
    session.add_document("report.txt", "the report")
    stream = EventStream("t")
    result = Turn(settings, session, stream, "dig in").run()

    server.verify()
    assert result.status == "ok", result.error
    started = of_type(stream.events, "rlm_started")
    assert [e.depth for e in started] == [1]  # no node at depth 2
    errors = of_type(stream.events, "error")
    assert [(e.error_type, e.depth) for e in errors] == [("MaxDepth", 1)]
    assert "exceeds max depth 1" in errors[0].message
    (observation,) = [e for e in of_type(stream.events, "tool_result")
                      if e.tool_name == "rlm_query"]
    assert observation.output == "fell back" and not observation.error
    assert [e.remaining["depth"] for e in of_type(stream.events, "budget")] == [0]


def test_a_shared_budget_without_a_depth_limit_reports_the_runs_own(scripted_lm):
    server = scripted_lm([root_step(1, "SUBMIT(answer=str(budget()['depth']))")])
    shared = Budget(Limits(max_calls=10))
    result = RecursiveRLM(settings=make_settings(server), budget=shared, max_depth=1)(
        context="c", question="q")
    assert (result.status, result.answer) == ("ok", "1")


def test_at_max_depth_0_a_chat_agent_is_told_it_cannot_delegate(scripted_lm, tmp_path):
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": dspy_reply(reasoning="r", answer="ok")},
        {"model": "root", "match": "observation_0", "times": 1,
         "reply": dspy_agent_step("read it myself", "finish")},
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": dspy_agent_step("delegate", "rlm_query", question="what is deep?")},
    ])
    settings = make_settings(server, max_depth=0)
    stream = EventStream("t")
    result = Turn(settings, InMemorySession(settings, workspace=tmp_path), stream, "hi").run()

    server.verify()
    assert result.status == "ok", result.error
    assert not of_type(stream.events, "rlm_started")
    (observation,) = [e for e in of_type(stream.events, "tool_result")
                      if e.tool_name == "rlm_query"]
    assert "past this turn's max depth 0" in observation.output


# -- a spent budget starts nothing more; a cancelled call is on record -------------------------

def test_no_child_sandbox_starts_once_the_budget_is_spent(scripted_lm):
    server = scripted_lm([
        root_step(1, "print(rlm_query_batched(['a', 'b'], ['x', 'y']))"),
    ])
    settings = make_settings(server)
    made, interpreter = counted_sandboxes(settings)
    result = RecursiveRLM(settings=settings, max_iterations=3, max_calls=1,
                          interpreter_factory=interpreter)(context="c", question="q")

    assert result.status == "budget" and "calls 1/1" in result.error
    assert result.trajectory[0]["output"].count("[ERROR] BudgetExceeded") == 2
    assert [s.work_dir is not None for s in made] == [True]  # the root's sandbox only
    assert [e.depth for e in of_type(result.events, "rlm_started")] == [0]
    assert server.stats()["calls"] == result.usage.calls == 1


def test_a_call_cancelled_in_flight_is_recorded_with_its_estimated_usage(scripted_lm):
    server = scripted_lm([root_step(1, "print('never runs')", delay_ms=5000)])
    run, root = RecursiveRLM(settings=make_settings(server), max_iterations=3).start()
    run.stream.subscribe(lambda e: e.type == "rlm_started" and threading.Timer(
        0.5, run.cancel.cancel, ["user"]).start())

    result = root(context="c", question="q")

    assert result.status == "cancelled"
    (call,) = of_type(run.stream.events, "lm_call")
    assert call.usage_estimated and call.error.startswith("Cancelled")
    assert call.prompt_tokens > 0 and call.completion_tokens == 0
    assert result.usage.calls == 1 and result.usage.prompt_tokens == call.prompt_tokens
    assert server.stats()["calls"] == 1


# -- dspy's in-sandbox facade: dspy.RLM is a node of the tree, or refused ----------------------

BUILD_RLM = ("import dspy\n"
             "r = dspy.RLM('context, query -> answer')(context='abc', query='what is it?')\n"
             "print('got:', r.answer)")


def test_dspy_rlm_in_the_repl_is_refused_at_max_depth_0(scripted_lm):
    server = scripted_lm([
        root_step(2, "SUBMIT(answer='refused')",
                  match=ROOT + r"dspy\.RLM at depth 1 exceeds max depth 0.*" + STEP.format(2)),
        root_step(1, BUILD_RLM),
    ])
    settings = make_settings(server)
    made, interpreter = counted_sandboxes(settings)
    result = RecursiveRLM(settings=settings, max_iterations=3, max_depth=0,
                          interpreter_factory=interpreter)(context="c", question="q")

    server.verify()
    assert result.status == "ok", result.error
    assert result.answer == "refused"
    assert "got:" not in result.trajectory[0]["output"]
    assert len(made) == 1  # no sandbox for the refused RLM
    assert [e.depth for e in of_type(result.events, "rlm_started")] == [0]
    assert server.stats()["calls"] == result.usage.calls == 2


def test_dspy_rlm_in_the_repl_runs_as_a_child_node_with_its_own_sandbox_and_costs(scripted_lm):
    server = scripted_lm([
        child_step(1, "SUBMIT(answer='child saw ' + context)", times=1),
        root_step(2, "SUBMIT(answer='done')",
                  match=ROOT + r"got: child saw abc.*" + STEP.format(2)),
        root_step(1, BUILD_RLM),
    ])
    result = RecursiveRLM(settings=make_settings(server), max_iterations=3, max_depth=1)(
        context="c", question="q")

    server.verify()
    assert result.status == "ok", result.error
    started = of_type(result.events, "rlm_started")
    assert [(e.depth, e.parent_id) for e in started] == [(0, None), (1, started[0].node_id)]
    assert started[1].iteration == 1
    finished = of_type(result.events, "rlm_finished")
    assert {e.node_id: e.status for e in finished} == {s.node_id: "ok" for s in started}
    calls = of_type(result.events, "lm_call")
    assert [(e.node_id, e.role) for e in calls if e.node_id == started[1].node_id] == [
        (started[1].node_id, "root")]
    assert len(calls) == result.usage.calls == server.stats()["calls"] == 3


def test_session_code_that_ignores_the_interrupt_is_killed_soon_after_the_wall_limit(
        scripted_lm):
    stubborn = ("import time\n"
                "for _ in range(100):\n"
                "    try:\n"
                "        time.sleep(60)\n"
                "    except KeyboardInterrupt:\n"
                "        pass")
    server = scripted_lm([{"model": "root", "match": "next_thought", "times": 1,
                           "reply": dspy_agent_step("stall", "python", code=stubborn)}])
    settings = Settings(root_model="openai/root", api_base=server.api_base, max_wall_s=2.0,
                        exec_timeout_s=60, exec_kill_grace_s=1.0)
    session = InMemorySession(settings)
    started = time.monotonic()
    try:
        result = Turn(settings, session, EventStream("t"), "stall").run()
    finally:
        session.close()
    elapsed = time.monotonic() - started
    assert result.status == "budget", result.error
    assert elapsed < 7, f"the turn went on {elapsed:.1f} s past a 2 s limit"


@pytest.mark.parametrize("kind", ["CodeAct", "ProgramOfThought"])
def test_code_running_predictors_outside_the_tree_are_refused_in_the_repl(scripted_lm, kind):
    server = scripted_lm([
        root_step(2, "SUBMIT(answer='refused')",
                  match=ROOT + rf"dspy\.{kind} is unavailable in this REPL.*" + STEP.format(2)),
        root_step(1, f"import dspy\nprint(dspy.{kind}('q -> a')(q='x'))"),
    ])
    result = RecursiveRLM(settings=make_settings(server), max_iterations=3)(
        context="c", question="q")

    server.verify()
    assert result.answer == "refused"
    assert server.stats()["calls"] == result.usage.calls == 2
