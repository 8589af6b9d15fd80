"""The shared budget ledger: one `Budget` per turn, passed by reference to every node of the tree.

Every LM call: `r = budget.reserve(model, prompt_tokens, max_completion_tokens)` (may raise
Cancelled or BudgetExceeded), then `budget.commit(r, prompt_tokens, completion_tokens)` once
the call is over, even if it errored (commit whatever usage is known, else 0): it counts as a call.

A retried call (a 429, a 5xx, a reset or timeout, a reply cut at the token limit) is one call per
attempt: each attempt reserves and settles on its own, so a failed attempt that reached the
provider counts as a call, and one refused before connecting does not. `take_retry` bounds the
retries of a whole turn.

A reservation holds the call's worst case (its prompt plus the most completion it may produce)
until it is committed, so concurrent calls never overshoot a limit together: calls
never, tokens and USD only by what a provider counts beyond the prompt estimate the caller gave.
A USD limit on a model without a known price is refused (`UnpricedModel`) unless the budget
allows unpriced models.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from .prices import ModelPrice, litellm_price, price_keys
from .watchdog import watch

if TYPE_CHECKING:
    from fleet_rlm.config import Settings

log = logging.getLogger(__name__)
# Process-wide, so a reservation can never settle another budget's.
_reservation_ids = itertools.count(1)

LimitKind = Literal["calls", "tokens", "usd", "wall_s", "depth"]


# One name per limit everywhere: the settings (FLEET_MAX_CALLS, ...), `Limits`, a message's
# `limits`, the REST API, the MCP tool and the CLI flags. A limit `max_X` caps the quantity `X`
# that usage counts and `budget()` reports as remaining (`calls`, `tokens`, `usd`, `wall_s`,
# `depth`). Earlier public names are still accepted, with a warning.
DEPRECATED_LIMIT_NAMES = {"max_lm_calls": "max_calls"}


def deprecated_name(old: str, new: str, where: str) -> None:
    """Warn (FutureWarning: shown to users by default) that `old` in `where` is now `new`."""
    message = f"{where}: `{old}` is deprecated; use `{new}`"
    log.warning(message)
    warnings.warn(message, FutureWarning, stacklevel=3)


def renamed_limits(values: Mapping[str, object], where: str) -> dict[str, object]:
    """`values` with each deprecated limit name replaced by its name (warning). Both names at
    once are refused (ValueError)."""
    out = dict(values)
    for old, new in DEPRECATED_LIMIT_NAMES.items():
        if old not in out:
            continue
        if new in out:
            raise ValueError(f"{where}: give `{new}` only (`{old}` is its deprecated name)")
        deprecated_name(old, new, where)
        out[new] = out.pop(old)
    return out


class _Record(BaseModel):
    # Every field appears in the wire format, so the generated TypeScript marks none optional.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class Limits(_Record):
    """None means unlimited."""

    model_config = ConfigDict(frozen=True)

    max_calls: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None
    max_wall_s: float | None = None
    max_depth: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_calls=settings.max_calls,
            max_tokens=settings.max_tokens,
            max_usd=settings.max_usd,
            max_wall_s=settings.max_wall_s,
            max_depth=settings.max_depth,
        )


class ModelUsage(_Record):
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    usd: float = 0.0
    usd_unknown_calls: int = Field(0, description="Calls whose model has no known price.")

    def _add(self, cost: CallCost) -> None:
        self.calls += 1
        self.prompt_tokens += cost.prompt_tokens
        self.completion_tokens += cost.completion_tokens
        self.tokens += cost.prompt_tokens + cost.completion_tokens
        if cost.usd is None:
            self.usd_unknown_calls += 1
        else:
            self.usd += cost.usd


class Usage(ModelUsage):
    elapsed_s: float
    limits: Limits
    by_model: dict[str, ModelUsage] = {}

    @classmethod
    def of_calls(cls, calls: list[CallCost], elapsed_s: float, limits: Limits) -> Usage:
        """The usage these calls add up to (a record rebuilt from its lm_call events)."""
        usage = cls(elapsed_s=elapsed_s, limits=limits)
        for cost in calls:
            usage._add(cost)
            usage.by_model.setdefault(cost.model, ModelUsage())._add(cost)
        return usage


class Remaining(TypedDict):
    """What is left per limit; None where unlimited. Sandbox code sees this as `budget()`."""

    calls: int | None
    tokens: int | None
    usd: float | None
    wall_s: float | None
    depth: int | None


class BudgetExceeded(Exception):
    """A run outcome, not a bug: the run ends cleanly with its partial result."""

    def __init__(self, kind: LimitKind, spent: float, limit: float,
                 call: float | None = None) -> None:
        super().__init__(kind, spent, limit)
        self.kind, self.spent, self.limit = kind, spent, limit
        self.call = call  # what the refused call reserves at worst, when it did not fit
        # What the stopped run had produced: the outermost RLM node's last output, set as the
        # exception leaves each node, so a turn can show its partial result.
        self.partial: str | None = None

    def __str__(self) -> str:
        text = f"budget exceeded: {self.kind} {self.spent:g}/{self.limit:g}"
        if self.call and self.spent < self.limit:
            text += f" (the next call may use up to {self.call:.4g} more)"
        return text


class UnpricedModel(ValueError):
    """A misuse, refused before any call: a USD limit cannot hold for a model with no price."""

    def __init__(self, model: str, max_usd: float) -> None:
        super().__init__(model, max_usd)
        self.model, self.max_usd = model, max_usd

    def __str__(self) -> str:
        return (f"model {self.model!r} has no known price, so the USD limit (${self.max_usd:g}) "
                "cannot be enforced: set its price in FLEET_PRICES (e.g. "
                f'{{"{self.model}": {{"input_per_mtok": 0.15, "output_per_mtok": 0.6}}}}) or '
                "run it with USD unmetered: FLEET_ALLOW_UNPRICED_MODELS=true")


class Cancelled(Exception):
    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


class CancelToken:
    """A stop flag shared by the whole tree; callbacks (killing sandboxes) run once on cancel.

    A run stopped by a limit (the wall-time watchdog) is cancelled with that limit's
    BudgetExceeded, which every check then raises instead of Cancelled."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: dict[object, Callable[[], None]] = {}
        self.reason: str | None = None
        self.exceeded: BudgetExceeded | None = None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str = "cancelled", exceeded: BudgetExceeded | None = None) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self.reason, self.exceeded = reason, exceeded
            self._event.set()
            callbacks, self._callbacks = list(self._callbacks.values()), {}
        for fn in callbacks:
            _run_callback(fn)

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, waking at once on cancel; True if cancelled."""
        return self._event.wait(max(timeout, 0.0))

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            if self.exceeded is not None:
                e = self.exceeded
                raise BudgetExceeded(e.kind, e.spent, e.limit)
            raise Cancelled(self.reason or "cancelled")

    def on_cancel(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Run `fn` once on cancel (now, if already cancelled). Returns its unregister function."""
        key = object()
        with self._lock:
            if not self._event.is_set():
                self._callbacks[key] = fn
                return lambda: self._unregister(key)
        _run_callback(fn)
        return lambda: None

    def _unregister(self, key: object) -> None:
        with self._lock:
            self._callbacks.pop(key, None)


def _run_callback(fn: Callable[[], None]) -> None:
    # One failing kill must not spare the rest of the tree.
    try:
        fn()
    except Exception:
        log.exception("cancel callback %r failed", fn)


@dataclass(frozen=True)
class Reservation:
    id: int
    model: str
    est_tokens: int
    est_usd: float


@dataclass(frozen=True)
class CallCost:
    model: str
    prompt_tokens: int
    completion_tokens: int
    usd: float | None  # None: the model has no known price


class Budget:
    """Thread-safe ledger of every LM call in a turn. Share it by reference, never copy it."""

    def __init__(
        self,
        limits: Limits,
        prices: Mapping[str, ModelPrice | Mapping[str, float]] | None = None,
        cancel: CancelToken | None = None,
        allow_unpriced: bool = False,
    ) -> None:
        self.limits = limits
        self.allow_unpriced = allow_unpriced
        self.prices = {m: ModelPrice.model_validate(p) for m, p in (prices or {}).items()}
        self.cancel = cancel or CancelToken()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._outstanding: dict[int, Reservation] = {}
        self._total = ModelUsage()
        self._by_model: dict[str, ModelUsage] = {}
        self.retries = 0  # model-call retries taken in this turn
        if limits.max_wall_s is not None:
            watch(self)

    @classmethod
    def from_settings(cls, settings: Settings, cancel: CancelToken | None = None) -> Budget:
        return cls(Limits.from_settings(settings), settings.prices, cancel,
                   settings.allow_unpriced_models)

    def price(self, model: str) -> ModelPrice | None:
        """Override from `prices` first, then LiteLLM's table."""
        for key in price_keys(model):
            if key in self.prices:
                return self.prices[key]
        return litellm_price(model)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        price = self.price(model)
        return None if price is None else price.cost(prompt_tokens, completion_tokens)

    def require_price(self, model: str) -> None:
        """Raise UnpricedModel when a USD limit is set and `model` has no price to meter it by."""
        if (self.limits.max_usd is not None and not self.allow_unpriced
                and self.price(model) is None):
            raise UnpricedModel(model, self.limits.max_usd)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    @property
    def deadline(self) -> float:
        """The monotonic time at which the wall limit runs out (infinity without one)."""
        limit = self.limits.max_wall_s
        return math.inf if limit is None else self._started + limit

    def expire(self) -> None:
        """Stop the run: the wall limit has run out."""
        limit = self.limits.max_wall_s or 0.0
        self.cancel.cancel("time limit reached",
                           BudgetExceeded("wall_s", round(self.elapsed_s, 3), limit))

    def reserve(self, model: str, prompt_tokens: int = 0,
                max_completion_tokens: int = 0) -> Reservation:
        """Admit one call at its worst case (`prompt_tokens` plus `max_completion_tokens`) or
        raise Cancelled / BudgetExceeded / UnpricedModel. Settle it with commit."""
        self.cancel.raise_if_cancelled()
        self.require_price(model)
        est_tokens = prompt_tokens + max_completion_tokens
        # Priced outside the lock; an unpriced model (allowed) holds no USD.
        est_usd = self.cost(model, prompt_tokens, max_completion_tokens) or 0.0
        with self._lock:
            self._admit(est_tokens, est_usd)
            reservation = Reservation(next(_reservation_ids), model, est_tokens, est_usd)
            self._outstanding[reservation.id] = reservation
        return reservation

    def ensure_open(self) -> None:
        """Raise what the next call's reservation would (cancelled, or a limit with nothing
        left): checked before work that would only end at that call, like a child sandbox."""
        self.cancel.raise_if_cancelled()
        with self._lock:
            self._admit(0, 0.0)

    def _admit(self, est_tokens: int, est_usd: float) -> None:
        """Raise BudgetExceeded unless one more call of this size fits. Caller holds the lock."""
        lim = self.limits
        elapsed = self.elapsed_s
        if lim.max_wall_s is not None and elapsed >= lim.max_wall_s:
            raise BudgetExceeded("wall_s", round(elapsed, 3), lim.max_wall_s)
        calls, tokens, usd = self._in_use()
        if lim.max_calls is not None and calls + 1 > lim.max_calls:
            raise BudgetExceeded("calls", calls, lim.max_calls)
        if lim.max_tokens is not None and (
            tokens >= lim.max_tokens or tokens + est_tokens > lim.max_tokens
        ):
            raise BudgetExceeded("tokens", tokens, lim.max_tokens, est_tokens)
        if lim.max_usd is not None and (usd >= lim.max_usd or usd + est_usd > lim.max_usd):
            raise BudgetExceeded("usd", usd, lim.max_usd, est_usd)

    def commit(
        self, reservation: Reservation, prompt_tokens: int, completion_tokens: int
    ) -> CallCost:
        """Record a call that reached the provider (even one that errored) with its actual usage."""
        usd = self.cost(reservation.model, prompt_tokens, completion_tokens)
        cost = CallCost(reservation.model, prompt_tokens, completion_tokens, usd)
        with self._lock:
            self._settle(reservation)
            self._total._add(cost)
            self._by_model.setdefault(reservation.model, ModelUsage())._add(cost)
        return cost

    def carry(self, earlier: Usage) -> None:
        """Count what an earlier part of the same turn spent (a turn resumed after ask_user),
        so its limits hold across the pause and its usage totals are whole."""
        with self._lock:
            for total, part in [(self._total, earlier),
                                *((self._by_model.setdefault(m, ModelUsage()), u)
                                  for m, u in earlier.by_model.items())]:
                for name in ModelUsage.model_fields:
                    setattr(total, name, getattr(total, name) + getattr(part, name))
            self._started -= earlier.elapsed_s
        if self.limits.max_wall_s is not None:
            watch(self)  # the deadline moved

    def take_retry(self, limit: int) -> bool:
        """Count one more model-call retry in this turn; False (nothing counted) once `limit`
        retries were taken."""
        with self._lock:
            if self.retries >= limit:
                return False
            self.retries += 1
            return True

    def release(self, reservation: Reservation) -> None:
        """Return the slot of a call that failed before reaching the provider: it does not count."""
        with self._lock:
            self._settle(reservation)

    def check_depth(self, depth: int) -> None:
        if self.limits.max_depth is not None and depth > self.limits.max_depth:
            raise BudgetExceeded("depth", depth, self.limits.max_depth)

    def remaining(self, depth: int = 0) -> Remaining:
        """What is left for new calls (outstanding reservations already subtracted)."""
        lim = self.limits
        with self._lock:
            calls, tokens, usd = self._in_use()
            elapsed = self.elapsed_s

        def left(limit, used):
            return None if limit is None else max(limit - used, 0)

        return Remaining(
            calls=left(lim.max_calls, calls),
            tokens=left(lim.max_tokens, tokens),
            usd=left(lim.max_usd, usd),
            wall_s=left(lim.max_wall_s, elapsed),
            depth=left(lim.max_depth, depth),
        )

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(
                **self._total.model_dump(),
                elapsed_s=self.elapsed_s,
                limits=self.limits,
                by_model={m: u.model_copy() for m, u in self._by_model.items()},
            )

    def _in_use(self) -> tuple[int, int, float]:
        """Committed plus outstanding calls, tokens and USD. Caller holds the lock."""
        out = self._outstanding.values()
        return (
            self._total.calls + len(out),
            self._total.tokens + sum(r.est_tokens for r in out),
            self._total.usd + sum(r.est_usd for r in out),
        )

    def _settle(self, reservation: Reservation) -> None:
        if self._outstanding.pop(reservation.id, None) is None:
            raise ValueError(f"reservation {reservation.id} was already committed")
