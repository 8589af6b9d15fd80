"""`fleet run`: answer a question over context files with a recursive RLM, its tree live."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from ..config import Settings
from .common import err

if TYPE_CHECKING:
    from ..engine.rlm import NodeRLM, Run
    from ..events import EventStream


def run_command(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    context: Annotated[list[str] | None, typer.Option(
        "--context", "-c", help="Context file (repeatable; - for standard input). One file is "
        "a string; several are a dict of file name to text.")] = None,
    model: Annotated[str | None, typer.Option(help="Root model, e.g. openai/gpt-4o-mini.")] = None,
    sub_model: Annotated[str | None, typer.Option(help="Model for llm_query.")] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
    max_calls: Annotated[int | None, typer.Option(help="Most LM calls in the whole tree.")] = None,
    max_usd: Annotated[float | None, typer.Option(help="Most USD spent.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens used.")] = None,
    max_depth: Annotated[int | None, typer.Option(help="Deepest child RLM.")] = None,
    max_iterations: Annotated[int | None, typer.Option(help="Iterations per RLM node.")] = None,
    max_wall_s: Annotated[float | None, typer.Option(
        "--max-wall-s", help="Most wall-clock seconds.")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", hidden=True, help="Deprecated name of --max-wall-s.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the event stream as JSON lines instead of the answer.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live tree.")] = False,
    baseline: Annotated[bool, typer.Option(
        "--baseline", help="Run the engine's baseline instructions, not the version the "
        "local tenant promoted (fleet programs).")] = False,
    record: Annotated[Path | None, typer.Option(
        "--record", help="Save every model request and reply (keys redacted) to this JSON "
        "lines file, which the scripted LM server replays offline.")] = None,
) -> None:
    """Answer QUESTION over the context with a recursive RLM.

    Exit status: 0 answered; 1 error; 2 the budget or time limit ran out (the partial result
    is printed); 130 interrupted.
    """
    from pydantic import ValidationError

    from ..budget import UnpricedModel
    from ..config import get_settings, invalid_settings, missing_model_message, model_ready

    try:
        if timeout is not None:
            if max_wall_s is not None:
                raise _InputError("give --max-wall-s only (--timeout is its deprecated name)")
            err.print("[yellow]warning:[/yellow] --timeout is deprecated; use --max-wall-s")
            max_wall_s = timeout
        inputs = {"context": _read_context(context or []), "question": question}
        settings = get_settings(root_model=model, sub_model=sub_model, api_base=api_base,
                                max_calls=max_calls, max_usd=max_usd, max_tokens=max_tokens,
                                max_depth=max_depth, max_iterations=max_iterations,
                                max_wall_s=max_wall_s, record_file=record)
        if record is not None:
            from ..lm import Recorder

            try:
                Recorder(record, truncate=True, about={"command": "run", "question": question})
            except OSError as exc:
                raise _InputError(f"cannot write the recording {record}: "
                                  f"{exc.strerror or exc}") from None
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {escape(invalid_settings(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    except _InputError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if not model_ready(settings):  # say which of our settings to set, before dspy's advice
        err.print(f"[red]error:[/red] {escape(missing_model_message(settings))}", soft_wrap=True)
        raise typer.Exit(1)
    try:
        code = _run(settings, inputs, as_json=as_json, quiet=quiet, baseline=baseline)
    except UnpricedModel as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        code = 1
    except KeyboardInterrupt:  # before the run's own handler was installed
        code = 130
    raise typer.Exit(code)


class _InputError(Exception):
    pass


def _read_text(name: str) -> str:
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise _InputError(f"cannot read context file {name}: {exc.strerror or exc}") from None
    label = "standard input" if name == "-" else name
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), len(data), "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _InputError(f"context file {label} is not UTF-8 text (binary file?)") from None


def _read_context(names: list[str]) -> str | dict[str, str]:
    if not names:
        return ""
    if len(names) == 1:
        return _read_text(names[0])
    texts: dict[str, str] = {}
    for name in names:
        key = "stdin" if name == "-" else Path(name).name
        if key in texts:
            raise _InputError(f"two context files are both named {key!r}; rename one")
        texts[key] = _read_text(name)
    return texts


def _run(settings: Settings, inputs: dict, *, as_json: bool, quiet: bool,
         baseline: bool = False) -> int:
    import contextlib
    import os
    import signal
    import threading

    from ..events import EventStream
    from .render import TreeRenderer

    sinks = []
    if as_json:
        sinks.append(lambda event: print(event.model_dump_json(), flush=True))
    renderer = None if as_json or quiet else TreeRenderer(err)
    if renderer is not None:
        sinks.append(renderer)
    stream = EventStream(turn_id=uuid.uuid4().hex[:12], sinks=sinks)
    outcome: dict = {}
    with renderer.live() if renderer else contextlib.nullcontext() as live:
        # The view is drawn: dspy and the promoted version load behind it.
        try:
            run, root = _start(settings, stream, baseline)
        except BaseException:
            if live is not None:  # the error is the first thing left on screen, as before
                live.transient = True
            raise

        def work() -> None:
            try:
                outcome["result"] = root(**inputs)
            except Exception as exc:  # noqa: BLE001 - reported as a clear message, exit 1
                outcome["exception"] = exc

        def on_sigint(signum: int, frame: object) -> None:
            if run.cancel.cancelled:  # a second Ctrl-C: stop waiting for the wind-down
                os._exit(130)
            err.print("[yellow]interrupted: stopping the run…[/yellow]")
            run.cancel.cancel("interrupted by the user")

        worker = threading.Thread(target=work, name="fleet-run", daemon=True)
        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            worker.start()
            while worker.is_alive():  # the main thread stays free to take SIGINT
                worker.join(0.1)
        finally:
            signal.signal(signal.SIGINT, previous)
    code = _report(outcome, run.cancel.reason, as_json)
    _trace_run(settings, stream.events, inputs["question"])
    if run.cancel.cancelled:
        # An LM request the run walked away from would hold the interpreter's exit until it
        # returns: leave now that everything is printed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _start(settings: Settings, stream: EventStream, baseline: bool) -> tuple[Run, NodeRLM]:
    """The run and its root node, on the version of the engine's instructions the local tenant
    promoted (none when `baseline`): where dspy and the store are first imported."""
    from ..engine.rlm import RecursiveRLM

    program = None
    if not baseline:
        import asyncio

        from ..sessions.offline import promoted_programs

        program = asyncio.run(promoted_programs(settings)).get("rlm")
    return RecursiveRLM("context, question -> answer", settings=settings,
                        program=program).start(stream)


def _report(outcome: dict, cancel_reason: str | None, as_json: bool) -> int:
    if "exception" in outcome:
        exc = outcome["exception"]
        err.print(f"[red]error:[/red] {escape(f'{type(exc).__name__}: {exc}')}")
        return 1
    result = outcome["result"]
    if result.status == "budget":  # a limit, the wall time's too, ended the run
        err.print(f"[magenta]stopped:[/magenta] {escape(str(result.error))}")
        code = 2
    elif cancel_reason or result.status == "cancelled":
        err.print("[magenta]cancelled[/magenta]")
        code = 130
    elif result.status == "error":
        message = "\n".join(line for line in str(result.error).splitlines() if line.strip())
        err.print(f"[red]error:[/red] {escape(message)}")
        return 1
    else:
        code = 0
    if not as_json:
        answer = result.answer
        if answer is None and result.partial:
            err.print("[dim]no answer; the last output was:[/dim]")
            answer = result.partial["last_output"].rstrip("\n")
        if answer is not None:
            print(answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False))
    return code


def _trace_run(settings: Settings, events: list, question: str) -> None:
    """With an MLflow tracking URI configured, the run becomes one trace; with an OTLP
    endpoint, one OpenTelemetry trace too."""
    if settings.otel_exporter_otlp_endpoint:
        from ..otel import record_export

        if record_export(settings, events, name="fleet run", wait=True) is None:
            err.print("[yellow]warning:[/yellow] the OpenTelemetry trace was not exported")
    if not settings.mlflow_tracking_uri:
        return
    from ..tracing import record_trace

    trace_id = record_trace(settings, events, name="fleet run", inputs={"question": question},
                            tags={"fleet.kind": "run"}, wait=True)
    if trace_id is None:
        err.print("[yellow]warning:[/yellow] the MLflow trace was not recorded")
    else:
        err.print(f"MLflow trace: {trace_id}")

