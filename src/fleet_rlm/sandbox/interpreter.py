"""Adapter from a Sandbox to dspy's CodeInterpreter protocol, so dspy.RLM runs on our sandboxes."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dspy import CodeExecutionError, CodeInterpreterError, FinalOutput

from .base import ExecResult, Sandbox, SandboxError
from .shared import TAKES_SHARED

EXECUTION_INSTRUCTIONS = (
    "Code runs in CPython 3 (standard library only) in an isolated sandbox with no network. "
    "State persists between steps, but the input variables are set again before every step. "
    "Inputs and host function results keep their Python types (sets, tuples, bytes, dates, "
    "dicts with non-string keys); a pydantic model or dataclass arrives as a dict of its fields "
    "(a dict subclass named after its type; fields can also be read as attributes). "
    "Host functions and SUBMIT are global functions; what you pass them goes to the host as "
    "plain JSON data (sets and tuples as lists). The working directory /work is writable. "
    "The value of a trailing expression is shown, like a REPL. Processes and threads a step "
    "starts are stopped when the step ends."
)


class SandboxInterpreter:
    """One dspy CodeInterpreter session on one Sandbox. dspy creates one per forward call."""

    execution_instructions = EXECUTION_INSTRUCTIONS

    def __init__(self, sandbox: Sandbox, tools: dict[str, Callable[..., Any]] | None = None,
                 output_fields: list[dict] | None = None, timeout: float | None = None,
                 on_result: Callable[[str, ExecResult], None] | None = None,
                 before_execute: Callable[[], None] | None = None,
                 on_shutdown: Callable[[], None] | None = None) -> None:
        """`on_result` sees every cell's result; `before_execute` runs before every cell and
        refuses it by raising; `on_shutdown` runs once the interpreter is shut down."""
        self.sandbox = sandbox
        self.tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = output_fields
        self.timeout = timeout
        self.on_result = on_result
        self.before_execute = before_execute
        self.on_shutdown = on_shutdown
        self._shut = False
        # The name of the next cell in tracebacks (the tree's iteration), when the caller knows.
        self.cell_name: Callable[[], str | None] = lambda: None
        self._wrapped: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}
        # Tools that take a shared input as a SharedText (handing it to another sandbox), not
        # as its text: see shared.py.
        self.shared_tools: frozenset[str] = frozenset()

    def start(self) -> None:
        if self._shut:
            raise CodeInterpreterError("this interpreter was shut down")
        try:
            self.sandbox.start()
        except SandboxError as exc:
            raise CodeInterpreterError(str(exc)) from exc

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        if self.before_execute is not None:
            self.before_execute()
        self.start()
        try:
            for name, value in (variables or {}).items():
                self.sandbox.put_variable(name, value)
            fields = [f["name"] for f in self.output_fields] if self.output_fields else None
            result = self.sandbox.execute(code, timeout=self.timeout,
                                          callbacks=self._callbacks(contextvars.copy_context()),
                                          submit_fields=fields, cell=self.cell_name())
        except SandboxError as exc:
            raise CodeInterpreterError(str(exc)) from exc
        except TypeError as exc:  # a variable that cannot cross into the sandbox
            raise CodeInterpreterError(str(exc)) from exc
        if self.on_result is not None:
            self.on_result(code, result)
        if result.final is not None:
            return FinalOutput(result.final)
        if result.ok:
            return result.stdout or None
        if result.error_type == "SyntaxError":
            raise SyntaxError(result.traceback or result.error_message)
        raise CodeExecutionError(format_failure(result))

    def _callbacks(self, context: contextvars.Context) -> dict[str, Callable[..., Any]]:
        """The tools as host callbacks, each wrapped once (dspy may replace `tools` any time),
        run in `context`, the caller's: dspy's settings (`dspy.context(lm=...)`, callbacks)
        and every other context variable reach the tools, though they run in worker threads."""
        wrapped: dict[str, Callable[..., Any]] = {}
        for name, tool in self.tools.items():
            known = self._wrapped.get(name)
            if known is None or known[0] is not tool:
                known = self._wrapped[name] = (tool, _sync(tool))
            wrapped[name] = functools.partial(_in_context, context, known[1])
            setattr(wrapped[name], TAKES_SHARED, name in self.shared_tools)
        return wrapped

    def shutdown(self) -> None:
        self._shut = True
        if self.on_shutdown is not None:
            self.on_shutdown()
        self.sandbox.close()

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)


def format_failure(result: ExecResult) -> str:
    """What the model sees when its code failed: output so far, then the traceback."""
    parts = []
    if result.stdout:
        parts.append(f"Output before the error:\n{result.stdout.rstrip()}")
    parts.append(result.traceback or f"{result.error_type}: {result.error_message}")
    if result.timed_out or result.state_lost:
        parts.append(result.error_message or "")
    if result.state_lost:
        parts.append("The sandbox was restarted: variables you defined are gone; "
                     "inputs are reloaded.")
    return "\n".join(p for p in parts if p)


def _in_context(context: contextvars.Context, fn: Callable[..., Any], *args: Any,
                **kwargs: Any) -> Any:
    """Run `fn` in a copy of `context`: callbacks may run at once, and one Context cannot be
    entered by two threads."""
    return context.copy().run(fn, *args, **kwargs)


def _sync(tool: Callable[..., Any]) -> Callable[..., Any]:
    """Host callbacks run in worker threads: positional arguments are bound to names (dspy's
    tool wrappers take keywords only), and async tools get an event loop of their own."""
    try:
        names = [p.name for p in inspect.signature(tool).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):
        names = []
    is_async = (inspect.iscoroutinefunction(tool)
                or inspect.iscoroutinefunction(type(tool).__call__))

    def run(*args: Any, **kwargs: Any) -> Any:
        if args and len(args) <= len(names):
            kwargs = {**dict(zip(names, args, strict=False)), **kwargs}
            args = ()
        result = tool(*args, **kwargs)
        if is_async or inspect.isawaitable(result):
            context = contextvars.copy_context()
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(context.run, asyncio.run, result).result()
        return result

    return run
