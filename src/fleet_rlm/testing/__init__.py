"""Fakes shipped for tests: a scripted OpenAI-compatible LM server and dspy reply helpers."""

from fleet_rlm.testing.dspy_replies import dspy_json_reply, dspy_reply
from fleet_rlm.testing.scripted_lm import Rule, ScriptedLMServer, load_rules

__all__ = ["Rule", "ScriptedLMServer", "dspy_json_reply", "dspy_reply", "load_rules"]
