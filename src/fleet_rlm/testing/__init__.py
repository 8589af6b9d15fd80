"""Fakes shipped for tests: a scripted OpenAI-compatible LM server, dspy reply helpers, ready-made
LM scripts, a hand-built PDF and a race-finding thread switcher.

Names are imported on first use, so `python -m fleet_rlm.testing.scripted_lm` runs its module
once (importing it here first would make runpy warn and run a second copy)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet_rlm.testing.documents import make_pdf
    from fleet_rlm.testing.dspy_replies import dspy_agent_step, dspy_json_reply, dspy_reply
    from fleet_rlm.testing.scripted_lm import Rule, ScriptedLMServer, load_rules
    from fleet_rlm.testing.scripts import AGENT_ANSWER, ask_then_delegate_rules, two_level_rlm_rules
    from fleet_rlm.testing.threads import eager_thread_switching

_HOMES = {
    "AGENT_ANSWER": "scripts",
    "Rule": "scripted_lm",
    "ScriptedLMServer": "scripted_lm",
    "ask_then_delegate_rules": "scripts",
    "dspy_agent_step": "dspy_replies",
    "dspy_json_reply": "dspy_replies",
    "dspy_reply": "dspy_replies",
    "eager_thread_switching": "threads",
    "load_rules": "scripted_lm",
    "make_pdf": "documents",
    "two_level_rlm_rules": "scripts",
}
__all__ = [
    "AGENT_ANSWER",
    "Rule",
    "ScriptedLMServer",
    "ask_then_delegate_rules",
    "dspy_agent_step",
    "dspy_json_reply",
    "dspy_reply",
    "eager_thread_switching",
    "load_rules",
    "make_pdf",
    "two_level_rlm_rules",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
