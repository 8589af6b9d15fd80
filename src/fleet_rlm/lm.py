"""Budgeted LMs: every model call reserves from the shared Budget and reports an `lm_call` event.

Which node and role a call belongs to travels in a context variable (`call_site`), so one LM
object serves the root's iterations, the extract fallback, `llm_query` and the chat agent.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dspy

from .budget import Budget, BudgetExceeded, Cancelled
from .config import Settings
from .events import EventStream, NodeRef
from .prices import max_output_tokens

PREVIEW_CHARS = 600
MESSAGE_TOKENS = 4  # what a chat format adds per message (role and separators)
# LM calls run here so a cancelled turn can walk away from a request still in flight.
_calls = ThreadPoolExecutor(256, thread_name_prefix="lm-call")


@dataclass(frozen=True)
class CallSite:
    role: str
    node: NodeRef
    iteration: int | None = None


_site: contextvars.ContextVar[CallSite | None] = contextvars.ContextVar("fleet_call_site",
                                                                       default=None)


@contextmanager
def call_site(role: str, node: NodeRef, iteration: int | None = None) -> Iterator[CallSite]:
    site = CallSite(role, node, iteration)
    token = _site.set(site)
    try:
        yield site
    finally:
        _site.reset(token)


def estimate_prompt_tokens(text: str, messages: int = 1) -> int:
    """An upper estimate of a prompt's tokens: one per 3 bytes of UTF-8 (English text runs about
    4 characters a token, code 3, CJK 1 per 3-byte character), plus each message's framing."""
    return math.ceil(len(text.encode("utf-8", "replace")) / 3) + MESSAGE_TOKENS * messages


def _request_text(prompt: Any, messages: Any) -> str:
    if prompt is not None:
        return str(prompt)
    parts = []
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else message
        parts.append(content if isinstance(content, str) else str(content))
    return "\n".join(parts)


def _output_text(outputs: Any) -> str:
    if isinstance(outputs, list) and outputs:
        first = outputs[0]
        return str(first.get("text", "") if isinstance(first, dict) else first)
    return str(getattr(outputs, "text", outputs) or "")


class BudgetedLM(dspy.LM):
    """A dspy.LM whose every call is admitted by `budget` and reported on `stream`.

    The default call site (role and node) applies when no `call_site` is active.
    """

    def __init__(self, model: str, *, budget: Budget, stream: EventStream | None = None,
                 node: NodeRef | None = None, role: str = "root",
                 call_max_tokens: int = 16_000, **kwargs: Any) -> None:
        kwargs.setdefault("cache", False)
        kwargs.setdefault("num_retries", 0)
        super().__init__(model, **kwargs)
        self.budget, self.stream = budget, stream
        self.call_max_tokens = call_max_tokens
        self.default_site = CallSite(role, node or NodeRef.root())
        self._local = threading.local()

    def update_history(self, entry: dict) -> None:
        # Runs in the calling thread, so the usage of *this* call can be read back safely.
        self._local.entry = entry
        super().update_history(entry)

    def completion_limit(self, kwargs: dict) -> tuple[int, dict]:
        """The most completion tokens a call with `kwargs` can produce (all `n` completions),
        and the arguments to add so the provider enforces that bound."""
        merged = {**self.kwargs, **kwargs}
        n = max(1, int(merged.get("n") or 1))
        for key in ("max_completion_tokens", "max_tokens"):
            if merged.get(key):
                return int(merged[key]) * n, {}
        cap = min(self.call_max_tokens, max_output_tokens(self.model) or self.call_max_tokens)
        # dspy keeps OpenAI reasoning models' bound under max_completion_tokens.
        key = "max_completion_tokens" if "max_completion_tokens" in self.kwargs else "max_tokens"
        return cap * n, {key: cap}

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        site = _site.get() or self.default_site
        request = _request_text(prompt, messages)
        prompt_tokens = estimate_prompt_tokens(request, len(messages or []) or 1)
        most, bound = self.completion_limit(kwargs)
        kwargs.update(bound)
        reservation = self.budget.reserve(self.model, prompt_tokens, most)
        started = time.perf_counter()
        parent_call = super().__call__
        try:
            if dspy.settings.send_stream is not None:
                # dspy streams chunks from the thread it runs in; no hop to the pool here.
                outputs, entry = self._call_recording(parent_call, prompt, messages, kwargs)
            else:
                future = _calls.submit(contextvars.copy_context().run, self._call_recording,
                                       parent_call, prompt, messages, kwargs)
                outputs, entry = self._wait(future)
        except (Cancelled, BudgetExceeded) as exc:
            # Walked away from a request in flight: the provider bills it, but its usage never
            # comes back here; count the prompt as sent.
            cost = self.budget.commit(reservation, prompt_tokens, 0)
            self._report(site, request, "", prompt_tokens, 0, cost.usd,
                         time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}",
                         estimated=True)
            raise
        except Exception as exc:
            # The request may have reached the provider: it counts, with what usage is known.
            self.budget.commit(reservation, 0, 0)
            self._report(site, request, "", 0, 0, None, time.perf_counter() - started,
                         error=f"{type(exc).__name__}: {exc}")
            raise
        usage = (entry or {}).get("usage") or {}
        estimated = not usage.get("prompt_tokens")
        prompt_tokens = int(usage.get("prompt_tokens") or prompt_tokens)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        cost = self.budget.commit(reservation, prompt_tokens, completion_tokens)
        self._report(site, request, _output_text(outputs), prompt_tokens, completion_tokens,
                     cost.usd, time.perf_counter() - started, estimated=estimated)
        return outputs

    def _call_recording(self, call: Any, prompt: Any, messages: Any, kwargs: dict) -> tuple:
        self._local.entry = None
        outputs = call(prompt, messages=messages, **kwargs)
        return outputs, self._local.entry

    def _wait(self, future: Any) -> tuple:
        while True:
            try:
                return future.result(timeout=0.05)
            except FutureTimeout:
                self.budget.cancel.raise_if_cancelled()

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        import asyncio

        def call() -> Any:
            return self(prompt, messages=messages, **kwargs)

        return await asyncio.to_thread(contextvars.copy_context().run, call)

    def _report(self, site: CallSite, request: str, response: str, prompt_tokens: int,
                completion_tokens: int, cost: float | None, latency: float,
                error: str | None = None, estimated: bool = False) -> None:
        if self.stream is None:
            return
        self.stream.emit("lm_call", site.node, role=site.role, model=self.model,
                         prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                         cost_usd=cost, latency_s=round(latency, 4), iteration=site.iteration,
                         prompt_preview=request[-PREVIEW_CHARS:],
                         response_preview=response[:PREVIEW_CHARS], error=error,
                         usage_estimated=estimated)

    def copy(self, **kwargs: Any) -> BudgetedLM:
        clone = super().copy(**kwargs)
        clone._local = threading.local()
        return clone


def build_lms(settings: Settings, budget: Budget, stream: EventStream | None = None,
              node: NodeRef | None = None) -> tuple[BudgetedLM, BudgetedLM]:
    """The root and sub LMs of a run, both drawing on `budget`."""
    common: dict[str, Any] = {"budget": budget, "stream": stream, "node": node,
              "call_max_tokens": settings.call_max_tokens}
    if settings.api_base:
        common["api_base"] = settings.api_base
    if settings.api_key:
        common["api_key"] = settings.api_key
    elif settings.api_base:
        common["api_key"] = "none"  # local OpenAI-compatible servers often want any key
    root = BudgetedLM(settings.root_model, role="root", **common)
    sub = BudgetedLM(settings.effective_sub_model, role="sub", **common)
    return root, sub
