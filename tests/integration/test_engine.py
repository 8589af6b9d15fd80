"""The recursive engine end to end: real bubblewrap sandboxes, the scripted LM over HTTP.

Rule-writing notes: an action prompt holds a preview of the inputs (`variables_info`), the REPL
history and `[[ ## iteration ## ]]\\nK/N`. The root's inputs are `context, question` and a child's
`context, query`, so "Variable: `question`" picks out the root and "Variable: `query`" a child.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandbox_support import count_files_put

from fleet_rlm.config import Settings
from fleet_rlm.engine.rlm import RecursiveRLM
from fleet_rlm.events import EventStream
from fleet_rlm.testing import (
    ScriptedLMServer,
    dspy_reply,
    eager_thread_switching,
    two_level_rlm_rules,
)

STEP = r"\[\[ ## iteration ## \]\]\n{}/"
ROOT = r"Variable: `question`.*"
CHILD = r"Variable: `query`.*"
EXTRACT = r"extract the final outputs now"
DRIVER = b"/fleet/driver.py"


@pytest.fixture(autouse=True)
def _no_global_lm() -> Iterator[None]:
    # The engine prefers a globally configured LM; these tests use the settings' models only.
    with dspy.context(lm=None):
        yield


@pytest.fixture(autouse=True)
def earlier_sandboxes() -> Iterator[set[int]]:
    """Sandboxes this process ran before the test (an earlier test's server may keep a session
    sandbox): the test's own runs must leave none beside them."""
    earlier = our_sandbox_processes()
    yield earlier
    assert our_sandbox_processes() - earlier == set(), "a run left a sandbox process behind"


def action(code: str, reasoning: str = "Next step.") -> str:
    return dspy_reply(reasoning=reasoning, code=code)


def root_step(n: int, code: str, **rule: Any) -> dict[str, Any]:
    return {"model": "root", "match": ROOT + STEP.format(n), "reply": action(code), "times": 1,
            **rule}


def child_step(n: int, code: str, times: int, **rule: Any) -> dict[str, Any]:
    return {"model": "root", "match": CHILD + STEP.format(n), "reply": action(code),
            "times": times, **rule}


def make_settings(server: ScriptedLMServer, **overrides: Any) -> Settings:
    return Settings(root_model="openai/root", sub_model="openai/sub", api_base=server.api_base,
                    **overrides)


def of_type(events: list, kind: str) -> list:
    return [e for e in events if e.type == kind]


def assert_well_formed_tree(events: list) -> None:
    """seq is 1..N, and every node starts once and finishes once."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    started = Counter(e.node_id for e in of_type(events, "rlm_started"))
    finished = Counter(e.node_id for e in of_type(events, "rlm_finished"))
    assert set(started.values()) == {1} and started == finished
    assert {e.node_id for e in events} == set(started)


# -- 1. the tree ------------------------------------------------------------------------------

def test_two_level_tree_answers_and_reports_its_shape(scripted_lm):
    server = scripted_lm(two_level_rlm_rules(
        sub_reply={"a" * 10: "A", "b" * 10: "B", "c" * 10: "C"}))
    rlm = RecursiveRLM(settings=make_settings(server), max_iterations=3)

    result = rlm(context="a" * 10 + "b" * 10 + "c" * 10, question="Summarise.")

    server.verify()
    assert result.status == "ok", result.error
    assert result.answer == "A | B | C"
    events = result.events
    assert_well_formed_tree(events)
    roots = [e for e in of_type(events, "rlm_started") if e.parent_id is None]
    assert len(roots) == 1 and roots[0].depth == 0 and roots[0].seq == 1
    root_id = roots[0].node_id
    children = [e for e in of_type(events, "rlm_started") if e.node_id != root_id]
    assert len(children) == 3
    assert all(c.parent_id == root_id and c.depth == 1 for c in children)
    assert roots[0].iteration is None  # the children came from the root's first code cell:
    assert {c.iteration for c in children} == {1}
    assert roots[0].query == "Summarise." and {c.query for c in children} == {"summarise"}
    child_ids = {c.node_id for c in children}
    assert len(child_ids) == 3
    calls = of_type(events, "lm_call")
    for child in child_ids:
        assert sorted(e.role for e in calls if e.node_id == child) == ["root", "sub"]
    assert sorted(e.role for e in calls if e.node_id == root_id) == ["root", "root"]
    assert all(e.parent_id == root_id and e.depth == 1 for e in calls if e.node_id in child_ids)
    # Each child summarised its own chunk.
    answers = sorted(e.answer["answer"] for e in of_type(events, "rlm_finished")
                     if e.node_id in child_ids)
    assert answers == ["A", "B", "C"]
    assert of_type(events, "rlm_finished")[-1].node_id == root_id == events[-1].node_id


# -- 2. accounting ----------------------------------------------------------------------------

def test_every_call_of_the_tree_is_accounted_including_the_extract_fallback(scripted_lm):
    server = scripted_lm([
        {"model": "root", "match": EXTRACT, "reply": dspy_reply(answer="ALPHA+BETA"),
         "times": 1},
        child_step(1, "SUBMIT(answer=llm_query('upper ' + context))", times=2),
        root_step(1, "res = rlm_query_batched(['shout'] * 2, ['alpha', 'beta'])\nprint(res)"),
        root_step(2, "note, flaky = llm_query_batched(['note on ' + ', '.join(res), 'flaky'])\n"
                     "print(note, flaky)"),
        {"model": "sub", "match": "upper alpha", "reply": "ALPHA", "times": 1},
        {"model": "sub", "match": "upper beta", "reply": "BETA", "times": 1},
        {"model": "sub", "match": "note on ALPHA, BETA", "reply": "noted", "times": 1},
        # It reached the provider and failed: it still counts.
        {"model": "sub", "match": "flaky", "reply": "overloaded", "status": 500, "times": 1},
    ])
    # No retries here: the one failed call is the point (test_provider_faults retries them).
    rlm = RecursiveRLM(settings=make_settings(server, lm_retries=0), max_iterations=2)

    result = rlm(context="two words", question="Shout them.")

    server.verify()
    assert result.status == "extract", result.error
    assert result.answer == "ALPHA+BETA"
    stats = server.stats()
    # 2 root iterations + 2 child iterations + 2 child llm_query + 2 root llm_query + extract.
    assert stats["calls"] == 9
    assert result.usage.calls == stats["calls"]
    assert result.usage.by_model["openai/root"].calls == stats["models"]["root"] == 5
    assert result.usage.by_model["openai/sub"].calls == stats["models"]["sub"] == 4
    calls = of_type(result.events, "lm_call")
    assert len(calls) == stats["calls"]
    assert Counter(e.role for e in calls) == {"root": 4, "sub": 4, "extract": 1}
    assert [e.error is not None for e in calls].count(True) == 1
    assert result.usage.tokens == sum(e.prompt_tokens + e.completion_tokens for e in calls)
    assert result.usage.tokens > 0
    root_id = result.events[0].node_id
    extract = [e for e in of_type(result.events, "rlm_iteration") if e.phase == "extract"]
    assert len(extract) == 1 and extract[0].node_id == root_id and extract[0].iteration == 3
    assert [e.status for e in of_type(result.events, "rlm_finished")] == ["ok", "ok", "extract"]
    assert len(result.trajectory) == 2
    assert result.trajectory[1]["output"].startswith("noted [ERROR]")


def test_the_callers_dspy_context_reaches_every_sub_call(scripted_lm):
    # Host callbacks and the threads of a batch run in the caller's context: dspy's callbacks
    # see every sub-model call, however the sandbox code made it.
    from dspy.utils.callback import BaseCallback

    server = scripted_lm([
        root_step(1, "print(llm_query('one'), llm_query_batched(['two', 'three']))"),
        root_step(2, "SUBMIT(answer='done')"),
        {"model": "sub", "match": "one|two|three", "reply": "ok"},
    ])
    seen: list[str] = []

    class Recorder(BaseCallback):
        def on_lm_start(self, call_id, instance, inputs):
            seen.append(instance.model)

    with dspy.context(callbacks=[Recorder()]):
        result = RecursiveRLM(settings=make_settings(server), max_iterations=3)(
            context="c", question="q")
    assert result.status == "ok", result.error
    assert Counter(seen) == {"openai/root": 2, "openai/sub": 3}


# -- 3. the call limit holds under concurrent batches -----------------------------------------

@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(limit=st.integers(1, 20), sizes=st.lists(st.integers(1, 40), min_size=1, max_size=3))
def test_call_limit_is_never_overshot_by_batches(limit, sizes):
    code = (f"sizes = {sizes!r}\n"
            "got = [llm_query_batched(['item %d.%d' % (b, i) for i in range(k)])\n"
            "       for b, k in enumerate(sizes)]\n"
            "print('answered', sum(not r.startswith('[ERROR]') for g in got for r in g))")
    with ScriptedLMServer([
        root_step(1, code),
        root_step(2, "SUBMIT(answer='done')"),
        {"model": "sub", "match": r"item \d+\.\d+", "reply": "ok", "delay_ms": 2},
    ]) as server:
        rlm = RecursiveRLM(settings=make_settings(server), max_iterations=3, max_calls=limit)
        with eager_thread_switching():
            result = rlm(context="c", question="q")
        stats = server.stats()

    needed = 1 + sum(sizes) + 1
    assert stats["unexpected"] == 0
    assert stats["calls"] <= limit
    assert result.usage.calls == stats["calls"] == min(limit, needed)
    assert result.status == ("budget" if needed > limit else "ok"), result.error
    if limit > 1:  # the first iteration ran its batches
        answered = min(sum(sizes), limit - 1)
        assert f"answered {answered}" in result.trajectory[0]["output"]
    if result.status == "budget":
        assert "calls" in result.error


# -- 4. cancel --------------------------------------------------------------------------------

def _processes() -> dict[int, tuple[int, bytes, str]]:
    """pid -> (ppid, cmdline, state) of every process we can see."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:  # it exited while we looked
            continue
        found[int(entry.name)] = (int(stat[1]), cmdline, stat[0])
    return found


def our_sandbox_processes() -> set[int]:
    """Live sandbox processes descended from this test process (others may run tests too)."""
    procs = _processes()

    def ours(pid: int) -> bool:
        while pid > 1 and pid in procs:
            if pid == os.getpid():
                return True
            pid = procs[pid][0]
        return False

    return {pid for pid, (_, cmd, state) in procs.items()
            if DRIVER in cmd and state != "Z" and ours(pid)}


def still_alive(pids: set[int]) -> set[int]:
    procs = _processes()
    return {p for p in pids if p in procs and DRIVER in procs[p][1] and procs[p][2] != "Z"}


SLOW_SUB = {"model": "sub", "match": "slow", "reply": "s", "delay_ms": 5000}
ASK_CHILD = "print(rlm_query('do the slow part', 'ctx'))"
# name -> (script, the event (type, depth) after which the slow part is under way, nodes)
CANCEL_CASES = {
    "child-sleeps-in-its-sandbox": ([
        child_step(1, "import time\ntime.sleep(30)\nSUBMIT(answer='too late')", times=1),
        root_step(1, ASK_CHILD),
    ], ("rlm_iteration", 1), 2),
    "child-waits-on-a-slow-batch": ([
        child_step(1, "print(llm_query_batched(['slow %d' % i for i in range(4)]))", times=1),
        root_step(1, ASK_CHILD),
        SLOW_SUB,
    ], ("rlm_iteration", 1), 2),
    "root-waits-on-a-slow-model": ([
        root_step(1, "print('never runs')", delay_ms=5000),
    ], ("rlm_started", 0), 1),
}


@pytest.mark.parametrize("case", sorted(CANCEL_CASES))
def test_cancel_stops_the_whole_tree_quickly_and_kills_its_sandboxes(scripted_lm, case,
                                                                   earlier_sandboxes):
    script, (kind, depth), nodes = CANCEL_CASES[case]
    server = scripted_lm(script)
    rlm = RecursiveRLM(settings=make_settings(server), max_iterations=3)
    run, root = rlm.start()
    done: dict[str, Any] = {}

    def call() -> None:
        done["result"] = root(context="c", question="q")
        done["at"] = time.monotonic()

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while not [e for e in run.stream.events if e.type == kind and e.depth == depth]:
        assert time.monotonic() < deadline and worker.is_alive(), "the slow part never started"
        time.sleep(0.02)
    time.sleep(1.0)
    sandboxes = our_sandbox_processes() - earlier_sandboxes
    assert sandboxes, "expected the tree's sandboxes to be running"

    cancelled_at = time.monotonic()
    run.cancel.cancel("user")
    worker.join(timeout=10)

    assert not worker.is_alive()
    assert done["at"] - cancelled_at < 2.0
    result = done["result"]
    assert result.status == "cancelled" and result.error == "user"
    events = list(run.stream.events)
    cancelled = of_type(events, "cancelled")
    assert len(cancelled) == 1 and cancelled[0].node_id == root.node.node_id
    assert cancelled[0].reason == "user"
    # The child may report its end just after the root returns: wait for its last event.
    while len(of_type(run.stream.events, "rlm_finished")) < nodes and time.monotonic() < deadline:
        time.sleep(0.02)
    events = list(run.stream.events)
    assert_well_formed_tree(events)
    assert len(of_type(events, "rlm_started")) == nodes
    assert {e.status for e in of_type(events, "rlm_finished")} == {"cancelled"}
    assert not of_type(events, "error")
    assert still_alive(sandboxes) == set()
    assert our_sandbox_processes() - earlier_sandboxes == set()
    assert server.stats()["unexpected"] == 0


def test_cancel_between_the_reply_and_its_exec_runs_none_of_the_code(scripted_lm):
    """The sandbox killed by cancel must not restart to run the code the model just sent."""
    server = scripted_lm([root_step(1, "import time\ntime.sleep(20)\nprint('ran anyway')")])
    cancelled_at: list[float] = []

    def cancel_on_first_code(event: Any) -> None:
        if event.type == "rlm_iteration" and not cancelled_at:
            cancelled_at.append(time.monotonic())
            run.cancel.cancel("user")

    rlm = RecursiveRLM(settings=make_settings(server), max_iterations=3)
    run, root = rlm.start(stream=EventStream("turn", sinks=[cancel_on_first_code]))
    result = root(context="c", question="q")

    assert time.monotonic() - cancelled_at[0] < 2.0
    assert result.status == "cancelled" and result.error == "user"
    assert not of_type(run.stream.events, "code_output")
    assert [e.type for e in run.stream.events][-2:] == ["cancelled", "rlm_finished"]
    assert server.stats()["calls"] == result.usage.calls == 1


def test_a_finished_node_leaves_no_cancel_hook_behind(scripted_lm):
    """A node's sandbox is closed on cancel only while the node runs: its shutdown unhooks it."""
    server = scripted_lm([root_step(1, "SUBMIT(answer='done')")])
    run, root = RecursiveRLM(settings=make_settings(server), max_iterations=3).start()
    assert root(context="c", question="q").status == "ok"
    assert run.cancel._callbacks == {}


# -- 5. malformed replies ---------------------------------------------------------------------

GARBAGE = "Sure! I would love to help, but I will not use your format."


def test_one_unparseable_reply_is_retried_with_the_error_shown(scripted_lm):
    server = scripted_lm([
        {"model": "root", "match": STEP.format(1) + ".*Your reply could not be read: .*"
                                   + "expected the fields \\['reasoning', 'code'\\]",
         "reply": action("SUBMIT(answer='fine')"), "times": 1},
        {"model": "root", "match": STEP.format(1), "reply": GARBAGE, "times": 1},
    ])
    result = RecursiveRLM(settings=make_settings(server), max_iterations=3)(
        context="c", question="q")

    server.verify()
    assert result.status == "ok", result.error
    assert result.answer == "fine"
    assert server.stats()["calls"] == result.usage.calls == 2
    (retry,) = of_type(result.events, "error")
    assert retry.error_type == "UnreadableReply"
    assert retry.detail == ("attempt 1 of 3 could not be read; retrying with the error shown "
                            "to the model")


def test_replies_that_never_parse_end_the_run_with_an_error_and_keep_the_trajectory(scripted_lm):
    server = scripted_lm([
        root_step(1, "print('step one done')"),
        {"model": "root", "match": STEP.format(2), "reply": GARBAGE, "times": 3},
    ])
    result = RecursiveRLM(settings=make_settings(server), max_iterations=3)(
        context="c", question="q")

    server.verify()
    stats = server.stats()
    assert stats["unexpected"] == 0 and stats["calls"] == result.usage.calls == 4
    assert result.status == "error"
    assert result.error.startswith("UnreadableReply: the model's reply to iteration 2 could "
                                   "not be read in 3 attempt(s) (FLEET_MAX_STEP_ATTEMPTS)")
    assert result.answer is None
    errors = of_type(result.events, "error")
    assert [e.detail for e in errors] == [
        "attempt 1 of 3 could not be read; retrying with the error shown to the model",
        "attempt 2 of 3 could not be read; retrying through the JSON adapter", None]
    assert errors[-1].error_type == "UnreadableReply"
    assert [e.status for e in of_type(result.events, "rlm_finished")] == ["error"]
    assert len(result.trajectory) == 1
    assert "step one done" in result.trajectory[0]["output"]


# -- 6. a large context -----------------------------------------------------------------------

def test_a_20_mb_context_crosses_into_the_sandbox_once(scripted_lm, monkeypatch):
    sent = count_files_put(monkeypatch)

    context = ("0123456789" * 2_000_000)[:-6] + "NEEDLE"
    assert len(context) == 20_000_000
    server = scripted_lm([
        root_step(1, "print(len(context), context[-6:])"),
        {"model": "root", "match": r"20000000 NEEDLE.*" + STEP.format(2), "times": 1,
         "reply": action("SUBMIT(answer=context)")},
    ])
    rlm = RecursiveRLM(settings=make_settings(server), max_iterations=3)

    started = time.monotonic()
    result = rlm(context=context, question="Return it.")
    elapsed = time.monotonic() - started

    assert result.status == "ok", result.error
    server.verify()
    assert result.answer == context
    assert sent == {"context.text": 1}
    assert elapsed < 30, f"a 20 MB context took {elapsed:.1f} s"
    # The model saw a preview, never the context itself.
    assert max(e.prompt_tokens for e in of_type(result.events, "lm_call")) < 50_000


def test_a_multi_document_context_crosses_once_per_document(scripted_lm, monkeypatch):
    sent = count_files_put(monkeypatch)

    context = {"a.txt": "a" * 3_000_000 + "END-A", "b.txt": "b" * 3_000_000 + "END-B"}
    server = scripted_lm([
        root_step(1, "print(sorted(context), context['a.txt'][-5:])\ncontext['a.txt'] = 'mine'"),
        root_step(2, "print(context['a.txt'][-5:], context['b.txt'][-5:])"),
        {"model": "root", "match": r"END-A END-B.*" + STEP.format(3), "times": 1,
         "reply": action("SUBMIT(answer=str(sum(map(len, context.values()))))")},
    ])
    result = RecursiveRLM(settings=make_settings(server), max_iterations=4)(
        context=context, question="How long?")
    assert result.status == "ok", result.error
    server.verify()
    assert result.answer == "6000010"
    # Each document went into the sandbox once, as a file of its own; later iterations bound
    # the sandbox's own copy again (the cell's change to it did not last).
    assert sent == {"context.text": 2}


# -- 7. a sandbox that dies -------------------------------------------------------------------

def test_a_sandbox_that_dies_is_restarted_and_the_model_is_told(scripted_lm):
    server = scripted_lm([
        root_step(1, "import os\nos._exit(1)"),
        {"model": "root", "match": r"restarted.*" + STEP.format(2), "times": 1,
         "reply": action("SUBMIT(answer=str(len(context)) + ' ' + question)")},
    ])
    result = RecursiveRLM(settings=make_settings(server), max_iterations=3)(
        context="x" * 1234, question="still here")

    server.verify()
    assert result.status == "ok", result.error
    assert result.answer == "1234 still here"  # the inputs were reloaded into the new sandbox
    assert "restarted" in result.trajectory[0]["output"]
    died = of_type(result.events, "code_output")[0]
    assert died.error_type == "SandboxDied" and died.state_lost


# -- 8. budget limits -------------------------------------------------------------------------

def test_rlm_query_at_max_depth_falls_back_to_llm_query(scripted_lm):
    server = scripted_lm([
        child_step(1, "SUBMIT(answer=rlm_query('level two', context))", times=1),
        root_step(1, "SUBMIT(answer=rlm_query('level one', 'ctx-A'))"),
        {"model": "sub", "match": r"level two\n\nContext:\nctx-A", "reply": "deep answer",
         "times": 1},
    ])
    result = RecursiveRLM(settings=make_settings(server), max_iterations=3, max_depth=1)(
        context="c", question="q")

    server.verify()
    assert result.status == "ok", result.error
    assert result.answer == "deep answer"
    started = of_type(result.events, "rlm_started")
    assert [e.depth for e in started] == [0, 1]  # no node at depth 2
    errors = of_type(result.events, "error")
    assert len(errors) == 1 and errors[0].error_type == "MaxDepth"
    assert errors[0].node_id == started[1].node_id and errors[0].depth == 1
    sub_calls = [e for e in of_type(result.events, "lm_call") if e.role == "sub"]
    assert [e.node_id for e in sub_calls] == [started[1].node_id]
    assert result.usage.calls == server.stats()["calls"] == 3


def test_max_usd_ends_the_run_with_status_budget(scripted_lm):
    rules = [
        root_step(1, "print('first')"),
        root_step(2, "print('second')"),
        root_step(3, "SUBMIT(answer='done')"),
    ]
    prices = {"openai/root": {"input_per_mtok": 1e6, "output_per_mtok": 1e6}}  # $1 a token
    server = scripted_lm(rules)

    def run(max_usd: float, call_max_tokens: int = 16_000):
        server.set_rules(rules)
        settings = make_settings(server, prices=prices, call_max_tokens=call_max_tokens)
        rlm = RecursiveRLM(settings=settings, max_iterations=4, max_usd=max_usd)
        return rlm(context="c", question="q")

    free = run(max_usd=1e12)
    assert free.status == "ok", free.error
    costs = [e.cost_usd for e in of_type(free.events, "lm_call")]
    tokens = [e.prompt_tokens + e.completion_tokens for e in of_type(free.events, "lm_call")]
    assert len(costs) == 3 and costs == pytest.approx(tokens)  # the override prices the calls
    assert free.usage.usd == pytest.approx(sum(costs))

    limit = costs[0] * 1.5  # the first call fits, the second cannot
    assert limit < costs[0] + costs[1]
    # Each call reserves its largest completion: as long as the longest reply, here.
    longest = max(e.completion_tokens for e in of_type(free.events, "lm_call"))
    capped = run(max_usd=limit, call_max_tokens=longest)

    assert capped.status == "budget"
    assert "usd" in capped.error
    assert server.stats()["calls"] == capped.usage.calls == 1
    assert capped.usage.usd <= limit
    assert capped.answer is None
    assert [e.status for e in of_type(capped.events, "rlm_finished")] == ["budget"]


def test_every_iteration_is_told_the_tree_rules(scripted_lm):
    # The action signature is derived once per run (dspy would build it per iteration): each
    # iteration's prompt still carries the rules of our REPL, not dspy's own.
    from fleet_rlm.engine.facade import TREE_NOTE

    server = scripted_lm([root_step(1, "x = 1\nprint(x)"), root_step(2, "print(x + 1)"),
                          root_step(3, "SUBMIT(answer=str(x + 2))")])
    result = RecursiveRLM(settings=make_settings(server), max_iterations=3)(
        context="c", question="Count.")
    server.verify()
    assert result.status == "ok" and result.answer == "3", result.error
    prompts = [r["text"] for r in server.requests() if r["model"] == "root"]
    assert len(prompts) == 3
    note = " ".join(TREE_NOTE.split()[:8])
    assert all(note in " ".join(p.split()) for p in prompts)


def test_a_program_source_that_fails_leaves_the_baseline(scripted_lm, caplog):
    def unreadable(settings: Settings) -> None:
        raise OSError("the store is gone")

    run, _ = RecursiveRLM(settings=make_settings(scripted_lm([])), program=unreadable).start()
    assert run.programs == {}
    assert "could not read the version of the engine to run (OSError: the store is gone)" \
        in caplog.text


def test_the_python_apis_engine_reads_the_promoted_version_and_the_engines_does_not(
        scripted_lm):
    import fleet_rlm
    from fleet_rlm.api import promoted_engine

    settings = make_settings(scripted_lm([]))
    assert fleet_rlm.RecursiveRLM(settings=settings).program is promoted_engine
    assert fleet_rlm.RecursiveRLM(settings=settings, program=None).program is None
    assert RecursiveRLM(settings=settings).program is None
