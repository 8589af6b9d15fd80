"""dspy's in-sandbox facade on our tree: what REPL code builds with `import dspy`.

dspy (3.4) installs a stand-in `dspy` module in every RLM sandbox: code there constructs
predictors that the host builds and runs. Left as it is, a `dspy.RLM(...)` built there runs in a
sandbox of its own outside the tree: no depth check, no node, its calls billed to its parent.
Here instead:

- `dspy.RLM(signature)` is a child node of the tree, like `rlm_query`: its own sandbox, the
  depth limit, its own events and costs on the shared budget; past the depth limit it is
  refused with a message saying so;
- `dspy.CodeAct` and `dspy.ProgramOfThought` (which would run code in sandboxes outside the
  tree) are refused;
- the others (Predict, ChainOfThought, ReAct, ReActV2) call the sub-model, reported as the
  node's sub calls.

dspy's private names used for this come from dspy_compat.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dspy import CodeExecutionError, CodeInterpreterError, Prediction

from ..lm import call_site
from .dspy_compat import (
    CALL_TOOL,
    CONSTRUCT_TOOL,
    SUB_AGENT_INSTRUCTIONS,
    FacadeInvocation,
    custom_types,
    resolve_signature,
    user_tools,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .rlm import NodeRLM

log = logging.getLogger(__name__)

OUTSIDE_THE_TREE = ("CodeAct", "ProgramOfThought")
TREE_NOTE = """In this REPL `dspy.RLM(signature)` runs as a child RLM like rlm_query, counts
toward the max depth and takes no other arguments; dspy.CodeAct and dspy.ProgramOfThought are
unavailable.
"""


class TreeFacade(FacadeInvocation):
    """The facade of one node's sandbox."""

    def __init__(self, node: NodeRLM, reserve: Callable[[int], None]) -> None:
        super().__init__(user_tools(node), node._new_interpreter, None, lm=node.run.sub_lm,
                         reserve=reserve)
        self.node = node

    def _build_predictor(self, kind: str, signature: Any, kwargs: dict[str, Any] | None) -> Any:
        if kind == "RLM":
            if kwargs:
                raise CodeInterpreterError(
                    f"dspy.RLM in the REPL takes only a signature, not {sorted(kwargs)}: it "
                    "runs as a child RLM with this run's settings and budget")
            return ChildRLM(self.node, resolve_signature(signature, custom_types(self)))
        if kind in OUTSIDE_THE_TREE:
            raise CodeInterpreterError(
                f"dspy.{kind} is unavailable in this REPL: it would run code outside the "
                "recursive tree; use rlm_query or dspy.RLM")
        return super()._build_predictor(kind, signature, kwargs)

    def call(self, handle: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        with call_site("sub", self.node.node, self.node.iteration):
            return super().call(handle, inputs)


class ChildRLM:
    """A `dspy.RLM` built by REPL code: each call runs one child node of the tree."""

    def __init__(self, parent: NodeRLM, signature: Any) -> None:
        self.parent, self.signature = parent, signature

    def __call__(self, **inputs: Any) -> Prediction:
        from .rlm import NodeRLM

        parent, run = self.parent, self.parent.run
        depth = parent.node.depth + 1
        if depth > run.max_depth:
            raise CodeInterpreterError(
                f"dspy.RLM at depth {depth} exceeds max depth {run.max_depth}: use llm_query "
                "or dspy.Predict here instead")
        run.budget.ensure_open()
        child = NodeRLM(run, parent.node.child(), self.signature, spawned_at=parent.iteration)
        result = child(**inputs)
        if result.status in ("budget", "cancelled"):
            raise result.exception
        if result.status == "error":
            raise CodeInterpreterError(f"child RLM failed: {result.error}")
        return Prediction(**{name: result[name] for name in child.signature.output_fields})


def install_facade(node: NodeRLM, repl: Any, reserve: Callable[[int], None]) -> str:
    """Install the facade in `node`'s sandbox; returns the instructions that describe it, or
    "" when the interpreter cannot host it (then REPL code has no `dspy` at all)."""
    try:
        TreeFacade(node, reserve).install(repl)
    except (CodeExecutionError, SyntaxError) as exc:
        for name in (CONSTRUCT_TOOL, CALL_TOOL):
            repl.tools.pop(name, None)
        log.warning("dspy sub-agents are unavailable on %s: %s", type(repl).__name__, exc)
        return ""
    return SUB_AGENT_INSTRUCTIONS + TREE_NOTE
