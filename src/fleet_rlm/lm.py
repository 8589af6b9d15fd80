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

from .budget import Budget, Cancelled
from .config import Settings
from .events import EventStream, NodeRef

PREVIEW_CHARS = 600
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


def current_site() -> CallSite | None:
    return _site.get()


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


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
                 node: NodeRef | None = None, role: str = "root", **kwargs: Any) -> None:
        kwargs.setdefault("cache", False)
        kwargs.setdefault("num_retries", 0)
        super().__init__(model, **kwargs)
        self.budget, self.stream = budget, stream
        self.default_site = CallSite(role, node or NodeRef.root())
        self._local = threading.local()

    def update_history(self, entry: dict) -> None:
        # Runs in the calling thread, so the usage of *this* call can be read back safely.
        self._local.entry = entry
        super().update_history(entry)

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        site = _site.get() or self.default_site
        request = _request_text(prompt, messages)
        reservation = self.budget.reserve(self.model, estimate_tokens(request))
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
        except Cancelled:
            self.budget.commit(reservation, estimate_tokens(request), 0)
            raise
        except Exception as exc:
            # The request may have reached the provider: it counts, with what usage is known.
            self.budget.commit(reservation, 0, 0)
            self._report(site, request, "", 0, 0, None, time.perf_counter() - started,
                         error=f"{type(exc).__name__}: {exc}")
            raise
        usage = (entry or {}).get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or estimate_tokens(request))
        completion_tokens = int(usage.get("completion_tokens") or 0)
        cost = self.budget.commit(reservation, prompt_tokens, completion_tokens)
        self._report(site, request, _output_text(outputs), prompt_tokens, completion_tokens,
                     cost.usd, time.perf_counter() - started)
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
                if self.budget.cancel.cancelled:
                    raise Cancelled(self.budget.cancel.reason) from None

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(contextvars.copy_context().run, self.__call__, prompt,
                                       messages=messages, **kwargs)

    def _report(self, site: CallSite, request: str, response: str, prompt_tokens: int,
                completion_tokens: int, cost: float | None, latency: float,
                error: str | None = None) -> None:
        if self.stream is None:
            return
        self.stream.emit("lm_call", site.node, role=site.role, model=self.model,
                         prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                         cost_usd=cost, latency_s=round(latency, 4), iteration=site.iteration,
                         prompt_preview=request[-PREVIEW_CHARS:],
                         response_preview=response[:PREVIEW_CHARS], error=error)

    def copy(self, **kwargs: Any) -> BudgetedLM:
        clone = super().copy(**kwargs)
        clone._local = threading.local()
        return clone


def build_lms(settings: Settings, budget: Budget, stream: EventStream | None = None,
              node: NodeRef | None = None) -> tuple[BudgetedLM, BudgetedLM]:
    """The root and sub LMs of a run, both drawing on `budget`."""
    common = {"budget": budget, "stream": stream, "node": node}
    if settings.api_base:
        common["api_base"] = settings.api_base
    if settings.api_key:
        common["api_key"] = settings.api_key
    elif settings.api_base:
        common["api_key"] = "none"  # local OpenAI-compatible servers often want any key
    root = BudgetedLM(settings.root_model, role="root", **common)
    sub = BudgetedLM(settings.effective_sub_model, role="sub", **common)
    return root, sub
