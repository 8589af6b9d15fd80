"""Replies in the formats dspy's adapters parse, for writing LM scripts."""

from __future__ import annotations

import json
from typing import Any


def _field_text(value: Any) -> str:
    # Mirrors dspy.adapters.utils.format_field_value: strings verbatim, containers as JSON.
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def dspy_reply(**fields: Any) -> str:
    """A ChatAdapter reply: `[[ ## name ## ]]` sections in call order, then the completed marker."""
    sections = [f"[[ ## {name} ## ]]\n{_field_text(value)}" for name, value in fields.items()]
    return "\n\n".join(sections + ["[[ ## completed ## ]]\n"])


def dspy_json_reply(**fields: Any) -> str:
    """A JSONAdapter reply, which is what ChatAdapter's fallback retry parses."""
    return json.dumps(fields, ensure_ascii=False)


def dspy_agent_step(thought: str, tool: str, **args: Any) -> str:
    """A ReAct step reply, as the agent's step prompt asks: a thought, then a tool and its args."""
    return dspy_reply(next_thought=thought, next_tool_name=tool, next_tool_args=json.dumps(args))
