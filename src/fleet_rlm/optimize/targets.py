"""What an optimisation run improves: the chat agent or the recursive engine, each as a dspy
module GEPA can run on an example (question, context) and whose predictors it rewrites. The
predictor names are the agent's and the engine's own, so a version loads into every new turn."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dspy

from ..budget import BudgetExceeded
from ..config import Settings
from ..engine.agent import TOOL_NAMES, FleetAgent, InMemorySession
from ..engine.programs import Target, instructions_of, release_of
from ..engine.rlm import NodeRLM, Run
from ..events import NodeRef

ENGINE_SIGNATURE = "context, question -> answer"  # the signature the agent delegates with


def _stop_on_limit(run: Run, call: Callable[[], dspy.Prediction]) -> dspy.Prediction:
    """A limit reached stops the whole run: every later call raises it at once."""
    try:
        return call()
    except BudgetExceeded as exc:
        run.cancel.cancel(str(exc), exc)
        raise


class AgentStudent(FleetAgent):
    """The chat agent, each example in a session of its own with the context as a document."""

    def deepcopy(self) -> AgentStudent:
        """A candidate GEPA builds: its own predictors, its tools bound to itself, the run
        (budget, stream) shared."""
        new = copy.copy(self)
        new.react, new.extract = self.react.deepcopy(), self.extract.deepcopy()
        new.tools = {name: tool.model_copy(update={"func": getattr(new, name)})
                     if name in TOOL_NAMES else tool for name, tool in self.tools.items()}
        return new

    def forward(self, question: str, context: str = "", **_: Any  # type: ignore[override]
                ) -> dspy.Prediction:
        self.run.stream.events.clear()  # one example's events at a time
        self.session = session = InMemorySession(self.run.settings)
        if context:
            session.add_document("context.txt", context)
        try:
            return _stop_on_limit(self.run, lambda: super(AgentStudent, self).forward(
                message=question))
        finally:
            session.close()


class EngineStudent(NodeRLM):
    """The recursive engine as the agent calls it: `context, question -> answer`."""

    def deepcopy(self) -> EngineStudent:
        new = copy.copy(self)
        new.generate_action = self.generate_action.deepcopy()
        new.extract = self.extract.deepcopy()
        return new

    def forward(self, question: str, context: str = "", **_: Any  # type: ignore[override]
                ) -> dspy.Prediction:
        self.run.stream.events.clear()
        result = super().forward(context=context, question=question)
        if result.status == "budget":
            self.run.cancel.cancel(str(result.exception), result.exception)
        return result


@dataclass(frozen=True)
class TargetKind:
    name: Target
    description: str
    student: Callable[[Run], dspy.Module]


def _agent(run: Run) -> dspy.Module:
    return AgentStudent(None, run, NodeRef.root(), max_steps=run.settings.max_agent_steps)


def _engine(run: Run) -> dspy.Module:
    return EngineStudent(run, NodeRef.root().child(), ENGINE_SIGNATURE)


TARGET_KINDS: dict[str, TargetKind] = {t.name: t for t in (
    TargetKind("agent", "the chat agent (dspy.ReAct): its step and its final answer", _agent),
    TargetKind("rlm", "the recursive engine (dspy.RLM): its code step and its extract step",
               _engine),
)}


def target_kind(name: str) -> TargetKind:
    if name not in TARGET_KINDS:
        raise ValueError(f"unknown target {name!r}; choose from {', '.join(TARGET_KINDS)}")
    return TARGET_KINDS[name]


def baseline(settings: Settings, target: str) -> tuple[str, dict[str, str]]:
    """The target's release and its predictors' instructions as this release builds them
    (no model called)."""
    run = Run.create(settings.model_copy(update={"max_usd": None}), NodeRef.root())
    student = target_kind(target).student(run)
    return release_of(student), instructions_of(student)
