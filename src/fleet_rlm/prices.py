"""Model prices: overrides aside, from LiteLLM's bundled table, read as data (importing litellm
itself takes seconds)."""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# LiteLLM otherwise fetches its price table from GitHub when first imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

log = logging.getLogger(__name__)


class ModelPrice(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


def price_keys(model: str) -> tuple[str, str]:
    return model, model.split("/", 1)[-1]  # "openai/gpt-4o-mini", then "gpt-4o-mini"


@functools.cache
def _litellm_table() -> dict:
    """LiteLLM's bundled price table, read as data: importing litellm itself takes seconds."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(spec.submodule_search_locations[0]) / "model_prices_and_context_window_backup.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("LiteLLM's price table is unreadable at %s; costs will be unknown", path)
        return {}


def litellm_price(model: str) -> ModelPrice | None:
    """The price in LiteLLM's bundled table, looked up with and without the provider prefix."""
    for key in price_keys(model):
        entry = _litellm_table().get(key)
        if entry and "input_cost_per_token" in entry:
            return ModelPrice(
                input_per_mtok=entry["input_cost_per_token"] * 1e6,
                output_per_mtok=entry.get("output_cost_per_token", 0.0) * 1e6,
            )
    return None


def max_output_tokens(model: str) -> int | None:
    """The most completion tokens the model produces per call, from LiteLLM's bundled table."""
    for key in price_keys(model):
        entry = _litellm_table().get(key) or {}
        if isinstance(entry.get("max_output_tokens"), int):
            return entry["max_output_tokens"]
    return None
