"""Fakes shipped for tests: a scripted OpenAI-compatible LM server, dspy reply helpers, ready-made
LM scripts, a hand-built PDF and a race-finding thread switcher."""

from fleet_rlm.testing.documents import make_pdf
from fleet_rlm.testing.dspy_replies import dspy_agent_step, dspy_json_reply, dspy_reply
from fleet_rlm.testing.scripted_lm import Rule, ScriptedLMServer, load_rules
from fleet_rlm.testing.scripts import AGENT_ANSWER, ask_then_delegate_rules, two_level_rlm_rules
from fleet_rlm.testing.threads import eager_thread_switching

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
