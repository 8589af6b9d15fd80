"""Budgeted LMs: every model call reserves from the shared Budget and reports an `lm_call` event.

Which node and role a call belongs to travels in a context variable (`call_site`), so one LM
object serves the root's iterations, the extract fallback, `llm_query` and the chat agent.

Provider faults are handled here, and only here: dspy's own retries are off (`num_retries=0`;
its lm15 client never retries). A 429 (after its `Retry-After`), a 500/502/503/504, a dropped
connection, a timeout or a malformed reply is retried with capped exponential backoff and jitter
(`RetryPolicy`), while the turn's wall limit and its per-turn retry count allow; cancel stops a
backoff at once. Each attempt is its own `lm_call` event and, when it reached the provider, its
own call in the budget. A rejected key (401/403) or an unknown model fails at once, naming the
setting to fix. A reply cut at the token limit is retried with the cut shown to the model and is
never returned as a complete answer. Reasoning-only replies and native tool calls become text.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import (
    LMAuthError,
    LMError,
    LMNotConfiguredError,
    LMProviderError,
    LMUnsupportedModelError,
    is_retryable_lm_error,
)

from .budget import Budget, BudgetExceeded, Cancelled
from .capture import CallCapture, CapturedCall, request_params, sent_messages
from .config import Settings
from .engine.dspy_compat import skip_dspy_pricing
from .events import EventStream, NodeRef
from .prices import max_output_tokens
from .redaction import redact

PREVIEW_CHARS = 600
# Whose prompts are previewed by their start: an llm_query prompt is the code's own text, its
# instruction first; other prompts are dspy's, where the end (the latest turn) tells most.
HEAD_PREVIEW_ROLES = frozenset({"sub"})


def _preview(role: str, request: str) -> str:
    return (request[:PREVIEW_CHARS] if role in HEAD_PREVIEW_ROLES
            else request[-PREVIEW_CHARS:])
MESSAGE_TOKENS = 4  # what a chat format adds per message (role and separators)
# LM calls run here so a cancelled turn can walk away from a request still in flight.
_calls = ThreadPoolExecutor(256, thread_name_prefix="lm-call")
RETRY_STATUSES = frozenset({200, 408, 429, 500, 502, 503, 504})  # 200: a body that is not JSON
RECORDING_KIND = "fleet-lm-recording"  # the scripted LM server's replay format


@dataclass(frozen=True)
class RetryPolicy:
    """How a model call survives provider faults (see the module docstring)."""

    retries: int = 4  # per call
    turn_retries: int = 16  # per turn, counted on the Budget
    base_s: float = 0.5
    max_s: float = 30.0
    length_retries: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.lm_retries, settings.lm_turn_retries, settings.lm_retry_base_s,
                   settings.lm_retry_max_s, settings.lm_length_retries)

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (1, 2, …): exponential, capped, with jitter."""
        return min(self.max_s, self.base_s * 2 ** (retry - 1)) * random.uniform(0.5, 1.0)


class ProviderRefused(LMError):
    """The provider refused the key or the model: no retry helps, a setting must change.
    An LMError, so a run ends with status error and this message."""

    default_code = "provider_refused"

    def __init__(self, message: str, setting: str, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.setting = setting


class TruncatedReply(LMError):
    """Every attempt's reply was cut at the token limit (finish_reason: length); `text` is the
    last cut reply."""

    default_code = "truncated"

    def __init__(self, message: str, text: str = "") -> None:
        super().__init__(message)
        self.text = text


class Recorder:
    """Appends every model request and reply to a JSON lines file, keys redacted: a recorded
    run the scripted LM server replays (`fleet_rlm.testing.scripted_lm.rules_from_recording`).
    """

    _locks: dict[Path, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, path: Path | str, *, truncate: bool = False,
                 about: dict[str, Any] | None = None) -> None:
        """`truncate`: start a fresh file; `about`: what the header line says of the run."""
        self.path = Path(path)
        with self._locks_guard:
            self._lock = self._locks.setdefault(self.path.resolve(), threading.Lock())
        with self._lock:
            if truncate or not self.path.exists() or self.path.stat().st_size == 0:
                header = {"kind": RECORDING_KIND, "version": 1, **(about or {})}
                self.path.write_text(redact(json.dumps(header, ensure_ascii=False)) + "\n")

    def write(self, turn_id: str | None, model: str, messages: list, params: dict,
              response: dict) -> None:
        line = {"turn_id": turn_id,
                "request": {"model": model, "messages": messages, "params": params},
                "response": response}
        text = redact(json.dumps(line, default=str, ensure_ascii=False))
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(text + "\n")


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


def _retryable(exc: Exception) -> bool:
    """429, 5xx, resets and timeouts (dspy's own list), and a reply whose body was not JSON."""
    if is_retryable_lm_error(exc):
        return True
    return isinstance(exc, LMProviderError) and getattr(exc, "status", None) in RETRY_STATUSES


def _reached_provider(exc: BaseException) -> bool:
    """False only when the connection was never made (refused, no such host): such an attempt
    was not sent, so it does not count in the budget."""
    import socket

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError | socket.gaierror):
            return False
        cause = cause.__cause__ or cause.__context__
    return True


def _finish_reason(entry: dict | None) -> str | None:
    response = (entry or {}).get("response")
    reason = getattr(response, "finish_reason", None)
    if reason is None and isinstance(response, dict):
        reason = (response.get("choices") or [{}])[0].get("finish_reason")
    if reason is None:
        return None
    return {"tool_call": "tool_calls"}.get(str(reason), str(reason))


def _tool_calls_text(calls: list) -> str:
    """Native tool calls as text an adapter can parse: one call's arguments as a JSON object
    (providers that force function calling put the output fields there), several as a list."""
    parsed = []
    for call in calls:
        function = call.get("function", call) if isinstance(call, dict) else {}
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            with contextlib.suppress(json.JSONDecodeError):
                arguments = json.loads(arguments)
        parsed.append({"name": function.get("name"), "arguments": arguments})
    if len(parsed) == 1 and isinstance(parsed[0]["arguments"], dict):
        return json.dumps(parsed[0]["arguments"], ensure_ascii=False)
    return json.dumps(parsed, ensure_ascii=False)


def _as_text(outputs: Any, kwargs: dict) -> Any:
    """Replies with no text become text: a reasoning model's reasoning field, or the native
    tool calls a provider answered with (unless the caller asked for tools)."""
    if not isinstance(outputs, list) or kwargs.get("tools"):
        return outputs
    plain = []
    for output in outputs:
        if isinstance(output, dict) and not output.get("text"):
            text = output.get("reasoning_content") or (
                _tool_calls_text(output["tool_calls"]) if output.get("tool_calls") else "")
            if set(output) <= {"text", "reasoning_content", "tool_calls"}:
                output = text
            else:
                output = {**output, "text": text}
        plain.append(output)
    return plain


def _with_truncation_note(prompt: Any, messages: Any, cut: str, limit: int) -> list:
    """The request again, with the cut reply shown and a request to fit the limit."""
    sent = list(messages) if messages is not None else [{"role": "user", "content": str(prompt)}]
    note = (f"Your previous reply was cut off at the {limit}-token limit and was not used. It "
            f"ended: {cut[-300:]!r}. Reply again in full, in the required format, shorter.")
    return [*sent, {"role": "user", "content": note}]


def _failure_record(exc: Exception) -> dict:
    status = getattr(exc, "status", None)
    if status is None:
        return {"fault": type(exc).__name__, "error": str(exc)}
    return {"status": status, "retry_after": getattr(exc, "retry_after", None),
            "body": {"error": {"message": str(getattr(exc, "message", exc)),
                               "type": type(exc).__name__, "code": str(status)}}}


def _reply_record(model: str, outputs: Any, finish: str | None, usage: dict,
                  entry: dict | None) -> dict:
    """The reply as an OpenAI chat completion body (what the scripted server sends back)."""
    first = outputs[0] if isinstance(outputs, list) and outputs else ""
    message: dict[str, Any] = {"role": "assistant"}
    if isinstance(first, dict):
        message["content"] = first.get("text")
        for key in ("reasoning_content", "tool_calls"):
            if first.get(key):
                message[key] = first[key]
    else:
        message["content"] = str(first)
    usage = {k: v for k, v in usage.items()
             if k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    response = (entry or {}).get("response")
    return {"status": 200, "body": {
        "id": str(getattr(response, "id", None) or "chatcmpl-recorded"),
        "object": "chat.completion", "created": 0, "model": model.split("/", 1)[-1],
        "choices": [{"index": 0, "message": message, "finish_reason": finish or "stop"}],
        "usage": usage}}


class BudgetedLM(dspy.LM):
    """A dspy.LM whose every call is admitted by `budget` and reported on `stream`.

    The default call site (role and node) applies when no `call_site` is active.
    """

    def __init__(self, model: str, *, budget: Budget, stream: EventStream | None = None,
                 node: NodeRef | None = None, role: str = "root",
                 call_max_tokens: int = 16_000, retry: RetryPolicy | None = None,
                 recorder: Recorder | None = None, model_setting: str = "FLEET_ROOT_MODEL",
                 capture: CallCapture | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("cache", False)
        kwargs.setdefault("num_retries", 0)  # retries are ours (RetryPolicy), never doubled
        super().__init__(model, **kwargs)
        self.budget, self.stream = budget, stream
        self.call_max_tokens = call_max_tokens
        self.retry = retry or RetryPolicy()
        self.recorder = recorder
        self.capture = capture
        self.model_setting = model_setting
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
        most, bound = self.completion_limit(kwargs)
        kwargs.update(bound)
        sent = [0]  # requests sent for this call, across retries
        cut = 0
        # A streamed reply's chunks are already on screen: a cut one is not streamed again.
        length_retries = 0 if dspy.settings.send_stream is not None else self.retry.length_retries
        while True:
            retry_cut = cut < length_retries
            outputs, finish = self._attempt(site, prompt, messages, kwargs, sent, retry_cut)
            if finish not in ("length", "length-final"):
                return outputs
            cut += 1
            # Cut at the token limit: never a complete answer. Retry with the cut shown.
            if finish == "length-final":
                raise TruncatedReply(
                    f"{self.model}: the reply was cut at the token limit ({most} tokens, "
                    f"finish_reason: length) on {cut} attempt(s); raise FLEET_CALL_MAX_TOKENS "
                    "or ask for a shorter answer", _output_text(outputs))
            messages = _with_truncation_note(prompt, messages, _output_text(outputs), most)
            prompt = None

    def _attempt(self, site: CallSite, prompt: Any, messages: Any, kwargs: dict,
                 sent: list[int], retry_cut: bool) -> tuple[Any, str | None]:
        """One call that may be retried on provider faults; returns its outputs and finish
        reason. Every request sent is one lm_call event. A reply cut at the token limit is
        retried by the caller only when `retry_cut` and a turn retry is left."""
        failures = 0
        while True:
            request = _request_text(prompt, messages)
            prompt_tokens = estimate_prompt_tokens(request, len(messages or []) or 1)
            most, _ = self.completion_limit(kwargs)
            reservation = self.budget.reserve(self.model, prompt_tokens, most)
            started = time.perf_counter()
            sent[0] += 1
            number = sent[0]
            try:
                outputs, entry = self._send(prompt, messages, kwargs)
            except (Cancelled, BudgetExceeded) as exc:
                # Walked away from a request in flight: the provider bills it, but its usage
                # never comes back here; count the prompt as sent.
                cost = self.budget.commit(reservation, prompt_tokens, 0)
                self._report(site, request, "", prompt_tokens, 0, cost.usd,
                             time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}",
                             estimated=True, attempt=number,
                             sent=(prompt, messages, kwargs, None))
                raise
            except Exception as exc:
                reached = _reached_provider(exc)
                if reached:  # it may have been processed and billed: it counts
                    self.budget.commit(reservation, 0, 0)
                else:
                    self.budget.release(reservation)
                status = getattr(exc, "status", None)
                self._record(prompt, messages, kwargs, _failure_record(exc))
                delay, why = self._retry_delay(exc, failures + 1)
                error: str | None = (f"{type(exc).__name__}: {exc}"
                                     + (f" ({why})" if why else ""))
                self._report(site, request, "", 0, 0, None, time.perf_counter() - started,
                             error=error, attempt=number, http_status=status,
                             retry_in_s=delay, counted=reached,
                             sent=(prompt, messages, kwargs, None))
                if delay is None:
                    refused = self._refusal(exc)
                    if refused is not None:
                        raise refused from exc
                    raise
                failures += 1
                if self.budget.cancel.wait(delay):
                    self.budget.cancel.raise_if_cancelled()
                continue
            usage = (entry or {}).get("usage") or {}
            estimated = not usage.get("prompt_tokens")
            prompt_tokens = int(usage.get("prompt_tokens") or prompt_tokens)
            completion_tokens = int(usage.get("completion_tokens") or 0)
            cost = self.budget.commit(reservation, prompt_tokens, completion_tokens)
            finish = _finish_reason(entry)
            self._record(prompt, messages, kwargs,
                         _reply_record(self.model, outputs, finish, usage, entry))
            outputs = _as_text(outputs, kwargs)
            error, retry_in = None, None
            if finish == "length":
                error = "reply cut at the token limit (finish_reason: length)"
                if retry_cut and self.budget.take_retry(self.retry.turn_retries):
                    retry_in = 0.0
                else:
                    error += "; not retried"
            reply = _output_text(outputs)
            self._report(site, request, reply, prompt_tokens, completion_tokens,
                         cost.usd, time.perf_counter() - started, estimated=estimated,
                         attempt=number, finish_reason=finish, error=error, retry_in_s=retry_in,
                         sent=(prompt, messages, kwargs, reply))
            if finish == "length" and retry_in is None:
                finish = "length-final"
            return outputs, finish

    def _retry_delay(self, exc: Exception, retry: int) -> tuple[float | None, str]:
        """How long to wait before retry number `retry`, or None and why not."""
        if not _retryable(exc):
            return None, ""
        if retry > self.retry.retries:
            return None, f"gave up after {retry} attempts"
        if dspy.settings.send_stream is not None and getattr(exc, "status", None) is None:
            # Chunks of a streamed reply may already be on screen: never replay it (as dspy).
            return None, "a streamed reply is not replayed once it may have begun"
        hint = getattr(exc, "retry_after", None)
        delay = self.retry.backoff(retry) if hint is None else max(float(hint), 0.0)
        if delay > self.retry.max_s:
            return None, (f"the provider asks to wait {delay:g}s, longer than "
                          f"FLEET_LM_RETRY_MAX_S ({self.retry.max_s:g}s)")
        if time.monotonic() + delay >= self.budget.deadline:
            return None, "no time left in the turn's wall limit to retry"
        if self.budget.cancel.cancelled:
            return None, "cancelled"
        if not self.budget.take_retry(self.retry.turn_retries):
            return None, f"the turn's {self.retry.turn_retries} retries are used up"
        return round(delay, 3), ""

    def _refusal(self, exc: Exception) -> ProviderRefused | None:
        """A clear error naming the setting to fix, for failures no retry can help."""
        status = getattr(exc, "status", None)
        detail = str(getattr(exc, "message", "") or exc).strip().splitlines()
        detail_text = detail[0] if detail else type(exc).__name__
        where = f" at {self.kwargs['api_base']}" if self.kwargs.get("api_base") else ""
        if isinstance(exc, LMAuthError | LMNotConfiguredError) or status in (401, 403):
            return ProviderRefused(
                f"the provider{where} refused the API key for {self.model}"
                f"{f' (HTTP {status})' if status else ''}: {detail_text}. Set FLEET_API_KEY "
                "(or the provider's own key variable, e.g. OPENAI_API_KEY) to a valid key.",
                "FLEET_API_KEY", status)
        if isinstance(exc, LMUnsupportedModelError) or status == 404:
            return ProviderRefused(
                f"the provider{where} does not serve the model {self.model!r}"
                f"{f' (HTTP {status})' if status else ''}: {detail_text}. Set "
                f"{self.model_setting} to a model it serves (and FLEET_API_BASE to its "
                "endpoint).", self.model_setting, status)
        return None

    def _send(self, prompt: Any, messages: Any, kwargs: dict) -> tuple:
        parent_call = super().__call__
        if dspy.settings.send_stream is not None:
            # dspy streams chunks from the thread it runs in; no hop to the pool here.
            return self._call_recording(parent_call, prompt, messages, kwargs)
        future = _calls.submit(contextvars.copy_context().run, self._call_recording,
                               parent_call, prompt, messages, kwargs)
        return self._wait(future)

    def _record(self, prompt: Any, messages: Any, kwargs: dict, response: dict) -> None:
        if self.recorder is None:
            return
        sent = messages if messages is not None else [{"role": "user", "content": prompt}]
        params = {k: v for k, v in request_params({**self.kwargs, **kwargs}).items()
                  if k != "api_base"}
        self.recorder.write(self.stream.turn_id if self.stream else None, self.model,
                            list(sent), params, response)

    def _call_recording(self, call: Any, prompt: Any, messages: Any, kwargs: dict) -> tuple:
        self._local.entry = None
        outputs = call(prompt, messages=messages, **kwargs)
        return outputs, self._local.entry

    def _wait(self, future: Any) -> tuple:
        """The call's result, or the turn's cancel as soon as it comes (the request goes on in
        its thread, walked away from). Woken by whichever comes first, never by a poll: the
        calls of a fan-out each polling every 50 ms took the GIL from the calls at work."""
        woken = threading.Event()
        future.add_done_callback(lambda _: woken.set())
        unregister = self.budget.cancel.on_cancel(woken.set)
        try:
            woken.wait()
        finally:
            unregister()
        if not future.done():
            self.budget.cancel.raise_if_cancelled()
        return future.result()

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        import asyncio

        def call() -> Any:
            return self(prompt, messages=messages, **kwargs)

        return await asyncio.to_thread(contextvars.copy_context().run, call)

    def _report(self, site: CallSite, request: str, response: str, prompt_tokens: int,
                completion_tokens: int, cost: float | None, latency: float,
                error: str | None = None, estimated: bool = False, attempt: int = 1,
                http_status: int | None = None, finish_reason: str | None = None,
                retry_in_s: float | None = None, counted: bool = True,
                sent: tuple[Any, Any, dict, str | None] | None = None) -> None:
        if self.stream is None:
            return
        call_id, missing = None, None
        if self.capture is not None and sent is not None:
            prompt, messages, kwargs, reply = sent
            call_id = uuid.uuid4().hex[:16]
            call = CapturedCall(
                call_id=call_id, turn_id=self.stream.turn_id, node_id=site.node.node_id,
                role=site.role, model=self.model,
                params=request_params({**self.kwargs, **kwargs}),
                messages=sent_messages(prompt, messages), reply=reply,
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                cost_usd=cost, latency_s=round(latency, 4), finish_reason=finish_reason,
                attempt=attempt, error=error)
            try:
                missing = self.capture.save(call)
            except Exception as exc:  # noqa: BLE001 - keeping a call never fails the call
                missing = f"the call could not be kept: {type(exc).__name__}: {exc}"
        self.stream.emit("lm_call", site.node, role=site.role, model=self.model,
                         call_id=call_id, capture_missing=missing,
                         prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                         cost_usd=cost, latency_s=round(latency, 4), iteration=site.iteration,
                         prompt_preview=_preview(site.role, request),
                         response_preview=response[:PREVIEW_CHARS], error=error,
                         usage_estimated=estimated, attempt=attempt, http_status=http_status,
                         finish_reason=finish_reason, retry_in_s=retry_in_s, counted=counted)

    def copy(self, **kwargs: Any) -> BudgetedLM:
        clone = super().copy(**kwargs)
        clone._local = threading.local()
        return clone


skip_dspy_pricing(BudgetedLM)  # the budget prices every call (prices.py); dspy's estimate is unused


def _common(settings: Settings, budget: Budget, stream: EventStream | None,
            node: NodeRef | None, capture: CallCapture | None = None) -> dict[str, Any]:
    common: dict[str, Any] = {"budget": budget, "stream": stream, "node": node,
              "capture": capture,
              "call_max_tokens": settings.call_max_tokens, "timeout": settings.lm_timeout_s,
              "retry": RetryPolicy.from_settings(settings),
              "recorder": Recorder(settings.record_file) if settings.record_file else None}
    if settings.api_base:
        common["api_base"] = settings.api_base
    if settings.api_key:
        common["api_key"] = settings.api_key
    elif settings.api_base:
        common["api_key"] = "none"  # local OpenAI-compatible servers often want any key
    return common


def build_lms(settings: Settings, budget: Budget, stream: EventStream | None = None,
              node: NodeRef | None = None, capture: CallCapture | None = None
              ) -> tuple[BudgetedLM, BudgetedLM]:
    """The root and sub LMs of a run, both drawing on `budget` (and keeping their calls in
    `capture`, when given)."""
    common = _common(settings, budget, stream, node, capture)
    root = BudgetedLM(settings.root_model, role="root", model_setting="FLEET_ROOT_MODEL",
                      **common)
    sub = BudgetedLM(settings.effective_sub_model, role="sub",
                     model_setting="FLEET_SUB_MODEL" if settings.sub_model else
                     "FLEET_ROOT_MODEL", **common)
    return root, sub


def build_reflection_lm(settings: Settings, budget: Budget, model: str | None,
                        stream: EventStream | None = None) -> BudgetedLM:
    """The model an optimisation run reflects with (default: the root model), drawing on the
    run's one budget like the program it improves."""
    return BudgetedLM(model or settings.root_model, role="reflection",
                      model_setting="--reflection-model" if model else "FLEET_ROOT_MODEL",
                      **_common(settings, budget, stream, None))
