"""One chat turn: the agent, its events, the answer streamed, cancel, and ask_user pause/resume.

A turn that asks the user ends in status "waiting" with the agent's state in its `ask_user`
event; answering runs the same turn again from that state (`resume=`, `reply=`), in this process
or after a restart. The caller records events (the store is written by event consumers) and keeps
one turn at a time per session.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy import AdapterParseError, LMError

from ..budget import Budget, BudgetExceeded, Cancelled, CancelToken, UnpricedModel, Usage
from ..capture import CallCapture
from ..config import Settings
from ..events import EventStream, NodeRef
from ..lm import call_site
from .agent import FleetAgent, SessionContext
from .programs import Program
from .rlm import Run

SUMMARY_PROMPT = """Summarise this conversation between a user and an assistant for the
assistant's own memory. Keep names, numbers, decisions, open questions and what each document was
used for. At most 200 words.

{transcript}"""


@dataclass
class TurnResult:
    status: str  # ok | waiting | budget | cancelled | error
    answer: str | None = None
    question: str | None = None
    pending: dict | None = None
    error: str | None = None
    usage: Usage | None = None
    summary: str | None = None  # a fresh summary of older turns, for the caller to keep


@dataclass
class Exchange:
    user: str
    assistant: str


@dataclass
class Turn:
    """Everything one turn needs; `cancel` may be triggered from any thread."""

    settings: Settings
    session: SessionContext
    stream: EventStream
    message: str
    history: list[Exchange] = field(default_factory=list)
    summary: str | None = None  # of the turns before `history`, kept by the caller
    cancel: CancelToken = field(default_factory=CancelToken)
    budget: Budget | None = None
    capture: CallCapture | None = None  # where every model call's request and reply is kept
    programs: Mapping[str, Program] = field(default_factory=dict)  # promoted, by target

    def run(self, resume: dict | None = None, reply: str | None = None) -> TurnResult:
        budget = self.budget or Budget.from_settings(self.settings, cancel=self.cancel)
        if resume and resume.get("usage"):
            budget.carry(Usage.model_validate(resume["usage"]))
        # An answered question goes on as the agent node that asked it: one turn, one root.
        node = (NodeRef(resume["node_id"], None, 0) if resume and resume.get("node_id")
                else NodeRef.root())
        emit: Callable[..., Any] = lambda kind, **f: self.stream.emit(kind, node, **f)  # noqa: E731
        if resume is None:
            emit("turn_started", question=self.message,
                 programs={t: p.version_id for t, p in self.programs.items()})
        result = TurnResult(status="ok")
        streamed: list[str] = []

        def stream_answer(text: str) -> None:
            streamed.append(text)
            emit("answer_delta", text=text)

        try:
            run = Run.create(self.settings, node, budget, self.stream, capture=self.capture,
                             programs=self.programs)
            run.retries.used = int((resume or {}).get("retries", 0))  # per turn, across a pause
            conversation, result.summary = self._conversation(run.sub_lm, node)
            agent = FleetAgent(self.session, run, node, max_steps=self.settings.max_agent_steps)
            prediction = agent(message=self.message, conversation=conversation, resume=resume,
                               reply=reply, stream_answer=stream_answer)
            if prediction.status == "waiting":
                result.status, result.question = "waiting", prediction.question
                result.pending = {**prediction.pending, "retries": run.retries.used}
            elif prediction.status == "error":
                result.status, result.error = "error", f"UnreadableReply: {prediction.error}"
                emit("error", error_type="UnreadableReply", message=prediction.error[:2000],
                     detail="the turn ended: the model's replies could not be read")
            else:
                result.answer = prediction.answer
        except Cancelled as exc:
            result.status, result.error = "cancelled", str(exc)
            emit("cancelled", partial_answer=None, reason=exc.reason)
        except BudgetExceeded as exc:
            result.status, result.error = "budget", str(exc)
            result.answer = partial_answer("".join(streamed), exc.partial)
            emit("error", error_type="BudgetExceeded", message=str(exc), detail=None)
        except (LMError, AdapterParseError, UnpricedModel) as exc:
            result.status, result.error = "error", f"{type(exc).__name__}: {exc}"
            emit("error", error_type=type(exc).__name__, message=str(exc)[:2000], detail=None)
        result.usage = budget.snapshot()
        if result.status == "waiting":  # the resumed part of the turn goes on from this spend
            spent = result.usage.model_dump(mode="json")
            result.pending = {**(result.pending or {}), "usage": spent}
        emit("turn_finished", status=result.status, answer=result.answer, usage=result.usage)
        return result

    def _conversation(self, lm: dspy.BaseLM, node: NodeRef) -> tuple[str, str | None]:
        """The history the agent sees: recent exchanges verbatim, older ones as a summary."""
        lines = [f"User: {x.user}\nAssistant: {x.assistant}" for x in self.history]
        kept: list[str] = []
        budget = self.settings.history_max_tokens
        for line in reversed(lines):
            cost = math.ceil(len(line) / 4)
            if cost > budget:
                break
            kept.insert(0, line)
            budget -= cost
        older = lines[: len(lines) - len(kept)]
        summary = self.summary
        fresh = None
        if older:
            transcript = ((f"Earlier summary: {summary}\n\n" if summary else "")
                          + "\n\n".join(older))
            with call_site("summary", node):
                fresh = summary = _text(lm(SUMMARY_PROMPT.format(transcript=transcript)))
        parts = ([f"Summary of earlier conversation: {summary}"] if summary else []) + kept
        return "\n\n".join(parts), fresh


def partial_answer(streamed: str, last_output: str | None) -> str | None:
    """A budget-stopped turn's answer: what the agent had written of its answer, else the last
    output of its recursive run, fenced (None when it had produced neither)."""
    if streamed.strip():
        return streamed
    if last_output and last_output.strip():
        fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", last_output)), default=0) + 1)
        return f"The recursive run's last output:\n\n{fence}text\n{last_output.rstrip()}\n{fence}"
    return None


def _text(response: Any) -> str:
    if isinstance(response, list) and response:
        first = response[0]
        return str(first.get("text", "") if isinstance(first, dict) else first)
    return str(response)
