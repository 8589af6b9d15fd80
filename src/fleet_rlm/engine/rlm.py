"""RecursiveRLM: dspy.RLM on our sandboxes, with child RLMs, one shared budget and typed events.

Every node of the tree is a `NodeRLM` (a dspy.RLM subclass) with its own sandbox. The nodes of
one run share a `Run`: settings, the budget (by reference), the event stream, the LMs and the
cancel token.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy import (
    AdapterParseError,
    ChatAdapter,
    CodeInterpreterError,
    FinalOutput,
    LMError,
    Prediction,
)

from ..budget import Budget, BudgetExceeded, Cancelled, CancelToken, Remaining
from ..capture import CallCapture
from ..config import Settings
from ..events import QUERY_CHARS, EventStream, NodeRef
from ..lm import BudgetedLM, call_site
from ..sandbox import ExecResult, SandboxInterpreter, create_sandbox
from ..sandbox.shared import SharedText
from .dspy_compat import (
    LLMCallBudget,
    REPLHistory,
    REPLVariable,
    format_error_for_lm,
)
from .facade import install_facade
from .programs import Program, load
from .steps import RetryAllowance, UnreadableReply, cell_code, predict

log = logging.getLogger(__name__)

CHILD_SIGNATURE = "context, query -> answer"
# Reads the version of the engine's instructions to run, from the settings (None: the baseline).
ProgramSource = Callable[[Settings], Program | None]
BATCH_WORKERS = 16

@dataclass
class Run:
    """What every node of one recursive run shares. The budget is shared by reference."""

    settings: Settings
    budget: Budget
    stream: EventStream
    root_lm: dspy.BaseLM
    sub_lm: dspy.BaseLM
    max_iterations: int
    max_depth: int
    batch_workers: int = BATCH_WORKERS
    interpreter_factory: Callable[[], SandboxInterpreter] | None = None
    programs: Mapping[str, Program] = field(default_factory=dict)  # promoted, by target
    retries: RetryAllowance = field(init=False)  # the run's retries of unreadable replies

    def __post_init__(self) -> None:
        self.retries = RetryAllowance(self.settings.max_turn_retries)

    @property
    def cancel(self) -> CancelToken:
        return self.budget.cancel

    @classmethod
    def create(cls, settings: Settings, node: NodeRef, budget: Budget | None = None,
               stream: EventStream | None = None, lm: dspy.BaseLM | None = None,
               sub_lm: dspy.BaseLM | None = None, capture: CallCapture | None = None,
               **extra: Any) -> Run:
        """A run on `settings` (a fresh budget and stream unless given). `lm`/`sub_lm` are the
        user's dspy LMs, metered here; by default both come from the settings. Raises
        UnpricedModel when a model cannot be metered against the USD limit.

        The depth limit, the tighter of the settings' and the budget's, is the deepest node the
        tree may hold, counting from its top (a chat turn's agent is depth 0)."""
        from ..lm import build_lms

        budget = budget or Budget.from_settings(settings)
        stream = stream or EventStream(turn_id=NodeRef.root().node_id)
        default_root, default_sub = build_lms(settings, budget, stream, node, capture)
        cap = settings.call_max_tokens
        root_lm = budgeted(lm, budget, stream, "root", cap, default_root) if lm else default_root
        sub_source = sub_lm or lm
        sub = (budgeted(sub_source, budget, stream, "sub", cap, default_sub) if sub_source
               else default_sub)
        for model in dict.fromkeys([root_lm.model, sub.model]):
            budget.require_price(model)
        limits = [settings.max_depth, budget.limits.max_depth]
        depth = min(d for d in limits if d is not None)
        return cls(settings, budget, stream, root_lm, sub, max_iterations=settings.max_iterations,
                   max_depth=depth, **extra)


    def remaining(self, depth: int) -> Remaining:
        """What is left of the budget for a node at `depth`, with the run's depth limit."""
        return Remaining(**{**self.budget.remaining(depth),
                            "depth": max(self.max_depth - depth, 0)})


class NodeRLM(dspy.RLM):
    """One node of the recursive tree. Call it like dspy.RLM; it never raises for a run outcome
    (budget, cancel, bad replies): the Prediction carries `status` and the partial trajectory."""

    def __init__(self, run: Run, node: NodeRef, signature: Any,
                 spawned_at: int | None = None) -> None:
        self.run, self.node, self.spawned_at = run, node, spawned_at
        self.iteration = 0
        max_calls = run.budget.limits.max_calls or 10**9
        super().__init__(signature, max_iters=run.max_iterations, max_llm_calls=max_calls,
                         max_output_chars=run.settings.max_output_chars, sub_lm=run.sub_lm,
                         tools=self._recursion_tools(), interpreter_factory=self._new_interpreter)
        load(self, run.programs.get("rlm"))

    # -- sandbox -----------------------------------------------------------------------------
    def _new_interpreter(self) -> SandboxInterpreter:
        if self.run.interpreter_factory is not None:
            interpreter = self.run.interpreter_factory()
        else:
            labels = {"turn": self.run.stream.turn_id, "node": self.node.node_id}
            interpreter = SandboxInterpreter(create_sandbox(self.run.settings, labels=labels),
                                             timeout=self.run.settings.exec_timeout_s)
        interpreter.on_result = self._report_output
        # A child's context that is this node's own input, or a slice of it, arrives as a
        # reference to the file it was read from, and goes to the child's sandbox as that file.
        interpreter.shared_tools = frozenset({"rlm_query", "rlm_query_batched"})
        # Tracebacks name the cell as the tree numbers it (<cell-3>: iteration 3).
        interpreter.cell_name = lambda: str(self.iteration) if self.iteration else "setup"
        # A cancel closes the sandbox at once, even mid-cell. No cell runs after it: a closed
        # local or gVisor sandbox refuses to start again, but a closed Daytona sandbox would
        # provision a new one on its next cell.
        interpreter.before_execute = self.run.cancel.raise_if_cancelled
        interpreter.on_shutdown = self.run.cancel.on_cancel(interpreter.sandbox.close)
        return interpreter

    # dspy.RLM reads the interpreter's instructions off the factory
    _new_interpreter.execution_instructions = (  # type: ignore[attr-defined]
        SandboxInterpreter.execution_instructions)

    def _report_output(self, code: str, result: ExecResult) -> None:
        if self.iteration == 0:  # dspy's own set-up code, not the model's
            return
        self._emit("code_output", iteration=self.iteration, stdout=result.stdout,
                   stderr=result.stderr, error_type=result.error_type,
                   error_message=result.error_message, traceback=result.traceback,
                   duration_s=round(result.duration_s, 6), timed_out=result.timed_out,
                   state_lost=result.state_lost)

    def _emit(self, kind: str, **fields: Any) -> None:
        self.run.stream.emit(kind, self.node, **fields)

    # -- REPL functions ----------------------------------------------------------------------
    def _make_llm_tools(self, budget: Any = None, max_workers: int = 8) -> dict[str, Callable]:
        return {"llm_query": self.llm_query, "llm_query_batched": self.llm_query_batched}

    def llm_query(self, prompt: str) -> str:
        """Query the sub-LLM with a prompt string."""
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("llm_query needs a non-empty prompt string")
        with call_site("sub", self.node, self.iteration):
            return _text(self.run.sub_lm(prompt))

    def llm_query_batched(self, prompts: list[str]) -> list[str]:
        """Query several prompts concurrently; a failed item becomes an "[ERROR] ..." string."""
        if not isinstance(prompts, list):
            raise TypeError("llm_query_batched needs a list of prompt strings")
        return self._batched(self.llm_query, [(p,) for p in prompts])

    def _batched(self, fn: Callable[..., str], calls: list[tuple]) -> list[str]:
        def one(args: tuple) -> str:
            try:
                return fn(*args)
            except Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - one failed item must not lose the rest
                return f"[ERROR] {type(exc).__name__}: {exc}"

        context = contextvars.copy_context()  # the caller's dspy settings reach every item

        def in_context(args: tuple) -> str:
            return context.copy().run(one, args)

        with ThreadPoolExecutor(min(self.run.batch_workers, max(len(calls), 1))) as pool:
            return list(pool.map(in_context, calls))

    def _recursion_tools(self) -> list[dspy.Tool]:
        def rlm_query(prompt: str, context: Any = None) -> str:
            """Run a child RLM in its own sandbox on `context` to answer `prompt`."""
            return self.rlm_query(prompt, context)

        def rlm_query_batched(prompts: list[str], contexts: list[Any] | None = None) -> list[str]:
            """Run several child RLMs in parallel; answers in order."""
            return self.rlm_query_batched(prompts, contexts)

        def budget() -> dict:
            """What remains of the shared budget."""
            return dict(self.run.remaining(self.node.depth))

        return [dspy.Tool(rlm_query), dspy.Tool(rlm_query_batched), dspy.Tool(budget)]

    def rlm_query(self, prompt: str, context: Any = None) -> str:
        if not isinstance(prompt, str) or not prompt:
            raise ValueError("rlm_query needs a non-empty prompt string")
        if self.node.depth + 1 > self.run.max_depth:
            self._emit("error", error_type="MaxDepth",
                       message=f"rlm_query at depth {self.node.depth + 1} exceeds max depth "
                               f"{self.run.max_depth}: answered by llm_query instead",
                       detail=None)
            text = prompt if context is None else f"{prompt}\n\nContext:\n{_as_text(context)}"
            return self.llm_query(text)
        self.run.budget.ensure_open()  # no child (and no sandbox) on a spent budget
        child = NodeRLM(self.run, self.node.child(), CHILD_SIGNATURE, spawned_at=self.iteration)
        result = child(context="" if context is None else context, query=prompt)
        if result.status in ("budget", "cancelled"):
            raise result.exception
        if result.status == "error":
            raise RuntimeError(f"child RLM failed: {result.error}")
        return _as_text(result.answer)

    def rlm_query_batched(self, prompts: list[str], contexts: list[Any] | None = None) -> list[str]:
        if contexts is not None and len(contexts) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(contexts)} contexts")
        contexts = contexts if contexts is not None else [None] * len(prompts)
        return self._batched(self.rlm_query, list(zip(prompts, contexts, strict=True)))

    # -- the loop ----------------------------------------------------------------------------
    def _execute_iteration(self, repl, variables, history, iteration, input_args,
                           output_field_names, interpreter_factory, sub_agent_rules):
        self.run.cancel.raise_if_cancelled()
        self.iteration = iteration + 1
        signature = self._iteration_signature
        with call_site("root", self.node, self.iteration):
            action = predict(self.run, self.node, f"iteration {self.iteration}",
                             lambda: self.generate_action(
                                 signature=signature,
                                 variables_info=[v.format() for v in variables],
                                 repl_history=history,
                                 iteration=f"{iteration + 1}/{self.max_iters}"))
        try:
            code, notes = cell_code(action.code)
        except SyntaxError as exc:
            code, result = action.code, f"[Error] {format_error_for_lm(exc)}"
            self._emit("rlm_iteration", iteration=self.iteration, reasoning=action.reasoning,
                       code=code)
        else:
            self._emit("rlm_iteration", iteration=self.iteration, reasoning=action.reasoning,
                       code=code)
            result = self._execute_code(repl, code, input_args)
            if notes and not isinstance(result, FinalOutput):
                result = _with_notes(result, notes)
        self.run.cancel.raise_if_cancelled()
        self._emit_budget()
        return self._process_execution_result(action, code, result, history, output_field_names)

    def _extract_fallback(self, variables: list[REPLVariable], history: REPLHistory,
                          output_field_names: list[str]) -> Prediction:
        self._emit("rlm_iteration", iteration=self.iteration + 1, phase="extract",
                   reasoning="Max iterations reached: extracting the answer from the trajectory.",
                   code="")
        with call_site("extract", self.node, self.iteration + 1):
            return predict(self.run, self.node, "the extract step",
                           lambda: super(NodeRLM, self)._extract_fallback(
                               variables, history, output_field_names))

    def _emit_budget(self) -> None:
        self._emit("budget", usage=self.run.budget.snapshot(),
                   remaining=self.run.remaining(self.node.depth))

    def forward(self, **input_args: Any) -> Prediction:
        self._validate_inputs(input_args)
        names = list(self.signature.output_fields)
        query = next((v for k in ("query", "question") if isinstance(v := input_args.get(k), str)),
                     None)
        self._emit("rlm_started", model=_model(self.run.root_lm), sub_model=_model(self.run.sub_lm),
                   signature=self.signature.signature, max_iterations=self.max_iters,
                   iteration=self.spawned_at,
                   query=None if query is None else query[:QUERY_CHARS],
                   inputs={k: {"type": "str", "chars": v.chars()} if isinstance(v, SharedText)
                           else {"type": type(v).__name__, "chars": len(_as_text(v))}
                           for k, v in input_args.items()})
        self.repl_history = REPLHistory(max_output_chars=self.max_output_chars)
        exception: Exception | None
        status, outputs, error, exception = "ok", None, None, None
        try:
            self.run.budget.check_depth(self.node.depth)
            self.run.budget.ensure_open()
            with dspy.context(lm=self.run.root_lm,
                              adapter=ChatAdapter(use_json_adapter_fallback=False)):
                prediction = self._loop(input_args, names)
            outputs = {n: prediction.get(n) for n in names}
            if prediction.get("final_reasoning") == "Extract forced final output":
                status = "extract"
        except BudgetExceeded as exc:
            status, exception, error = "budget", exc, str(exc)
            exc.partial = (_partial(self.repl_history) or {}).get("last_output") or exc.partial
        except Cancelled as exc:
            status, exception, error = "cancelled", exc, str(exc)
        except (AdapterParseError, CodeInterpreterError, LMError, UnreadableReply) as exc:
            status, exception, error = "error", exc, f"{type(exc).__name__}: {exc}"
            self._emit("error", error_type=type(exc).__name__, message=str(exc)[:2000],
                       detail=None)
        usage = self.run.budget.snapshot()
        if status == "cancelled" and self.node.depth == 0:
            self._emit("cancelled", partial_answer=_partial(self.repl_history), reason=error or "")
        self._emit("rlm_finished", status=status, answer=_jsonable(outputs),
                   iterations=self.iteration, usage=usage)
        return Prediction(**(outputs or dict.fromkeys(names)), status=status, error=error,
                          exception=exception, iterations=self.iteration, usage=usage,
                          trajectory=[e.model_dump() for e in self.repl_history],
                          partial=_partial(self.repl_history))

    def _build_variables(self, **input_args: Any) -> list[REPLVariable]:
        """dspy's descriptions of the inputs; a shared text's preview is read from its ends."""
        others = {k: v for k, v in input_args.items() if not isinstance(v, SharedText)}
        built = {v.name: v for v in super()._build_variables(**others)}
        return [built[k] if k in built else _shared_variable(self, k, v)
                for k, v in input_args.items()]

    def _loop(self, input_args: dict, names: list[str]) -> Prediction:
        """dspy.RLM.forward's loop, keeping `history` reachable for a partial result."""
        tools = self._prepare_execution_tools(LLMCallBudget(self.max_llm_calls))
        variables = self._build_variables(**input_args)
        with self._interpreter_context(tools, self._new_interpreter) as repl:
            rules = install_facade(self, repl, LLMCallBudget(self.max_llm_calls).reserve)
            # Fixed for the run; dspy would derive it (a new pydantic model) every iteration,
            # since our rules differ from its own: a quarter of an iteration's host time.
            self._iteration_signature = self._action_signature_for_current_factory(
                self._new_interpreter, rules)
            regular = self._prepare_serializable_vars(input_args, repl)
            for iteration in range(self.max_iters):
                result = self._execute_iteration(repl, variables, self.repl_history, iteration,
                                                 regular, names, self._new_interpreter, rules)
                if isinstance(result, Prediction):
                    return result
                self.repl_history = result
            return self._extract_fallback(variables, self.repl_history, names)


def _text(response: Any) -> str:
    if isinstance(response, list) and response:
        first = response[0]
        return str(first.get("text", "") if isinstance(first, dict) else first)
    return str(getattr(response, "text", response))


def _shared_variable(node: NodeRLM, name: str, value: SharedText) -> REPLVariable:
    """What REPLVariable.from_value says of the text, without reading all of it."""
    chars, preview_chars = value.chars(), 1000  # from_value's default
    empty = REPLVariable.from_value(name, "", field_info=node.signature.input_fields.get(name))
    preview = (value.read() if chars <= preview_chars
               else "...".join(value.ends(preview_chars // 2)))
    return empty.model_copy(update={"total_length": chars, "preview": preview})


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, SharedText):
        return value.read()
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _jsonable(outputs: dict | None) -> dict | None:
    return None if outputs is None else json.loads(_as_text(outputs))


def _with_notes(result: Any, notes: list[str]) -> str:
    output = "\n".join(map(str, result)) if isinstance(result, list) else str(result or "")
    return "\n".join([output.rstrip("\n"), *notes]) if output else "\n".join(notes)


def _partial(history: REPLHistory) -> dict | None:
    entries = list(history)
    return {"last_output": entries[-1].output[-4000:]} if entries else None


def _model(lm: Any) -> str:
    return str(getattr(lm, "model", type(lm).__name__))


def budgeted(lm: dspy.BaseLM, budget: Budget, stream: EventStream, role: str,
             call_max_tokens: int, like: BudgetedLM | None = None) -> BudgetedLM:
    """The user's dspy.LM, rebuilt so its calls draw on `budget` and report on `stream`, with
    the retry policy and recorder of `like` (the settings' LM for the same role)."""
    if isinstance(lm, BudgetedLM) and lm.budget is budget and lm.stream is stream:
        return lm
    if not isinstance(lm, dspy.LM):
        raise TypeError(f"RecursiveRLM needs a dspy.LM to meter, got {type(lm).__name__}")
    extra: dict[str, Any] = {}
    if like is not None:
        extra = {"retry": like.retry, "recorder": like.recorder, "capture": like.capture}
        if "timeout" not in lm.kwargs and like.kwargs.get("timeout"):
            extra["timeout"] = like.kwargs["timeout"]
    return BudgetedLM(lm.model, budget=budget, stream=stream, role=role,
                      call_max_tokens=call_max_tokens, **extra, **lm.kwargs)


class RecursiveRLM(dspy.Module):
    """The recursive engine as a dspy.Module.

    `RecursiveRLM("context, question -> answer")(context=..., question=...)` runs a tree of RLMs
    under one Budget (pass `budget=` to share one across calls; otherwise each call gets a new
    one from the limits). LMs come from `lm=`/`sub_lm=`, else `dspy.configure(lm=...)`, else the
    settings. The result carries the outputs, `status`, `trajectory`, `usage` and `events`.
    """

    def __init__(self, signature: Any = "context, question -> answer", *,
                 settings: Settings | None = None, budget: Budget | None = None,
                 lm: dspy.BaseLM | None = None, sub_lm: dspy.BaseLM | None = None,
                 max_iterations: int | None = None, max_depth: int | None = None,
                 max_calls: int | None = None, max_tokens: int | None = None,
                 max_usd: float | None = None, max_wall_s: float | None = None,
                 interpreter_factory: Callable[[], SandboxInterpreter] | None = None,
                 program: Program | ProgramSource | None = None) -> None:
        """`program`: the version of the engine's instructions to run: None for the baseline,
        a `Program`, or a `ProgramSource` read once on first use. The engine reads no store:
        `fleet_rlm.RecursiveRLM` passes the local tenant's promoted version this way."""
        super().__init__()
        self.signature = dspy.ensure_signature(signature)
        self.program = program
        overrides = {"max_iterations": max_iterations, "max_depth": max_depth,
                     "max_calls": max_calls, "max_tokens": max_tokens, "max_usd": max_usd,
                     "max_wall_s": max_wall_s}
        base = settings or Settings()
        self.settings = base.model_copy(update={k: v for k, v in overrides.items()
                                                if v is not None})
        self.budget, self.lm, self.sub_lm = budget, lm, sub_lm
        self.interpreter_factory = interpreter_factory

    def start(self, stream: EventStream | None = None,
              budget: Budget | None = None) -> tuple[Run, NodeRLM]:
        """The run and root node for one call; `fleet run` uses this directly."""
        root = NodeRef.root()
        if callable(self.program):
            self.program = _read(self.program, self.settings)
        run = Run.create(self.settings, root, budget or self.budget, stream,
                         lm=self.lm or dspy.settings.lm, sub_lm=self.sub_lm,
                         interpreter_factory=self.interpreter_factory,
                         programs={"rlm": self.program} if self.program else {})
        return run, NodeRLM(run, root, self.signature)

    def forward(self, **inputs: Any) -> Prediction:
        run, node = self.start()
        result = node(**inputs)
        result.events = list(run.stream.events)
        return result


def _read(source: ProgramSource, settings: Settings) -> Program | None:
    """The version `source` reads, or None (the baseline). Read in a thread of its own, so a
    caller inside an event loop (a notebook) can construct and run an RLM; a source that fails
    leaves the baseline, said in the log."""
    try:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(source, settings).result()
    except Exception as exc:  # noqa: BLE001 - the baseline runs; the log says why
        log.warning("could not read the version of the engine to run (%s: %s); running the "
                    "baseline", type(exc).__name__, exc)
        return None
