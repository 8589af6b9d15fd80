"""What a benchmark run will cost, before it runs: `fleet bench ... --dry-run`.

Prices come from the same place the budget takes them (FLEET_PRICES, then LiteLLM's table).
Tokens are counted at 4 characters a token.

- `direct`: one call with the whole context and the question. The low end pays for the prompt
  alone; the high end adds a completion as long as the gold answer written out (at least 256
  tokens), so it is exact up to the tokenizer and the length of the reply.
- `rlm` and `agent`: the root model sees the question and its own history, not the context, and
  reads the context through sub-calls. The low end is one root call of 2,000 tokens plus the sub
  model reading the context once. The high end is what the budget lets one task spend: at most
  max_calls calls of (context + 4,000) tokens, at most max_tokens tokens, every token at the
  dearest of the two models' prices, and never more than max_usd.
- `code-only`: no model, no cost.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleet_rlm.bench.tasks import CHARS_PER_TOKEN, Task, approx_tokens
from fleet_rlm.budget import Budget, ModelPrice

if TYPE_CHECKING:
    from fleet_rlm.config import Settings

ROOT_CALL_TOKENS = 2_000
SUB_CALL_OVERHEAD = 4_000
MIN_REPLY_TOKENS = 256


@dataclass(frozen=True)
class Projection:
    tasks: int
    context_tokens: int
    by_length: dict[int, tuple[int, int]]  # target tokens -> (tasks, context tokens)
    low_usd: float | None  # None: a model without a known price
    high_usd: float | None
    unpriced: tuple[str, ...]


def _reply_tokens(task: Task) -> int:
    gold = "\n".join(task.gold) if isinstance(task.gold, list) else task.gold
    return max(MIN_REPLY_TOKENS, len(gold) // CHARS_PER_TOKEN)


def _task_range(task: Task, mode: str, settings: Settings, root: ModelPrice,
                sub: ModelPrice) -> tuple[float, float]:
    context = approx_tokens(task.prompt)
    if mode == "direct":
        low = root.cost(context, 0)
        return low, low + root.cost(0, _reply_tokens(task))
    low = root.cost(ROOT_CALL_TOKENS, 0) + sub.cost(context, 0)
    ceiling = min(settings.max_tokens, settings.max_calls * (context + SUB_CALL_OVERHEAD))
    dearest = max(root.input_per_mtok, sub.input_per_mtok, root.output_per_mtok,
                  sub.output_per_mtok)
    high = min(settings.max_usd, ceiling * dearest / 1e6)
    return min(low, high), high


def project(tasks: list[Task], mode: str, settings: Settings) -> Projection:
    by_length: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for task in tasks:
        cell = by_length[int(task.meta.get("target_tokens")
                             or task.meta["target_chars"] // CHARS_PER_TOKEN)]
        cell[0] += 1
        cell[1] += approx_tokens(task.prompt)
    total = sum(c[1] for c in by_length.values())
    lengths = {k: (v[0], v[1]) for k, v in sorted(by_length.items())}
    if mode == "code-only":
        return Projection(len(tasks), total, lengths, 0.0, 0.0, ())
    budget = Budget.from_settings(settings)
    models = [settings.root_model] + ([] if mode == "direct" else [settings.effective_sub_model])
    prices = {m: budget.price(m) for m in models}
    unpriced = tuple(sorted({m for m, p in prices.items() if p is None}))
    if unpriced:
        return Projection(len(tasks), total, lengths, None, None, unpriced)
    root, sub = (budget.price(m) or ModelPrice(input_per_mtok=0, output_per_mtok=0)
                 for m in (settings.root_model, models[-1]))
    ranges = [_task_range(t, mode, settings, root, sub) for t in tasks]
    return Projection(len(tasks), total, lengths, sum(r[0] for r in ranges),
                      sum(r[1] for r in ranges), ())


def render(p: Projection, benchmark: str, mode: str, settings: Settings) -> list[str]:
    """Lines for the console."""
    model = ("no model" if mode == "code-only" else settings.root_model
             + ("" if mode == "direct" else f" (sub {settings.effective_sub_model})"))
    lines = [f"{benchmark} --mode {mode}: {p.tasks} tasks, {p.context_tokens:,} context tokens "
             f"in all, model {model}"]
    lines += [f"  {length:>9,} tokens: {n} tasks, {tokens:,} context tokens"
              for length, (n, tokens) in p.by_length.items()]
    if p.unpriced:
        lines.append("  projected cost: unknown; no price for " + ", ".join(p.unpriced)
                     + " (set FLEET_PRICES)")
    elif mode == "direct":
        lines.append(f"  projected cost: ${p.low_usd:.4f} (prompts) to ${p.high_usd:.4f} "
                     "(with replies as long as the gold answers)")
    else:
        lines.append(f"  projected cost: ${p.low_usd:.4f} to ${p.high_usd:.4f} (low: the context "
                     f"read once; high: each task at its limits, max_calls "
                     f"{settings.max_calls}, max_tokens {settings.max_tokens:,}, "
                     f"max_usd {settings.max_usd:g})")
    return lines
