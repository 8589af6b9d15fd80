import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_rlm.budget import (
    Budget,
    BudgetExceeded,
    Cancelled,
    CancelToken,
    Limits,
    ModelPrice,
    UnpricedModel,
    Usage,
    litellm_price,
)
from fleet_rlm.config import Settings
from fleet_rlm.testing import eager_thread_switching

UNPRICED = "scripted/no-such-model-xyz"
# $1 per input token, $2 per output token: costs are exact small floats.
DOLLAR = {UNPRICED: ModelPrice(input_per_mtok=1e6, output_per_mtok=2e6)}


def data(exc: BudgetExceeded) -> tuple:
    return exc.kind, exc.spent, exc.limit


def run_concurrently(worker, n_threads):
    """Run worker(i) in n threads at once; re-raise the first failure in the test thread."""
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        return [f.result() for f in [pool.submit(worker, i) for i in range(n_threads)]]


@settings(max_examples=30, deadline=None)
@given(
    max_calls=st.integers(1, 40),
    n_threads=st.integers(2, 64),
    attempts=st.integers(1, 4),
    hold=st.booleans(),
)
def test_calls_never_overshoot_under_concurrent_reservations(max_calls, n_threads, attempts, hold):
    budget = Budget(Limits(max_calls=max_calls), prices=DOLLAR)
    start = threading.Barrier(n_threads, timeout=30)
    refused: list[BudgetExceeded] = []
    lock = threading.Lock()

    def worker(_):
        start.wait()
        held = []
        for _ in range(attempts):
            try:
                reservation = budget.reserve(UNPRICED, 1)
            except BudgetExceeded as exc:
                with lock:
                    refused.append(exc)
                continue
            if hold:  # keep every slot outstanding until all threads have tried
                held.append(reservation)
            else:
                budget.commit(reservation, 1, 1)
        start.wait()
        for reservation in held:
            budget.commit(reservation, 1, 1)

    with eager_thread_switching():
        run_concurrently(worker, n_threads)

    total = n_threads * attempts
    usage = budget.snapshot()
    assert usage.calls == min(max_calls, total)
    assert len(refused) == total - usage.calls
    assert all(e.kind == "calls" and e.limit == max_calls for e in refused)
    assert budget.remaining()["calls"] == max_calls - usage.calls


def test_outstanding_reservations_hold_call_slots():
    budget = Budget(Limits(max_calls=3), prices=DOLLAR)
    a = budget.reserve(UNPRICED)
    b = budget.reserve(UNPRICED)
    assert budget.snapshot().calls == 0  # nothing committed yet
    assert budget.remaining()["calls"] == 1
    budget.commit(a, 3, 4)
    assert budget.remaining()["calls"] == 1 and budget.snapshot().calls == 1
    budget.reserve(UNPRICED)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(UNPRICED)
    assert str(info.value) == "budget exceeded: calls 3/3"
    budget.commit(b, 3, 4)
    with pytest.raises(ValueError, match="already committed"):
        budget.commit(b, 3, 4)


def test_tokens_limit_counts_outstanding_estimates_and_refuses_when_spent():
    budget = Budget(Limits(max_tokens=100), prices=DOLLAR)
    first = budget.reserve(UNPRICED, prompt_tokens=60)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(UNPRICED, prompt_tokens=50)  # 60 outstanding + 50 > 100
    assert data(info.value) == ("tokens", 60, 100)
    budget.commit(first, 30, 10)  # actual 40 replaces the estimate of 60
    second = budget.reserve(UNPRICED, prompt_tokens=50)
    assert budget.remaining()["tokens"] == 10
    budget.commit(second, 50, 20)  # completions can push past the limit...
    assert budget.snapshot().tokens == 110
    assert budget.remaining()["tokens"] == 0
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(UNPRICED)  # ...but then nothing more is admitted, even with no estimate
    assert data(info.value) == ("tokens", 110, 100)
    assert str(info.value) == "budget exceeded: tokens 110/100"


def test_no_call_is_admitted_once_tokens_reach_the_limit_exactly():
    budget = Budget(Limits(max_tokens=10), prices=DOLLAR)
    budget.commit(budget.reserve(UNPRICED, prompt_tokens=10), 6, 4)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(UNPRICED)  # 10 + 0 <= 10, yet nothing is left for its completion
    assert data(info.value) == ("tokens", 10, 10)


def test_usd_limit_uses_estimated_prompt_cost_then_actual_cost():
    budget = Budget(Limits(max_usd=10.0), prices=DOLLAR)
    first = budget.reserve(UNPRICED, prompt_tokens=4)  # est $4
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(UNPRICED, prompt_tokens=7)
    assert data(info.value) == ("usd", 4.0, 10.0)
    cost = budget.commit(first, 4, 2)
    assert cost.usd == 8.0
    last = budget.reserve(UNPRICED, prompt_tokens=2)  # 8 + 2 <= 10
    budget.commit(last, 2, 1)
    usage = budget.snapshot()
    assert usage.usd == 12.0
    assert usage.usd_unknown_calls == 0
    with pytest.raises(BudgetExceeded, match="usd 12/10"):
        budget.reserve(UNPRICED)


def test_usd_reservation_holds_the_largest_completion_until_the_call_settles():
    budget = Budget(Limits(max_usd=10.0), prices=DOLLAR)  # $1 a prompt token, $2 a completion one
    first = budget.reserve(UNPRICED, prompt_tokens=1, max_completion_tokens=2)  # holds $5
    assert budget.remaining()["usd"] == 5.0
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(UNPRICED, prompt_tokens=2, max_completion_tokens=2)  # $6 > $5 left
    assert data(info.value) == ("usd", 5.0, 10.0)
    assert str(info.value) == "budget exceeded: usd 5/10 (the next call may use up to 6 more)"
    second = budget.reserve(UNPRICED, prompt_tokens=1, max_completion_tokens=2)  # exactly $10
    budget.commit(first, 1, 2)
    budget.commit(second, 1, 2)
    assert budget.snapshot().usd == 10.0  # both used their worst case: still within the limit
    with pytest.raises(BudgetExceeded):
        budget.reserve(UNPRICED)


def test_tokens_reservation_counts_the_largest_completion():
    budget = Budget(Limits(max_tokens=100), prices=DOLLAR)
    held = budget.reserve(UNPRICED, prompt_tokens=10, max_completion_tokens=80)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(UNPRICED, prompt_tokens=5, max_completion_tokens=10)  # 90 + 15 > 100
    assert data(info.value) == ("tokens", 90, 100)
    budget.commit(held, 10, 5)  # the completion came in short: the rest is free again
    budget.reserve(UNPRICED, prompt_tokens=5, max_completion_tokens=80)


@settings(max_examples=25, deadline=None)
@given(n_threads=st.integers(2, 64), limit=st.floats(0.5, 40.0),
       completion=st.integers(0, 3), prompt=st.integers(0, 3))
def test_usd_never_overshoots_under_concurrent_calls_that_use_their_worst_case(
        n_threads, limit, completion, prompt):
    budget = Budget(Limits(max_usd=limit), prices=DOLLAR)
    start = threading.Barrier(n_threads, timeout=30)

    def worker(_):
        start.wait()
        try:
            reservation = budget.reserve(UNPRICED, prompt, completion)
        except BudgetExceeded:
            return
        start_commit.wait()
        budget.commit(reservation, prompt, completion)

    start_commit = threading.Event()
    with eager_thread_switching(), ThreadPoolExecutor(n_threads) as pool:
        futures = [pool.submit(worker, i) for i in range(n_threads)]
        time.sleep(0.01)
        start_commit.set()
        for f in futures:
            f.result()
    assert budget.snapshot().usd <= limit


def test_a_usd_limit_refuses_a_model_without_a_price():
    budget = Budget(Limits(max_usd=0.01))
    assert budget.price(UNPRICED) is None
    with pytest.raises(UnpricedModel) as info:
        budget.reserve(UNPRICED, prompt_tokens=10)
    assert info.value.model == UNPRICED and info.value.max_usd == 0.01
    assert "FLEET_PRICES" in str(info.value) and "FLEET_ALLOW_UNPRICED_MODELS" in str(info.value)
    assert budget.snapshot().calls == 0
    Budget(Limits(max_calls=3)).require_price(UNPRICED)  # no USD limit: nothing to meter


def test_unpriced_models_when_allowed_count_calls_and_tokens_but_not_usd():
    budget = Budget(Limits(max_usd=0.01), allow_unpriced=True)
    for _ in range(3):  # an unknown cost never blocks on the usd limit
        cost = budget.commit(budget.reserve(UNPRICED, prompt_tokens=1000), 10, 5)
        assert cost.usd is None
    usage = budget.snapshot()
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.tokens) == (
        3,
        30,
        15,
        45,
    )
    assert usage.usd == 0.0
    assert usage.usd_unknown_calls == 3
    assert usage.by_model[UNPRICED].usd_unknown_calls == 3


def test_unpriced_models_are_refused_unless_the_setting_allows_them(monkeypatch):
    monkeypatch.delenv("FLEET_ALLOW_UNPRICED_MODELS", raising=False)
    with pytest.raises(UnpricedModel):
        Budget.from_settings(Settings(root_model=UNPRICED)).require_price(UNPRICED)
    monkeypatch.setenv("FLEET_ALLOW_UNPRICED_MODELS", "true")
    Budget.from_settings(Settings()).require_price(UNPRICED)
    priced = Settings(allow_unpriced_models=False,
                      prices={UNPRICED: {"input_per_mtok": 1, "output_per_mtok": 1}})
    Budget.from_settings(priced).require_price(UNPRICED)


def test_litellm_price_for_a_known_model_with_and_without_provider_prefix():
    prefixed = litellm_price("openai/gpt-4o-mini")
    assert prefixed is not None and prefixed.input_per_mtok > 0 and prefixed.output_per_mtok > 0
    assert litellm_price("gpt-4o-mini") == prefixed
    import litellm

    entry = litellm.model_cost["gpt-4o-mini"]
    budget = Budget(Limits())
    cost = budget.commit(budget.reserve("openai/gpt-4o-mini"), 1000, 500)
    expected = 1000 * entry["input_cost_per_token"] + 500 * entry["output_cost_per_token"]
    assert cost.usd == pytest.approx(expected)
    assert budget.snapshot().usd == pytest.approx(expected)


def test_price_override_beats_litellm_and_matches_without_prefix():
    override = {"gpt-4o-mini": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    budget = Budget(Limits(), prices=override)
    cost = budget.commit(budget.reserve("openai/gpt-4o-mini"), 1_000_000, 1_000_000)
    assert cost.usd == pytest.approx(3.0)
    assert budget.price("openai/gpt-4o-mini") == ModelPrice(input_per_mtok=1, output_per_mtok=2)


def test_per_model_breakdown_adds_up_to_the_total():
    prices = {"a": ModelPrice(input_per_mtok=1e6, output_per_mtok=0), **DOLLAR}
    budget = Budget(Limits(), prices=prices)
    budget.commit(budget.reserve("a"), 2, 3)
    budget.commit(budget.reserve("a"), 1, 0)
    budget.commit(budget.reserve(UNPRICED), 1, 1)
    usage = budget.snapshot()
    a, u = usage.by_model["a"], usage.by_model[UNPRICED]
    assert (a.calls, a.tokens, a.usd) == (2, 6, 3.0)
    assert (u.calls, u.tokens, u.usd) == (1, 2, 3.0)
    assert (usage.calls, usage.tokens, usage.usd) == (3, 8, 6.0)


def test_wall_clock_limit():
    budget = Budget(Limits(max_wall_s=0.3), prices=DOLLAR)
    budget.commit(budget.reserve(UNPRICED), 0, 0)
    assert 0 < budget.remaining()["wall_s"] <= 0.3
    time.sleep(0.35)
    with pytest.raises(BudgetExceeded) as info:
        budget.reserve(UNPRICED)
    assert info.value.kind == "wall_s" and info.value.spent >= 0.3
    assert budget.remaining()["wall_s"] == 0
    assert budget.snapshot().elapsed_s >= 0.3


def test_the_watchdog_stops_a_run_at_its_wall_limit_without_waiting_for_a_call():
    budget = Budget(Limits(max_wall_s=0.3), prices=DOLLAR)
    budget.carry(Usage(elapsed_s=0.2, limits=budget.limits))  # 0.2 s spent before a pause
    stopped = threading.Event()
    budget.cancel.on_cancel(stopped.set)  # what kills or interrupts the run's sandboxes
    assert not stopped.wait(0.02)
    assert stopped.wait(0.5), "the watchdog never fired"
    assert budget.elapsed_s < 0.45  # at the moved deadline, not the first one
    for _ in range(2):  # every check of the run raises the limit, not a plain cancel
        with pytest.raises(BudgetExceeded) as info:
            budget.cancel.raise_if_cancelled()
        assert info.value.kind == "wall_s" and info.value.limit == 0.3
    with pytest.raises(BudgetExceeded, match="wall_s"):
        budget.reserve(UNPRICED)


def test_depth_limit():
    budget = Budget(Limits(max_depth=2))
    budget.check_depth(0)
    budget.check_depth(2)
    with pytest.raises(BudgetExceeded) as info:
        budget.check_depth(3)
    assert data(info.value) == ("depth", 3, 2)
    assert str(info.value) == "budget exceeded: depth 3/2"
    Budget(Limits()).check_depth(1000)


def test_cancel_stops_reservations_and_runs_callbacks_once():
    token = CancelToken()
    budget = Budget(Limits(max_calls=1), prices=DOLLAR, cancel=token)
    budget.commit(budget.reserve(UNPRICED), 1, 1)  # calls exhausted: cancel must win anyway
    killed = []
    token.on_cancel(lambda: killed.append("a"))
    token.on_cancel(lambda: 1 / 0)  # a failing kill does not spare the others
    token.on_cancel(lambda: killed.append("b"))
    unregister = token.on_cancel(lambda: killed.append("gone"))
    unregister()
    assert not token.cancelled
    token.raise_if_cancelled()

    token.cancel("user pressed stop")
    token.cancel("again")
    assert token.cancelled
    assert killed == ["a", "b"]
    with pytest.raises(Cancelled) as info:
        budget.reserve(UNPRICED)
    assert info.value.reason == "user pressed stop"
    token.on_cancel(lambda: killed.append("late"))  # registered after cancel: runs now
    assert killed == ["a", "b", "late"]


def test_cancel_runs_each_callback_once_under_concurrent_cancels():
    token = CancelToken()
    runs = []
    for i in range(20):
        token.on_cancel(lambda i=i: runs.append(i))
    run_concurrently(lambda _: token.cancel(), 16)
    assert sorted(runs) == list(range(20))


def test_remaining_reports_every_limit_and_none_for_unlimited():
    budget = Budget(Limits(max_calls=5, max_tokens=100, max_depth=2), prices=DOLLAR)
    assert budget.remaining() == {
        "calls": 5,
        "tokens": 100,
        "usd": None,
        "wall_s": None,
        "depth": 2,
    }
    r = budget.reserve(UNPRICED, prompt_tokens=10)
    left = budget.remaining(depth=1)
    assert (left["calls"], left["tokens"], left["depth"]) == (4, 90, 1)
    budget.commit(r, 20, 5)
    assert budget.remaining()["tokens"] == 75


def test_limits_and_budget_from_settings():
    s = Settings(
        max_calls=7,
        max_tokens=1000,
        max_usd=0.5,
        max_wall_s=9.0,
        max_depth=3,
        prices={UNPRICED: {"input_per_mtok": 1e6, "output_per_mtok": 0}},
    )
    assert Limits.from_settings(s) == Limits(
        max_calls=7, max_tokens=1000, max_usd=0.5, max_wall_s=9.0, max_depth=3
    )
    budget = Budget.from_settings(s)
    assert budget.commit(budget.reserve(UNPRICED), 1, 1).usd == 1.0
    assert budget.snapshot().limits.max_calls == 7


def test_prices_setting_reads_json_from_environment(monkeypatch):
    monkeypatch.setenv("FLEET_PRICES", '{"m": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}}')
    assert Settings().prices == {"m": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}}


def test_importing_budget_is_fast_and_keeps_litellm_offline():
    code = (
        "import os, sys, time; t = time.perf_counter(); import fleet_rlm.budget; "
        "print(time.perf_counter() - t, 'litellm' in sys.modules, "
        "os.environ['LITELLM_LOCAL_MODEL_COST_MAP'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert out[1:] == ["False", "True"]
    assert float(out[0]) < 3.0  # litellm alone takes several seconds


def test_a_calls_completion_bound_is_sent_and_reserved_n_times():
    from fleet_rlm.lm import BudgetedLM

    budget = Budget(Limits())
    lm = BudgetedLM("openai/gpt-4o-mini", budget=budget, call_max_tokens=100_000)
    assert lm.completion_limit({}) == (16_384, {"max_tokens": 16_384})  # the model's own max
    lm = BudgetedLM("openai/gpt-4o-mini", budget=budget, call_max_tokens=500)
    assert lm.completion_limit({"n": 3}) == (1500, {"max_tokens": 500})
    assert lm.completion_limit({"max_tokens": 40, "n": 2}) == (80, {})  # the caller's own bound
    reasoning = BudgetedLM("openai/o3", budget=budget, call_max_tokens=16_000)
    assert reasoning.completion_limit({}) == (16_000, {"max_completion_tokens": 16_000})
    unknown = BudgetedLM(UNPRICED, budget=budget, call_max_tokens=700, max_tokens=90)
    assert unknown.completion_limit({}) == (90, {})
