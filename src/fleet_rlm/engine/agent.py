"""FleetAgent: the chat agent on dspy.ReAct. Answers directly when it can; hands long-context work
to the recursive engine.

The agent reads and writes session data (documents, core memory, its python sandbox) only through
a `SessionContext`, which the caller provides: the store-backed one in the server and CLI, or
`InMemorySession` in scripts and notebooks. The engine never imports the store.
"""

from __future__ import annotations

import functools
import json
import mimetypes
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import dspy
import regex
from dspy import AdapterParseError, ChatAdapter, ContextWindowExceededError
from dspy.streaming import StreamListener, StreamResponse

from ..budget import BudgetExceeded, Cancelled
from ..config import Settings
from ..events import NodeRef
from ..lm import call_site
from ..sandbox import Sandbox, create_sandbox
from .programs import load
from .rlm import NodeRLM, Run, _as_text
from .steps import (
    STEP_TEXT_FIELDS,
    UnreadableReply,
    lenient_parse,
    predict,
    tool_call_problem,
    tool_name,
)

MEMORY_LABELS = ("persona", "human", "scratchpad")
READ_LIMIT = 20_000
SEARCH_MATCHES = 50
SEARCH_SECONDS = 2.0
OBSERVATION_CHARS = 8_000

POLICY = """You are fleet-rlm's assistant. You answer the user's message using the session's
documents, your core memory and your tools.

How to work with documents:
- A document shorter than {threshold} characters: read it directly with read_document.
- A document longer than that, or a question that spans many documents or needs counting,
  aggregation or checking every part of a text: delegate with rlm_query(question, documents).
  rlm_query runs a recursive language model that reads the full text with code and sub-models.
- search_documents finds exact passages by regular expression across all documents.
- Use python for calculations and files; its variables persist across turns of this session.
- Keep durable facts about the user in core memory (human), notes to self in scratchpad.
- If the request is ambiguous in a way that changes the answer, ask_user and wait.
Call finish when you have what the answer needs."""


@dataclass(frozen=True)
class DocumentInfo:
    name: str
    kind: str
    chars: int


class SessionContext(Protocol):
    """What the agent may read and change in its session."""

    def documents(self) -> list[DocumentInfo]: ...
    def document_text(self, name: str) -> str: ...
    def memory(self) -> dict[str, str]: ...
    def set_memory(self, label: str, value: str) -> None: ...
    def sandbox(self) -> Sandbox: ...


@dataclass
class InMemorySession:
    """A SessionContext held in memory, for scripts, notebooks and tests."""

    settings: Settings = field(default_factory=Settings)
    texts: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    blocks: dict[str, str] = field(default_factory=dict)
    workspace: Path | None = None
    _sandbox: Sandbox | None = None

    def add_document(self, name: str, text: str, kind: str = "text") -> None:
        self.texts[name], self.kinds[name] = text, kind

    def documents(self) -> list[DocumentInfo]:
        return [DocumentInfo(n, self.kinds.get(n, "text"), len(t)) for n, t in self.texts.items()]

    def document_text(self, name: str) -> str:
        if name not in self.texts:
            raise KeyError(f"no document named {name!r}; have: {sorted(self.texts)}")
        return self.texts[name]

    def memory(self) -> dict[str, str]:
        return {label: self.blocks.get(label, "") for label in MEMORY_LABELS}

    def set_memory(self, label: str, value: str) -> None:
        self.blocks[label] = value

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            if self.workspace is None:
                # A private parent (0700) and a work dir bubblewrap can enter when it runs
                # privileged and the code as a uid of its own.
                self.workspace = Path(tempfile.mkdtemp(prefix="fleet-ws-")) / "work"
                self.workspace.mkdir()
            self._sandbox = create_sandbox(self.settings, work_dir=self.workspace)
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None


def agent_signature(threshold: int) -> dspy.Signature:
    return dspy.Signature(
        "message: str, conversation: str, memory: str, documents: str -> answer: str",
        POLICY.format(threshold=threshold))


MAX_CHOICES = 8  # options an ask_user question shows as buttons
# dspy.streamify runs each stream's program from an event loop of its own (a thread per stream)
# through one anyio limiter for the whole process (dspy.utils.asyncify). A stream that had to
# wait there would be woken from another loop's thread, which never wakes its own loop: with more
# answers streaming at once than the limit (8 by default), they all hang. So none ever waits.
STREAMS_AT_ONCE = 1_000_000
TOOL_NAMES = ("rlm_query", "list_documents", "read_document", "search_documents",
              "memory_read", "memory_update", "ask_user", "python")


@dataclass
class _Prototype:
    """What dspy.ReAct builds from the agent's signature and tools: the same for every agent
    with the same settings, and about 18 ms of CPU per turn to build (tool schemas, signature
    classes). The first agent builds it; later ones copy it and bind the tools to themselves."""

    signature: type[dspy.Signature]
    tools: dict[str, dspy.Tool]  # the agent's own tools unbound (func=None), and `finish`
    react: dspy.Predict
    extract: dspy.Module

    @classmethod
    def of(cls, agent: FleetAgent) -> _Prototype:
        tools = {name: tool.model_copy(update={"func": None}) if name in TOOL_NAMES else tool
                 for name, tool in agent.tools.items()}
        return cls(agent.signature, tools, agent.react.deepcopy(), agent.extract.deepcopy())

    def build(self, agent: FleetAgent, max_steps: int) -> None:
        dspy.Module.__init__(agent)  # what dspy.ReAct.__init__ does first
        agent.signature, agent.max_iters = self.signature, max_steps
        agent.tools = {name: tool.model_copy(update={"func": getattr(agent, name)})
                       if name in TOOL_NAMES else tool for name, tool in self.tools.items()}
        agent.react, agent.extract = self.react.deepcopy(), self.extract.deepcopy()


_PROTOTYPES: dict[tuple[int, int], _Prototype] = {}


@functools.lru_cache(maxsize=512)
def _trajectory_signature(keys: tuple[str, ...]) -> type[dspy.Signature]:
    return dspy.Signature(f"{', '.join(keys)} -> x")


class FleetAgent(dspy.ReAct):
    """The chat agent. `forward` returns a Prediction whose `status` is "done", or "waiting" with
    `question` and a JSON-safe `pending` state that `forward(resume=..., reply=...)` continues."""

    def __init__(self, session: SessionContext | None = None, run: Run | None = None,
                 node: NodeRef | None = None, max_steps: int | None = None,
                 settings: Settings | None = None) -> None:
        """Standalone (a script, a notebook): `FleetAgent(settings=...)` with an in-memory
        session and its own budget; `agent.run.stream.events` holds what it did."""
        settings = run.settings if run else settings or Settings()
        self.node = node or NodeRef.root()
        self.session = session or InMemorySession(settings)
        self.run = run or Run.create(settings, self.node)
        max_steps = max_steps or settings.max_agent_steps
        key = (settings.delegate_chars, max_steps)
        prototype = _PROTOTYPES.get(key)
        if prototype is None:
            tools = [getattr(self, name) for name in TOOL_NAMES]
            super().__init__(agent_signature(key[0]), tools=tools, max_iters=max_steps)
            _PROTOTYPES[key] = _Prototype.of(self)
        else:
            prototype.build(self, max_steps)
        load(self, self.run.programs.get("agent"))

    # -- tools -------------------------------------------------------------------------------
    def rlm_query(self, question: str, documents: list[str] | None = None) -> str:
        """Answer a question over long documents with the recursive language model. `documents`
        names the documents to read (all when omitted)."""
        if self.node.depth + 1 > self.run.max_depth:
            return (f"rlm_query is unavailable: the recursive engine would run at depth "
                    f"{self.node.depth + 1}, past this turn's max depth {self.run.max_depth}. "
                    "Read the documents with read_document and search_documents instead.")
        names = documents or [d.name for d in self.session.documents()]
        texts = {name: self.session.document_text(name) for name in names}
        context: Any = next(iter(texts.values())) if len(texts) == 1 else texts
        node = NodeRLM(self.run, self.node.child(), "context, question -> answer")
        result = node(context=context, question=question)
        if result.status in ("budget", "cancelled"):
            raise result.exception
        if result.status == "error":
            return f"The recursive run failed: {result.error}"
        return _as_text(result.answer)

    def list_documents(self) -> str:
        """List the session's documents with their kind and length in characters."""
        docs = self.session.documents()
        return "\n".join(f"{d.name} ({d.kind}, {d.chars} chars)" for d in docs) or "(none)"

    def read_document(self, name: str, start: int = 0, length: int = 4000) -> str:
        """Read `length` characters of a document from offset `start` (at most 20000)."""
        text = self.session.document_text(name)
        start, length = max(0, int(start)), max(1, min(int(length), READ_LIMIT))
        piece = text[start:start + length]
        return f"[{name}: chars {start}-{start + len(piece)} of {len(text)}]\n{piece}"

    def search_documents(self, pattern: str) -> str:
        """Search all documents with a regular expression; returns up to 50 matches with context."""
        try:
            compiled = regex.compile(pattern, regex.MULTILINE)
        except regex.error as exc:
            return f"Invalid pattern: {exc}"
        hits: list[str] = []
        for doc in self.session.documents():
            text = self.session.document_text(doc.name)
            try:
                for match in compiled.finditer(text, timeout=SEARCH_SECONDS):
                    lo, hi = max(0, match.start() - 80), min(len(text), match.end() + 80)
                    hits.append(f"{doc.name}@{match.start()}: ...{text[lo:hi]}...")
                    if len(hits) >= SEARCH_MATCHES:
                        return "\n".join(hits) + "\n(stopped at 50 matches)"
            except TimeoutError:
                hits.append(f"{doc.name}: search stopped after {SEARCH_SECONDS:g} s")
        return "\n".join(hits) or "No matches."

    def memory_read(self) -> str:
        """Read the core memory blocks (persona, human, scratchpad)."""
        return _memory_text(self.session.memory())

    def memory_update(self, label: str, value: str) -> str:
        """Replace a core memory block: label is persona, human or scratchpad."""
        if label not in MEMORY_LABELS:
            return f"Unknown block {label!r}; use one of {', '.join(MEMORY_LABELS)}."
        self.session.set_memory(label, value)
        return f"Updated {label}."

    def ask_user(self, question: str, choices: list[str] | None = None) -> str:
        """Ask the user a question and wait for the reply; `choices`, when the answer is one
        of a few options, are offered as buttons (the user may still write another reply)."""
        raise RuntimeError("ask_user pauses the turn; the agent loop handles it")

    def python(self, code: str) -> str:
        """Run Python in this session's persistent sandbox (working directory: the workspace)."""
        sandbox = self.session.sandbox()
        self.run.cancel.raise_if_cancelled()
        # Cancel interrupts the code instead of waiting for it; the sandbox and its variables stay.
        unregister = self.run.cancel.on_cancel(sandbox.interrupt)
        settings, left = self.run.settings, self.run.budget.remaining()["wall_s"]
        # Code that ignores the interrupt at the wall limit is killed a grace period later.
        timeout = (settings.exec_timeout_s if left is None
                   else min(settings.exec_timeout_s, left + settings.exec_kill_grace_s))
        try:
            result = sandbox.execute(code, timeout=timeout)
        finally:
            unregister()
        for written in result.files:
            media_type = mimetypes.guess_type(written["path"])[0] or "application/octet-stream"
            self._emit("artifact", path=written["path"], size_bytes=written["size"],
                       media_type=media_type)
        self.run.cancel.raise_if_cancelled()
        out = result.stdout
        if not result.ok:
            out += result.traceback or f"{result.error_type}: {result.error_message}"
        return out or "(no output)"

    # -- the loop ----------------------------------------------------------------------------
    def forward(self, message: str, conversation: str = "", resume: dict | None = None,
                reply: str | None = None,
                stream_answer: Callable[[str], None] | None = None) -> dspy.Prediction:
        inputs = {"message": message, "conversation": conversation or "(new conversation)",
                  "memory": _memory_text(self.session.memory()),
                  "documents": self.list_documents()}
        trajectory: dict[str, Any] = dict(resume["trajectory"]) if resume else {}
        step = 0
        if resume:
            step = resume["step"]
            trajectory[f"observation_{step}"] = f"The user replied: {reply}"
            self._emit("tool_result", tool_name="ask_user", output=str(reply), error=False)
            step += 1
        adapter = ChatAdapter(use_json_adapter_fallback=False)
        with dspy.context(lm=self.run.root_lm, adapter=adapter):
            try:
                for idx in range(step, self.max_iters):
                    self.run.cancel.raise_if_cancelled()
                    try:
                        with call_site("agent", self.node, idx + 1):
                            pred = predict(
                                self.run, self.node, f"agent step {idx + 1}",
                                lambda: self._call_with_potential_trajectory_truncation(
                                    self.react, trajectory, **inputs),
                                text_fields=STEP_TEXT_FIELDS)
                    except (ContextWindowExceededError, ValueError) as err:
                        self._emit("error", error_type=type(err).__name__,
                                   message=str(err)[:2000],
                                   detail="the agent's step failed; answering from what it has")
                        break
                    name, args = tool_name(pred.next_tool_name), pred.next_tool_args
                    trajectory[f"thought_{idx}"] = pred.next_thought
                    trajectory[f"tool_name_{idx}"] = name
                    trajectory[f"tool_args_{idx}"] = args
                    self._emit("agent_step", thought=pred.next_thought, tool_name=name,
                               tool_args=_json_safe(args))
                    if name == "ask_user":
                        question = str(args.get("question", "")) or "Could you clarify?"
                        # the resumed run goes on as this node: one turn, one agent root
                        state = {"trajectory": _json_safe(trajectory), "step": idx,
                                 "node_id": self.node.node_id}
                        self._emit("ask_user", question=question, choices=_choices(args),
                                   request_id=uuid.uuid4().hex[:12], state=state)
                        return dspy.Prediction(status="waiting", question=question,
                                               pending=state, answer=None,
                                               trajectory=trajectory)
                    observation, failed = self._call_tool(name, args)
                    trajectory[f"observation_{idx}"] = observation
                    self._emit("tool_result", tool_name=name,
                               output=observation[:OBSERVATION_CHARS], error=failed)
                    if name == "finish":
                        break
                with call_site("agent", self.node, None):
                    extract = predict(
                        self.run, self.node, "the final answer",
                        lambda: self._extract(trajectory, inputs, stream_answer),
                        first=(None if stream_answer is None else
                               lambda: self._stream_extract(trajectory, inputs, stream_answer)))
            except UnreadableReply as exc:
                return dspy.Prediction(status="error", error=str(exc), answer=None,
                                       trajectory=trajectory, pending=None, question=None)
        return dspy.Prediction(status="done", answer=extract.answer, trajectory=trajectory,
                               pending=None, question=None)

    def _extract(self, trajectory: dict, inputs: dict,
                 on_text: Callable[[str], None] | None) -> dspy.Prediction:
        extract = self._call_with_potential_trajectory_truncation(self.extract, trajectory,
                                                                  **inputs)
        if on_text is not None and extract.answer:
            on_text(extract.answer)  # a retried answer is not streamed: it arrives whole
        return extract

    def _format_trajectory(self, trajectory: dict[str, Any]) -> str:
        # As dspy.ReAct's, with the signature of the trajectory's keys made once per set of
        # keys instead of at every step (a new pydantic model each time).
        adapter = dspy.settings.adapter or dspy.ChatAdapter()
        return adapter.format_user_message_content(_trajectory_signature(tuple(trajectory)),
                                                   trajectory)

    def _stream_extract(self, trajectory: dict, inputs: dict,
                        on_text: Callable[[str], None]) -> dspy.Prediction:
        """The final answer, handed to `on_text` chunk by chunk as the model writes it."""
        listener = StreamListener(signature_field_name="answer")
        program = dspy.streamify(self.extract, stream_listeners=[listener], async_streaming=False)
        final, streamed = None, False
        try:
            with dspy.context(async_max_workers=STREAMS_AT_ONCE):
                for item in program(**inputs,
                                    trajectory=self._format_trajectory(trajectory)):
                    if isinstance(item, StreamResponse) and item.chunk:
                        streamed = True
                        on_text(item.chunk)
                    elif isinstance(item, dspy.Prediction):
                        final = item
        except AdapterParseError as exc:
            fields = None if streamed else lenient_parse(exc.signature, exc.lm_response or "")
            if fields is None:
                raise
            final = dspy.Prediction(**fields)
        if final is None:
            raise RuntimeError("the answer stream ended without an answer")
        if not streamed and final.answer:
            on_text(final.answer)  # a provider that does not stream still answers, once
        return final

    def _call_tool(self, name: str, args: Any) -> tuple[str, bool]:
        if name == "finish":
            args = {}  # what the model passes along with it is for the answer, read next
        problem = tool_call_problem(self.tools, name, args)
        if problem:
            return problem, True
        try:
            return _as_text(self.tools[name](**args)), False
        except (BudgetExceeded, Cancelled):
            raise
        except Exception as err:  # noqa: BLE001 - the model sees the error and may recover
            return f"Execution error in {name}: {type(err).__name__}: {err}", True

    def _emit(self, kind: str, **fields: Any) -> None:
        self.run.stream.emit(kind, self.node, **fields)


def _memory_text(blocks: dict[str, str]) -> str:
    return "\n".join(f"<{label}>\n{blocks.get(label, '')}\n</{label}>" for label in MEMORY_LABELS)


def _choices(args: Any) -> list[str] | None:
    """The options an ask_user call offers, when it offers a few plain ones."""
    choices = args.get("choices") if isinstance(args, dict) else None
    if not isinstance(choices, list):
        return None
    kept = list(dict.fromkeys(str(c).strip()[:200] for c in choices
                              if isinstance(c, str | int | float) and str(c).strip()))
    return kept[:MAX_CHOICES] or None


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


