"""The event stream: one discriminated union of typed events, emitted by the engine, read by all.

Kinds are added, never renamed: stored turns and web clients depend on the `type` strings.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeAlias, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from fleet_rlm.budget import Remaining, Usage
from fleet_rlm.redaction import redact
from fleet_rlm.status import FinishStatus

log = logging.getLogger(__name__)

QUERY_CHARS = 4000  # of a node's query text kept on its rlm_started event
RlmStatus = Literal["ok", "extract", "budget", "cancelled", "error"]
LmRole = Literal["root", "sub", "extract", "agent", "summary", "reflection"]
Answer: TypeAlias = dict[str, JsonValue]


class EventBase(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )

    turn_id: str
    node_id: str
    parent_id: str | None
    depth: int
    seq: int = Field(description="Strictly increasing per turn, from 1.")
    ts: float = Field(description="Unix time in seconds.")


class TurnStartedEvent(EventBase):
    type: Literal["turn_started"] = "turn_started"
    question: str
    programs: dict[str, str] = Field(
        {}, description="The promoted program version each target runs (agent, rlm); a target "
                        "left out runs its baseline.")


class AgentStepEvent(EventBase):
    type: Literal["agent_step"] = "agent_step"
    thought: str
    tool_name: str
    tool_args: dict[str, JsonValue] = {}


class ToolResultEvent(EventBase):
    type: Literal["tool_result"] = "tool_result"
    tool_name: str
    output: str
    error: bool = False


class InputInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    chars: int


class RlmStartedEvent(EventBase):
    type: Literal["rlm_started"] = "rlm_started"
    model: str
    sub_model: str
    signature: str
    inputs: dict[str, InputInfo]
    max_iterations: int
    iteration: int | None = Field(
        None, description="The parent's iteration (code cell) that started this node, if any.")
    query: str | None = Field(
        None, description="What this node was asked (a child's `query`, a delegated "
        f"`question`), cut at {QUERY_CHARS} characters; None when it had no such input.")


class RlmIterationEvent(EventBase):
    type: Literal["rlm_iteration"] = "rlm_iteration"
    iteration: int
    reasoning: str
    code: str
    phase: Literal["action", "extract"] = Field(
        "action", description="extract: the fallback that runs when max_iterations is reached."
    )


class CodeOutputEvent(EventBase):
    type: Literal["code_output"] = "code_output"
    iteration: int
    stdout: str = ""
    stderr: str = ""
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    duration_s: float
    timed_out: bool = False
    state_lost: bool = Field(False, description="The sandbox restarted; variables are gone.")


class LmCallEvent(EventBase):
    type: Literal["lm_call"] = "lm_call"
    role: LmRole
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None = Field(description="None: the model has no known price.")
    latency_s: float
    iteration: int | None = Field(None, description="The RLM iteration whose code made the call.")
    prompt_preview: str = ""
    response_preview: str = ""
    error: str | None = None
    usage_estimated: bool = Field(
        False, description="The tokens and cost are the client's estimate: the provider "
        "reported no usage (a call cancelled in flight, or a reply without usage).")
    attempt: int = Field(
        1, description="Which request of one model call this is: retries after a provider "
        "fault or a reply cut at the token limit count up from 1.")
    http_status: int | None = Field(
        None, description="The provider's HTTP status of a failed attempt, when it answered.")
    finish_reason: str | None = Field(
        None, description="Why the reply ended (stop, length, tool_calls), when reported.")
    retry_in_s: float | None = Field(
        None, description="This attempt failed (or was cut) and the call is retried after "
        "this many seconds; None when it is the call's last attempt.")
    counted: bool = Field(
        True, description="The attempt counts as a call in the budget: false only for one "
        "that never reached the provider (connection refused).")
    call_id: str | None = Field(
        None, description="The call's id for GET /turns/{turn_id}/calls/{call_id} (its request "
        "and reply); None when the turn kept no calls (capture off, or no store).")
    capture_missing: str | None = Field(
        None, description="Why this call's request and reply were not kept although the turn "
        "keeps calls (the call store full or unwritable, the call above the size cap).")


class BudgetEvent(EventBase):
    type: Literal["budget"] = "budget"
    usage: Usage
    remaining: Remaining


class RlmFinishedEvent(EventBase):
    type: Literal["rlm_finished"] = "rlm_finished"
    status: RlmStatus
    answer: Answer | None
    iterations: int
    usage: Usage


class AskUserEvent(EventBase):
    type: Literal["ask_user"] = "ask_user"
    question: str
    choices: list[str] | None = Field(None, description="Options offered as buttons, if any.")
    request_id: str
    state: dict[str, JsonValue] = Field(
        default_factory=dict, description="What the paused turn needs to resume after a restart.")


class AnswerDeltaEvent(EventBase):
    type: Literal["answer_delta"] = "answer_delta"
    text: str


class TurnFinishedEvent(EventBase):
    type: Literal["turn_finished"] = "turn_finished"
    status: FinishStatus = Field(description="The turn's status, as its row in the store holds "
                                 "it: waiting (paused on the user) or how it ended.")
    answer: str | None
    usage: Usage


class ErrorEvent(EventBase):
    type: Literal["error"] = "error"
    error_type: str
    message: str
    detail: str | None = None


class ArtifactEvent(EventBase):
    """A file that code in the session's sandbox wrote under artifacts/ of its workspace, while
    the agent step running it (its `python` tool) ran: shown under that step and with the
    answer, fetched through the workspace routes."""

    type: Literal["artifact"] = "artifact"
    path: str = Field(description="In the session's workspace, e.g. artifacts/plot.png")
    size_bytes: int
    media_type: str = Field(description="From the file's name; application/octet-stream if "
                            "unknown")


class CancelledEvent(EventBase):
    type: Literal["cancelled"] = "cancelled"
    partial_answer: Answer | None = None
    reason: str


Event = Annotated[
    TurnStartedEvent
    | AgentStepEvent
    | ToolResultEvent
    | RlmStartedEvent
    | RlmIterationEvent
    | CodeOutputEvent
    | LmCallEvent
    | BudgetEvent
    | RlmFinishedEvent
    | AskUserEvent
    | AnswerDeltaEvent
    | TurnFinishedEvent
    | ErrorEvent
    | CancelledEvent
    | ArtifactEvent,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[EventBase]] = {
    cls.model_fields["type"].default: cls for cls in get_args(get_args(Event)[0])
}

_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: dict[str, Any] | str | bytes) -> Event:
    if isinstance(data, str | bytes):
        return _adapter.validate_json(data)
    return _adapter.validate_python(data)


def event_json_schema() -> dict[str, Any]:
    """The schema of events as sent on the wire; the web app's TypeScript types come from it."""
    return _adapter.json_schema(mode="serialization")


@dataclass(frozen=True)
class NodeRef:
    """Where an event sits in the tree of agent and RLM nodes."""

    node_id: str
    parent_id: str | None
    depth: int

    @classmethod
    def root(cls) -> NodeRef:
        return cls(_new_id(), None, 0)

    def child(self) -> NodeRef:
        return NodeRef(_new_id(), self.node_id, self.depth + 1)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


Sink = Callable[[Event], object]
# Texts that may carry a provider's or a tool's error, which may echo a key: redacted as the logs
# are before any sink (store, socket, trace) sees them.
ERROR_TEXTS = {"error": ("message", "detail"),
               "lm_call": ("error", "prompt_preview", "response_preview"),
               "code_output": ("stderr", "error_message", "traceback"), "cancelled": ("reason",)}


class EventStream:
    """Thread-safe emitter for one turn. Sinks run in the emitting thread, in seq order, one at a
    time: keep them quick (hand off to a queue) and never emit from inside one."""

    def __init__(self, turn_id: str, sinks: Iterable[Sink] = (), start_seq: int = 0) -> None:
        """`start_seq`: the last seq already recorded for this turn (a resumed turn goes on)."""
        self.turn_id = turn_id
        self.events: list[Event] = []
        self._seq = start_seq
        self._sinks: tuple[Sink, ...] = tuple(sinks)
        self._emit_lock = threading.Lock()
        self._sinks_lock = threading.Lock()  # separate, so a sink may unsubscribe itself

    def emit(self, kind: str | type[EventBase], node: NodeRef, **fields: Any) -> Event:
        cls = EVENT_TYPES[kind] if isinstance(kind, str) else kind
        texts = ERROR_TEXTS.get(cls.model_fields["type"].default, ())
        if cls is ToolResultEvent and fields.get("error"):
            texts = ("output",)
        for name in texts:
            if isinstance(fields.get(name), str) and fields[name]:
                fields[name] = redact(fields[name])
        # Validate outside the lock; only numbering and delivery are serialised.
        draft = cls(
            turn_id=self.turn_id,
            node_id=node.node_id,
            parent_id=node.parent_id,
            depth=node.depth,
            seq=0,
            ts=0.0,
            **fields,
        )
        with self._emit_lock:
            self._seq += 1
            # `cls` is one of the Event union's members
            event = cast(Event, draft.model_copy(update={"seq": self._seq, "ts": time.time()}))
            self.events.append(event)
            for sink in self._sinks:
                try:
                    sink(event)
                except Exception:
                    log.exception("event sink %r failed on %s #%d", sink, event.type, event.seq)
        return event

    def subscribe(self, sink: Sink) -> Callable[[], None]:
        with self._sinks_lock:
            self._sinks = (*self._sinks, sink)

        def unsubscribe() -> None:
            with self._sinks_lock:
                self._sinks = tuple(s for s in self._sinks if s is not sink)

        return unsubscribe
