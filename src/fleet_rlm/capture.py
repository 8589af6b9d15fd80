"""What a model call sent and got back, kept once per call by whoever owns the turn.

The LMs (`lm.py`) hand each attempt of a model call to a `CallCapture`: the session service's
keeps it in the call store beside the database (`store/calls.py`); `fleet run`, the benchmarks
and MCP's `rlm_query` have none, and their `lm_call` events carry no `call_id`. Keeping a call
never blocks or fails it: a capture that cannot keep one says why, and the call goes on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

# Request arguments never kept: credentials and the headers that carry them.
SECRET_PARAMS = frozenset({"api_key", "headers", "extra_headers", "azure_ad_token"})


@dataclass(frozen=True)
class CapturedCall:
    """One request to a model and its reply (None when the attempt failed)."""

    call_id: str
    turn_id: str | None
    node_id: str
    role: str
    model: str
    params: dict[str, Any]
    messages: list[dict[str, str]]  # {role, content}, in the order sent
    reply: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    finish_reason: str | None = None
    attempt: int = 1
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CallCapture(Protocol):
    def save(self, call: CapturedCall) -> str | None:
        """Keep `call`; None when kept, else why it was not. Never raises."""
        ...


def message_text(content: Any) -> str:
    """A message's content as text: a string as is, a list of parts as their text joined (an
    image or audio part as a short placeholder)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict):
                texts.append(f"[{part.get('type', 'part')}]")
            else:
                texts.append(str(part))
        return "\n".join(texts)
    return "" if content is None else str(content)


def sent_messages(prompt: Any, messages: Any) -> list[dict[str, str]]:
    """The messages a request sent, as {role, content} text."""
    if messages is None:
        return [{"role": "user", "content": message_text(prompt)}]
    return [{"role": str(m.get("role", "user")), "content": message_text(m.get("content"))}
            if isinstance(m, dict) else {"role": "user", "content": message_text(m)}
            for m in messages]


def request_params(params: dict[str, Any]) -> dict[str, Any]:
    """The request's arguments without credentials."""
    return {k: v for k, v in params.items() if k not in SECRET_PARAMS}
