"""The client path of a budgeted model call: what it skips and what it reuses, through the real
dspy client against the scripted LM server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dspy
import pytest

from fleet_rlm.budget import Budget, Cancelled, Limits
from fleet_rlm.config import Settings
from fleet_rlm.engine.dspy_compat import SELF_PRICED
from fleet_rlm.events import EventStream
from fleet_rlm.lm import BudgetedLM, build_lms


def budgeted(api_base: str, budget: Budget | None = None) -> BudgetedLM:
    return BudgetedLM("openai/m", budget=budget or Budget(Limits()), stream=EventStream("t"),
                      api_key="test-key", api_base=api_base, timeout=5.0)


def test_a_budgeted_call_is_priced_by_the_budget_not_by_dspy(scripted_lm):
    server = scripted_lm([{"reply": "fine"}])
    budget = Budget(Limits(), prices={"openai/m": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}})
    lm = budgeted(server.api_base, budget)
    assert lm("q") == ["fine"]
    # dspy's advisory estimate (a scan of its model metadata) did not run for this call...
    assert lm.history[-1]["cost_details"] == SELF_PRICED
    # ...and the budget priced it from the usage the reply reported.
    [event] = [e for e in lm.stream.events if e.type == "lm_call"]
    assert event.prompt_tokens > 0 and event.completion_tokens > 0
    assert event.cost_usd == budget.snapshot().usd > 0


def test_a_plain_dspy_lm_keeps_dspys_price_estimate(scripted_lm):
    server = scripted_lm([{"reply": "fine"}])
    assert BudgetedLM  # imported: the skip is installed, and must not reach other LMs
    plain = dspy.LM("openai/m", api_key="test-key", api_base=server.api_base, cache=False)
    assert plain("q") == ["fine"]
    assert plain.history[-1]["cost_details"] != SELF_PRICED
    assert "kind" in plain.history[-1]["cost_details"]


def test_a_turns_calls_reuse_their_connections(scripted_lm):
    server = scripted_lm([{"reply": "ok"}])
    settings = Settings(root_model="openai/root", sub_model="openai/sub",
                        api_base=server.api_base, api_key="test-key")
    root, sub = build_lms(settings, Budget(Limits()), EventStream("t"))
    for _iteration in range(3):  # an iteration's root call, then a batch of 4 sub-calls
        assert root("q") == ["ok"]
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(sub, ["a", "b", "c", "d"])) == [["ok"]] * 4
    stats = server.stats()
    assert stats["calls"] == 15
    # One connection per concurrent call (1 root + 4 sub), opened once: no client, and no
    # connection, is made per call.
    assert stats["connections"] <= 5, stats


def test_a_cancel_walks_away_from_a_call_in_flight_at_once(scripted_lm):
    server = scripted_lm([{"reply": "late", "delay_ms": 5000}])
    lm = budgeted(server.api_base)
    threading.Timer(0.3, lm.budget.cancel.cancel, args=("user",)).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        lm("q")
    assert time.monotonic() - started < 1.0
    [event] = [e for e in lm.stream.events if e.type == "lm_call"]
    assert event.error and event.error.startswith("Cancelled")
    assert lm.budget.snapshot().calls == 1  # walked away from, but sent: it counts


def test_calls_that_end_leave_no_cancel_callback_behind(scripted_lm):
    server = scripted_lm([{"reply": "ok"}])
    lm = budgeted(server.api_base)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lm, ["q"] * 20)) == [["ok"]] * 20
    assert lm.budget.cancel._callbacks == {}  # one waiting call registers one, and removes it
