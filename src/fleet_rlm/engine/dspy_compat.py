"""dspy's private names, in one place.

The engine builds on dspy internals that are not its public API: underscore functions and
classes, names from modules dspy does not re-export, private methods of `dspy.RLM`,
`dspy.ReAct` and the in-sandbox facade that the engine overrides or calls, and two private
instance attributes. Every such name is imported, listed or read here and nowhere else;
tests/unit/test_dspy_compat.py checks each one against the installed dspy, so an upgrade that
moves one fails there, naming it, instead of somewhere deep in a run. The version pin in
pyproject.toml is the other half of the contract.

Public dspy names (`dspy.RLM`, `dspy.Prediction`, `dspy.CodeInterpreterError`, ...) are imported
from `dspy` itself where they are used.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import dspy

# Every name imported below, as (module, name): what the test checks.
IMPORTED: tuple[tuple[str, str], ...] = (
    ("dspy.adapters.utils", "parse_value"),
    ("dspy.clients.execution", "_price_result"),
    ("dspy.predict.rlm", "SUB_AGENT_INSTRUCTIONS"),
    ("dspy.predict.rlm", "_LLMCallBudget"),
    ("dspy.predict.rlm", "_strip_code_fences"),
    ("dspy.primitives.facade", "CALL_TOOL"),
    ("dspy.primitives.facade", "CONSTRUCT_TOOL"),
    ("dspy.primitives.facade", "FacadeInvocation"),
    ("dspy.primitives.facade", "_resolve_signature"),
    ("dspy.primitives.repl_types", "REPLHistory"),
    ("dspy.primitives.repl_types", "REPLVariable"),
    ("dspy.utils.exceptions", "format_error_for_lm"),
)

try:
    from dspy.adapters.utils import parse_value
    from dspy.clients import execution
    from dspy.predict.rlm import SUB_AGENT_INSTRUCTIONS
    from dspy.predict.rlm import _LLMCallBudget as LLMCallBudget
    from dspy.predict.rlm import _strip_code_fences as strip_code_fences
    from dspy.primitives.facade import CALL_TOOL, CONSTRUCT_TOOL, FacadeInvocation
    from dspy.primitives.facade import _resolve_signature as resolve_signature
    from dspy.primitives.repl_types import REPLHistory, REPLVariable
    from dspy.utils.exceptions import format_error_for_lm
except ImportError as exc:  # pragma: no cover - only on a dspy that moved one
    raise ImportError(
        f"dspy {dspy.__version__} no longer provides a private name fleet_rlm relies on "
        f"({exc}); update fleet_rlm/engine/dspy_compat.py for this dspy version "
        "(tests/unit/test_dspy_compat.py lists each name)") from exc

# Private methods the engine overrides or calls, with the parameters it passes or expects
# (after `self`). An override whose dspy counterpart is gone is silently never called: the test
# keeps that from happening unnoticed.
METHODS: dict[tuple[type, str], tuple[str, ...]] = {
    (dspy.RLM, "_execute_iteration"): (
        "repl", "variables", "history", "iteration", "input_args", "output_field_names",
        "interpreter_factory", "sub_agent_rules"),
    (dspy.RLM, "_extract_fallback"): ("variables", "history", "output_field_names"),
    (dspy.RLM, "_make_llm_tools"): ("budget", "max_workers"),
    (dspy.RLM, "_action_signature_for_current_factory"): ("factory", "sub_agent_rules"),
    (dspy.RLM, "_execute_code"): ("repl", "code", "input_args"),
    (dspy.RLM, "_process_execution_result"): (
        "pred", "code", "result", "history", "output_field_names"),
    (dspy.RLM, "_validate_inputs"): ("input_args",),
    (dspy.RLM, "_prepare_execution_tools"): ("budget",),
    (dspy.RLM, "_build_variables"): ("input_args",),
    (dspy.RLM, "_interpreter_context"): ("execution_tools", "factory"),
    (dspy.RLM, "_prepare_serializable_vars"): ("input_args", "repl"),
    (dspy.ReAct, "_call_with_potential_trajectory_truncation"): (
        "module", "trajectory", "input_args"),
    (dspy.ReAct, "_format_trajectory"): ("trajectory",),
    (FacadeInvocation, "_build_predictor"): ("kind", "signature", "kwargs"),
    (LLMCallBudget, "reserve"): ("n",),
}

# Private instance attributes the engine reads, as (class, attribute): set by the class's
# __init__, so the test builds an instance to look.
ATTRIBUTES: tuple[tuple[type, str], ...] = (
    (dspy.RLM, "_user_tools"),
    (FacadeInvocation, "_custom_types"),
)


# Module functions the package replaces, with their parameters: a replacement must take what
# dspy passes, and a function dspy stopped calling by this name would leave it silently unused.
FUNCTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("dspy.clients.execution", "_price_result"): (
        "lm", "result", "response", "provider", "request"),
}

SELF_PRICED = {"kind": "unknown", "reason": "priced by fleet_rlm's budget, not by dspy"}
_self_priced: tuple[type, ...] = ()
_pricing_lock = threading.Lock()


def skip_dspy_pricing(lm_class: type) -> None:
    """Calls of `lm_class` instances skip dspy's advisory price estimate.

    dspy prices every completed call from its model metadata (`execution._price_result`, which
    fills `cost` in the LM's history). For a model its metadata lacks (a local server's model,
    a test's) that is a scan of every entry, twice: about 0.5 ms of CPU per call, held under the
    GIL, which a 16-way fan-out pays in series. An LM whose calls the budget prices needs none
    of it; its history says so in `cost_details`. Other LMs keep dspy's estimate."""
    global _self_priced
    with _pricing_lock:
        if not _self_priced:
            execution._price_result = _pricing(execution._price_result)
        if lm_class not in _self_priced:
            _self_priced = (*_self_priced, lm_class)


def _pricing(dspy_price: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(dspy_price)  # its signature stays dspy's, for the test of FUNCTIONS
    def price_result(lm: Any, result: Any, response: Any, provider: Any, request: Any) -> None:
        if isinstance(lm, _self_priced):
            result.cost, result.cost_details = None, dict(SELF_PRICED)
            return
        dspy_price(lm, result, response, provider, request)

    return price_result


def user_tools(rlm: dspy.RLM) -> dict[str, Any]:
    """The tools an RLM was built with (dspy's normalised `tools=`), by name."""
    return rlm._user_tools


def custom_types(facade: FacadeInvocation) -> dict[str, type] | None:
    """The custom types a facade resolves signatures with."""
    return facade._custom_types


__all__ = ["ATTRIBUTES", "CALL_TOOL", "CONSTRUCT_TOOL", "FUNCTIONS", "IMPORTED", "METHODS",
           "SELF_PRICED", "SUB_AGENT_INSTRUCTIONS", "FacadeInvocation", "LLMCallBudget",
           "REPLHistory", "REPLVariable", "custom_types", "format_error_for_lm", "parse_value",
           "resolve_signature", "skip_dspy_pricing", "strip_code_fences",
           "user_tools"]
