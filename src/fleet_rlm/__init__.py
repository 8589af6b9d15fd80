"""fleet-rlm: a workspace for recursive language-model work on DSPy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Budget", "BudgetExceeded", "FleetAgent", "Limits", "RecursiveRLM", "Settings",
           "promoted"]

if TYPE_CHECKING:
    from .api import RecursiveRLM
    from .budget import Budget, BudgetExceeded, Limits
    from .config import Settings
    from .engine.agent import FleetAgent
    from .sessions.offline import promoted

_LAZY = {"Budget": ".budget", "BudgetExceeded": ".budget", "Limits": ".budget",
         "Settings": ".config",
         "RecursiveRLM": ".api", "FleetAgent": ".engine.agent",
         "promoted": ".sessions.offline"}


def __getattr__(name: str) -> Any:
    # dspy takes a second to import: only pay for it when the engine is used.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
