"""Provider faults through the real client path: the scripted LM server misbehaves (status codes
with Retry-After, dropped and cut connections, stalls, malformed bodies, replies cut at the token
limit, reasoning-only content, native tool calls) and BudgetedLM retries, reports and counts."""

from __future__ import annotations

import threading
import time
from typing import Any

import dspy
import pytest
from dspy.utils.exceptions import LMServerError, LMTransportError

from fleet_rlm.budget import Budget, BudgetExceeded, Cancelled, Limits
from fleet_rlm.events import EventStream
from fleet_rlm.lm import BudgetedLM, ProviderRefused, RetryPolicy, TruncatedReply
from fleet_rlm.testing import ScriptedLMServer, dspy_reply

FAST = RetryPolicy(retries=3, turn_retries=10, base_s=0.01, max_s=1.0, length_retries=1)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def budgeted(server: ScriptedLMServer | None, *, retry: RetryPolicy = FAST,
             limits: Limits | None = None, role: str = "root", timeout: float = 5.0,
             api_base: str | None = None, **kwargs: Any) -> BudgetedLM:
    return BudgetedLM("openai/m", budget=Budget(limits or Limits()), stream=EventStream("t"),
                      role=role, retry=retry, api_key="test-key", timeout=timeout,
                      api_base=api_base or server.api_base, **kwargs)


def calls(lm: BudgetedLM) -> list:
    return [e for e in lm.stream.events if e.type == "lm_call"]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_and_each_attempt_counts(scripted_lm, status):
    server = scripted_lm([{"status": status, "reply": "busy", "times": 2},
                          {"reply": "fine", "times": 1}])
    lm = budgeted(server)
    assert lm("q") == ["fine"]
    server.verify()
    events = calls(lm)
    assert [(e.attempt, e.http_status, e.error is not None) for e in events] == [
        (1, status, True), (2, status, True), (3, None, False)]
    assert all(e.counted for e in events)
    assert events[0].retry_in_s is not None and events[-1].retry_in_s is None
    assert lm.budget.snapshot().calls == 3 == server.stats()["calls"]
    assert lm.budget.retries == 2


def test_without_retry_after_the_backoff_grows_to_its_cap_with_jitter(scripted_lm):
    server = scripted_lm([{"status": 503, "retry_after": "none", "times": 3}, {"reply": "ok"}])
    policy = RetryPolicy(retries=3, turn_retries=10, base_s=0.04, max_s=0.1, length_retries=1)
    lm = budgeted(server, retry=policy)
    started = time.monotonic()
    assert lm("q") == ["ok"]
    waits = [e.retry_in_s for e in calls(lm)[:3]]
    # base * 2**(n-1), capped at max_s, times a jitter in [0.5, 1]
    for wait, ceiling in zip(waits, (0.04, 0.08, 0.1), strict=True):
        assert wait is not None and ceiling * 0.5 <= wait <= ceiling, waits
    assert time.monotonic() - started >= sum(w for w in waits if w)


def test_retry_after_is_honoured(scripted_lm):
    server = scripted_lm([{"status": 429, "retry_after": "0.3", "times": 1}, {"reply": "ok"}])
    lm = budgeted(server)
    started = time.monotonic()
    assert lm("q") == ["ok"]
    assert time.monotonic() - started >= 0.3
    assert calls(lm)[0].retry_in_s == 0.3


def test_retry_after_longer_than_the_cap_fails_at_once(scripted_lm):
    server = scripted_lm([{"status": 429, "retry_after": "30", "times": 1}, {"reply": "ok"}])
    lm = budgeted(server)
    with pytest.raises(dspy.utils.exceptions.LMRateLimitError):
        lm("q")
    [event] = calls(lm)
    assert "asks to wait 30s" in event.error and "FLEET_LM_RETRY_MAX_S" in event.error
    assert event.retry_in_s is None and lm.budget.snapshot().calls == 1


@pytest.mark.parametrize("fault", ["drop", "cut", "malformed"])
def test_broken_connections_and_bodies_are_retried(scripted_lm, fault):
    server = scripted_lm([{"fault": fault, "reply": "x" * 200, "times": 1}, {"reply": "whole"}])
    lm = budgeted(server)
    assert lm("q") == ["whole"]
    first, second = calls(lm)
    assert first.error and first.counted and first.attempt == 1
    assert second.error is None and second.attempt == 2
    assert lm.budget.snapshot().calls == 2


def test_a_stall_past_the_timeout_is_retried(scripted_lm):
    server = scripted_lm([{"stall_ms": 1500, "reply": "late " * 50, "times": 1},
                          {"reply": "prompt"}])
    lm = budgeted(server, timeout=0.3)
    started = time.monotonic()
    assert lm("q") == ["prompt"]
    assert time.monotonic() - started < 1.4
    assert "timed out" in calls(lm)[0].error


def test_a_stall_within_the_timeout_is_waited_for(scripted_lm):
    server = scripted_lm([{"stall_ms": 200, "reply": "slow but whole"}])
    lm = budgeted(server, timeout=2)
    assert lm("q") == ["slow but whole"]
    assert len(calls(lm)) == 1


def test_retries_are_bounded_per_call(scripted_lm):
    server = scripted_lm([{"status": 503, "reply": "down"}])
    lm = budgeted(server, retry=RetryPolicy(retries=2, turn_retries=10, base_s=0.01))
    with pytest.raises(LMServerError):
        lm("q")
    events = calls(lm)
    assert len(events) == 3 == server.stats()["calls"]
    assert "gave up after 3 attempts" in events[-1].error
    assert lm.budget.snapshot().calls == 3


def test_retries_are_bounded_per_turn(scripted_lm):
    server = scripted_lm([{"status": 503, "reply": "down"}])
    lm = budgeted(server, retry=RetryPolicy(retries=5, turn_retries=2, base_s=0.01))
    for _ in range(2):
        with pytest.raises(LMServerError):
            lm("q")
    # 2 retries in the whole turn: the first call takes both, the second gets none.
    assert server.stats()["calls"] == 4
    assert "retries are used up" in calls(lm)[-1].error


def test_retries_stay_within_the_wall_limit(scripted_lm):
    server = scripted_lm([{"status": 503, "retry_after": "0.8", "reply": "down"}])
    lm = budgeted(server, limits=Limits(max_wall_s=0.5))
    with pytest.raises(LMServerError):
        lm("q")
    assert "wall limit" in calls(lm)[-1].error and server.stats()["calls"] == 1


def test_cancel_stops_a_backoff_at_once(scripted_lm):
    server = scripted_lm([{"status": 503, "retry_after": "0.9", "reply": "down"}])
    lm = budgeted(server)
    threading.Timer(0.15, lm.budget.cancel.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        lm("q")
    assert time.monotonic() - started < 0.6
    assert server.stats()["calls"] == 1


def test_a_refused_connection_does_not_count():
    lm = budgeted(None, api_base="http://127.0.0.1:9/v1",
                  retry=RetryPolicy(retries=1, base_s=0.01))
    with pytest.raises(LMTransportError):
        lm("q")
    events = calls(lm)
    assert len(events) == 2 and not any(e.counted for e in events)
    assert lm.budget.snapshot().calls == 0


@pytest.mark.parametrize(("status", "setting"), [(401, "FLEET_API_KEY"), (403, "FLEET_API_KEY"),
                                                 (404, "FLEET_SUB_MODEL")])
def test_key_and_model_errors_fail_at_once_naming_the_setting(scripted_lm, status, setting):
    server = scripted_lm([{"status": status, "reply": "no"}])
    lm = budgeted(server, role="sub", model_setting="FLEET_SUB_MODEL")
    with pytest.raises(ProviderRefused) as failure:
        lm("q")
    assert failure.value.setting == setting and setting in str(failure.value)
    assert server.stats()["calls"] == 1 and len(calls(lm)) == 1
    assert calls(lm)[0].http_status == status and lm.budget.snapshot().calls == 1


def test_a_reply_cut_at_the_token_limit_is_retried_with_the_cut_shown(scripted_lm):
    server = scripted_lm([
        {"match": "cut off at the", "reply": "short and whole", "times": 1},
        {"reply": "a long answer that goes on and", "finish_reason": "length", "times": 1},
    ])
    lm = budgeted(server)
    assert lm("q") == ["short and whole"]
    server.verify()
    first, second = calls(lm)
    assert first.finish_reason == "length" and "token limit" in first.error
    assert first.retry_in_s == 0.0 and second.finish_reason == "stop"
    assert "goes on and" in second.prompt_preview
    assert lm.budget.snapshot().calls == 2


def test_a_reply_cut_every_time_is_never_returned(scripted_lm):
    server = scripted_lm([{"reply": "cut", "finish_reason": "length"}])
    lm = budgeted(server)
    with pytest.raises(TruncatedReply, match="FLEET_CALL_MAX_TOKENS"):
        lm("q")
    assert server.stats()["calls"] == 2 and lm.budget.snapshot().calls == 2


def test_reasoning_only_replies_are_read_as_the_reply(scripted_lm):
    server = scripted_lm([{"reply": "", "reasoning": dspy_reply(answer="Paris")}])
    lm = budgeted(server)
    with dspy.context(lm=lm):
        assert dspy.Predict("question -> answer")(question="capital?").answer == "Paris"


def test_native_tool_calls_become_text(scripted_lm):
    server = scripted_lm([{"tool_calls": [{"name": "respond", "arguments": {"answer": "42"}}]}])
    lm = budgeted(server)
    assert lm("q") == ['{"answer": "42"}']
    assert calls(lm)[0].finish_reason == "tool_calls"


def test_dspy_does_not_retry_on_top(scripted_lm):
    server = scripted_lm([{"status": 503, "reply": "down"}])
    lm = budgeted(server, retry=RetryPolicy(retries=0))
    assert lm.num_retries == 0
    with pytest.raises(LMServerError):
        lm("q")
    assert server.stats()["calls"] == 1


def test_a_budget_limit_ends_retries(scripted_lm):
    server = scripted_lm([{"status": 503, "reply": "down"}])
    lm = budgeted(server, limits=Limits(max_calls=2))
    with pytest.raises(BudgetExceeded):
        lm("q")
    assert server.stats()["calls"] == 2 and lm.budget.snapshot().calls == 2


# -- through a whole run: the engine sees one answer, the budget every attempt ----------------

def _action(iteration: int, code: str) -> dict:
    return {"model": "root", "match": rf"iteration ## \]\]\n{iteration}/", "times": 1,
            "reply": dspy_reply(reasoning=f"step {iteration}", code=code)}


def _run(server: ScriptedLMServer, **overrides: Any):
    from fleet_rlm.config import Settings
    from fleet_rlm.engine.rlm import RecursiveRLM

    settings = Settings(root_model="openai/root", sub_model="openai/sub",
                        api_base=server.api_base, lm_retry_base_s=0.01, **overrides)
    with dspy.context(lm=None):
        return RecursiveRLM(settings=settings, max_iterations=3)(context="c", question="q")


def test_a_run_through_every_fault_ends_ok_and_counts_every_attempt(scripted_lm):
    server = scripted_lm([
        {"model": "root", "status": 429, "retry_after": "0.05", "times": 1},
        {"model": "root", "fault": "drop", "times": 1},
        {"model": "root", "fault": "malformed", "times": 1},
        {"model": "root", "match": r"iteration ## \]\]\n1/", "reply": "cut", "times": 1,
         "finish_reason": "length"},
        _action(1, "print(llm_query('hi'))"),
        {"model": "sub", "status": 502, "times": 1},
        {"model": "sub", "reply": "", "reasoning": "hello from reasoning", "times": 1},
        {"model": "root", "match": r"iteration ## \]\]\n2/", "times": 1,
         "reply": "", "tool_calls": [{"name": "respond", "arguments": {
             "reasoning": "done", "code": "SUBMIT(answer='fine')"}}]},
        _action(2, "SUBMIT(answer='fine')"),
    ])
    result = _run(server)
    assert result.status == "ok", result.error
    assert result.answer == "fine"
    calls = [e for e in result.events if e.type == "lm_call"]
    stats = server.stats()
    # Every request that reached the server is one lm_call event and one call in the budget.
    assert len(calls) == stats["calls"] == result.usage.calls
    statuses = [e.http_status for e in calls if e.http_status]
    assert statuses == [429, 200, 502]  # 200: the malformed body
    assert any(e.finish_reason == "length" and e.retry_in_s == 0.0 for e in calls)
    assert "hello from reasoning" in result.trajectory[0]["output"]


def test_a_rejected_key_ends_the_run_at_once_naming_the_setting(scripted_lm):
    server = scripted_lm([{"model": "root", "status": 401, "reply": "invalid key"}])
    result = _run(server)
    assert result.status == "error" and "FLEET_API_KEY" in str(result.error)
    assert server.stats()["calls"] == 1 and result.usage.calls == 1
    [error] = [e for e in result.events if e.type == "error"]
    assert error.error_type == "ProviderRefused"


def test_an_unknown_model_ends_the_run_naming_the_setting(scripted_lm):
    server = scripted_lm([{"model": "root", "status": 404, "reply": "no such model"}])
    result = _run(server)
    assert result.status == "error" and "FLEET_ROOT_MODEL" in str(result.error)
    assert server.stats()["calls"] == 1


def test_a_provider_down_for_good_ends_the_run_within_its_retries(scripted_lm):
    server = scripted_lm([{"model": "root", "status": 503, "reply": "down"}])
    result = _run(server, lm_retries=2)
    assert result.status == "error" and "down" in str(result.error)
    assert server.stats()["calls"] == 3 == result.usage.calls


def test_a_reply_cut_every_time_ends_the_run_with_an_error(scripted_lm):
    server = scripted_lm([{"model": "root", "reply": "cut", "finish_reason": "length"}])
    result = _run(server)
    assert result.status == "error" and "token limit" in str(result.error)
    assert server.stats()["calls"] == 2 == result.usage.calls


def test_the_model_check_takes_a_cut_reply_and_does_not_retry(scripted_lm):
    from fleet_rlm.config import Settings
    from fleet_rlm.server.checks import check_model

    server = scripted_lm([{"model": "root", "reply": "OK, I am here and", "times": 1,
                           "finish_reason": "length"}])
    settings = Settings(root_model="openai/root", api_base=server.api_base)
    result = check_model(settings)
    assert result.ok and "OK, I am here" in result.message
    server.set_rules([{"model": "root", "status": 503, "reply": "down"}])
    result = check_model(settings)
    assert not result.ok and server.stats()["calls"] == 1
