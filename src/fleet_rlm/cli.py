"""The `fleet` command."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .config import Settings

app = typer.Typer(help="fleet-rlm: a workspace for recursive language-model work on DSPy.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
sandbox_app = typer.Typer(help="Run code in a sandbox of the configured backend.",
                          no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
db_app = typer.Typer(help="Manage the database schema (FLEET_DATABASE_URL; default a SQLite file "
                     "in FLEET_DATA_DIR).", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()
err = Console(stderr=True)


@sandbox_app.command("exec")
def sandbox_exec(
    file: Annotated[str, typer.Argument(help="Python file to run, or - for standard input.")] = "-",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds before the code is stopped.")] = None,
) -> None:
    """Run code in a fresh sandbox and print what it did."""
    from .sandbox import SandboxError, create_sandbox

    try:
        code = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]cannot read {file}: {exc}[/red]")
        raise typer.Exit(1) from None
    sandbox = create_sandbox(Settings())
    try:
        result = sandbox.execute(code, timeout=timeout)
    except SandboxError as exc:
        err.print(f"[red]sandbox error:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        sandbox.close()
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if not result.ok:
            sys.stderr.write(result.traceback or f"{result.error_type}: {result.error_message}\n")
            if result.timed_out:
                sys.stderr.write(f"{result.error_message}\n")
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def doctor() -> None:
    """Check that this machine can run fleet-rlm, and say how to fix what is missing."""
    from .sandbox import SandboxError
    from .sandbox.local import check_bubblewrap

    settings = Settings()
    console.print(f"root model: {settings.root_model}  sub model: {settings.effective_sub_model}")
    console.print(f"api base:   {settings.api_base or '(provider default)'}")
    console.print(f"sandbox:    {settings.sandbox}")
    ok = True
    if settings.sandbox == "local":
        try:
            version = check_bubblewrap(settings)
            console.print(f"[green]✓[/green] bubblewrap sandbox works (Python {version} inside)")
        except SandboxError as exc:
            ok = False
            console.print(f"[red]✗[/red] {exc}")
    elif settings.sandbox == "unsafe-local":
        console.print("[yellow]! sandbox isolation is OFF (FLEET_SANDBOX=unsafe-local)[/yellow]")
    elif settings.sandbox == "daytona":
        from .sandbox.daytona_admin import check

        marks = {True: "[green]✓[/green]", None: "[yellow]![/yellow]", False: "[red]✗[/red]"}
        for works, line in check(settings):
            ok = ok and works is not False
            console.print(f"{marks[works]} {escape(line)}")
    raise typer.Exit(0 if ok else 1)


daytona_app = typer.Typer(help="Daytona sandboxes (FLEET_SANDBOX=daytona; DAYTONA_API_KEY).",
                          no_args_is_help=True)
app.add_typer(daytona_app, name="daytona")


@daytona_app.command("snapshot")
def daytona_snapshot() -> None:
    """Create the snapshot sandboxes start from: Python with this version of the driver."""
    from .sandbox import SandboxError
    from .sandbox.daytona_admin import create_snapshot

    try:
        name, created = create_snapshot(Settings(), on_logs=lambda line: err.print(escape(line)))
    except SandboxError as exc:
        err.print(f"[red]daytona error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(f"{'created' if created else 'already there'}: {name}")
    console.print(f"use it with: export FLEET_DAYTONA_SNAPSHOT={name}")


@daytona_app.command("gc")
def daytona_gc(
    turns: Annotated[list[str] | None, typer.Argument(
        help="Ids of finished turns whose sandboxes to delete; none: every fleet-rlm sandbox, "
        "and the volumes of sessions no longer in the store.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Don't ask before deleting all.")
                   ] = False,
) -> None:
    """Delete fleet-rlm sandboxes left on Daytona, and volumes of deleted sessions."""
    from .sandbox import SandboxError
    from .sandbox.daytona_admin import gc, gc_volumes
    from .store import database_url

    settings = Settings()
    store = database_url(settings.database_url, settings.data_dir).render_as_string(
        hide_password=True)
    if not turns and not yes:
        typer.confirm("Delete every fleet-rlm sandbox of this Daytona organisation, including "
                      "those of turns still running, and the volume of every session not in "
                      f"{store}?", abort=True)
    try:
        # Sandboxes first: a deleted session's sandbox would keep its volume in use.
        deleted = gc(settings, turns or None)
        for sandbox_id in deleted:
            console.print(f"deleted {sandbox_id}")
        console.print(f"{len(deleted)} sandbox{'es' if len(deleted) != 1 else ''} deleted")
        if turns:
            return
        # No database is not an empty one: with a wrong FLEET_DATA_DIR every session's volume
        # would look orphaned.
        if _session_ids(settings) is None:
            console.print("[yellow]volumes kept:[/yellow] no fleet-rlm database at "
                          f"{escape(store)}; set FLEET_DATA_DIR or FLEET_DATABASE_URL to the "
                          "workspace's")
            return
        volumes = gc_volumes(settings, lambda: _session_ids(settings))
    except SandboxError as exc:
        err.print(f"[red]daytona error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    for name in volumes:
        console.print(f"deleted volume {name}")
    console.print(f"{len(volumes)} volume{'s' if len(volumes) != 1 else ''} of deleted sessions "
                  "deleted")


def _session_ids(settings: Settings) -> set[str] | None:
    """Every session in the store, of every tenant; None when there is no database (none is
    made here)."""
    import asyncio

    import sqlalchemy as sa

    from .store import Session, Store

    async def load() -> set[str] | None:
        store = Store.from_settings(settings)
        if store.dialect == "sqlite" and not Path(store.url.database or "").is_file():
            return None
        async with store:
            if await store.current() is None:
                return None
            async with store.transaction() as db:
                return set(await db.scalars(sa.select(Session.id)))

    try:
        return asyncio.run(load())
    except Exception as exc:  # noqa: BLE001 - a clear message, exit 1
        err.print(f"[red]database error:[/red] {escape(f'{type(exc).__name__}: {exc}')}")
        raise typer.Exit(1) from None


bench_app = typer.Typer(help="Benchmarks: S-NIAH, OOLONG and OOLONG-Pairs, run, scored and "
                        "reported.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _bench_command(benchmark: str) -> None:
    def command(
        n: Annotated[int, typer.Option("--n", help="Number of tasks.")] = 50,
        mode: Annotated[str, typer.Option(help="rlm | direct | agent | code-only (no model).")]
        = "rlm",
        model: Annotated[str | None, typer.Option(help="Root model.")] = None,
        sub_model: Annotated[str | None, typer.Option(help="Model for sub-calls.")] = None,
        api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
        concurrency: Annotated[int, typer.Option(help="Tasks run at once.")] = 1,
        max_usd: Annotated[float | None, typer.Option(
            help="Stop launching tasks once the results in OUT have cost this much.")] = None,
        seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
        lengths: Annotated[list[str] | None, typer.Option(
            help="Context lengths in tokens (e.g. 8192,32k); default per benchmark.")] = None,
        out: Annotated[Path | None, typer.Option(
            help="Results directory (default ./bench-BENCHMARK).")] = None,
        export: Annotated[Path | None, typer.Option(
            help="Write the tasks as JSONL to this file and run nothing.")] = None,
        retry_errors: Annotated[bool, typer.Option(
            help="Run again the tasks whose recorded status is error.")] = False,
    ) -> None:
        import os

        from .bench.runner import run_cli

        code = run_cli(benchmark, console, err, n=n, mode=mode, concurrency=concurrency,
                       max_usd=max_usd, seed=seed, lengths=lengths,
                       out=out or Path(f"bench-{benchmark}"), export=export,
                       retry_errors=retry_errors,
                       overrides={"root_model": model, "sub_model": sub_model,
                                  "api_base": api_base})
        if code == 130:  # an LM request walked away from would otherwise hold the exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise typer.Exit(code)

    command.__doc__ = (f"Run {benchmark} tasks and write OUT/results.jsonl, report.md and plots. "
                       "An interrupted run resumes: tasks already in results.jsonl are skipped.")
    bench_app.command(benchmark)(command)


for _benchmark in ("sniah", "oolong", "oolong-pairs"):
    _bench_command(_benchmark)


@bench_app.command("report")
def bench_report(out: Annotated[Path, typer.Argument(help="A results directory.")]) -> None:
    """Rebuild OUT/report.md and the plots from OUT/results.jsonl."""
    from .bench import report
    from .bench.runner import RESULTS, load_results

    if not (out / RESULTS).exists():
        err.print(f"[red]error:[/red] no {RESULTS} in {out}")
        raise typer.Exit(1)
    console.print(f"{report.write_report(out)}: {report.summary_line(load_results(out))}")


@app.command("run")
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
    timeout: Annotated[float | None, typer.Option(help="Most wall-clock seconds.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the event stream as JSON lines instead of the answer.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live tree.")] = False,
) -> None:
    """Answer QUESTION over the context with a recursive RLM.

    Exit status: 0 answered; 1 error; 2 the budget or time limit ran out (the partial result
    is printed); 130 interrupted.
    """
    from pydantic import ValidationError

    from .config import get_settings

    try:
        inputs = {"context": _read_context(context or []), "question": question}
        settings = get_settings(root_model=model, sub_model=sub_model, api_base=api_base,
                                max_lm_calls=max_calls, max_usd=max_usd, max_tokens=max_tokens,
                                max_depth=max_depth, max_iterations=max_iterations,
                                max_wall_s=timeout)
    except (ValidationError, _InputError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    try:
        code = _run(settings, inputs, as_json=as_json, quiet=quiet)
    except KeyboardInterrupt:  # before the run's own handler was installed
        code = 130
    raise typer.Exit(code)


TIME_LIMIT = "time limit (--timeout, FLEET_MAX_WALL_S) reached"


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


def _run(settings: Settings, inputs: dict, *, as_json: bool, quiet: bool) -> int:
    import contextlib
    import os
    import signal
    import threading

    from .engine.rlm import RecursiveRLM
    from .events import EventStream
    from .render import TreeRenderer

    sinks = []
    if as_json:
        sinks.append(lambda event: print(event.model_dump_json(), flush=True))
    renderer = None if as_json or quiet else TreeRenderer(err)
    if renderer is not None:
        sinks.append(renderer)
    stream = EventStream(turn_id=uuid.uuid4().hex[:12], sinks=sinks)
    run, root = RecursiveRLM("context, question -> answer", settings=settings).start(stream)
    outcome: dict = {}

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
    # The budget checks wall time only when a call is admitted; this also stops a call in flight.
    deadline = time.monotonic() + settings.max_wall_s
    try:
        with renderer.live() if renderer else contextlib.nullcontext():
            worker.start()
            while worker.is_alive():  # the main thread stays free to take SIGINT
                worker.join(0.1)
                if time.monotonic() > deadline:
                    run.cancel.cancel(TIME_LIMIT)
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


def _report(outcome: dict, cancel_reason: str | None, as_json: bool) -> int:
    if "exception" in outcome:
        exc = outcome["exception"]
        err.print(f"[red]error:[/red] {escape(f'{type(exc).__name__}: {exc}')}")
        return 1
    result = outcome["result"]
    if cancel_reason == TIME_LIMIT:
        err.print(f"[magenta]stopped:[/magenta] {TIME_LIMIT}")
        code = 2
    elif cancel_reason or result.status == "cancelled":
        err.print("[magenta]cancelled[/magenta]")
        code = 130
    elif result.status == "budget":
        err.print(f"[magenta]stopped:[/magenta] {escape(str(result.error))}")
        code = 2
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


@app.command()
def chat(
    session: Annotated[str | None, typer.Option(
        help="Reopen this session and show its recent history (ids: /sessions).")] = None,
    model: Annotated[str | None, typer.Option(help="Root model, e.g. openai/gpt-4o-mini.")] = None,
    sub_model: Annotated[str | None, typer.Option(help="Model for sub-calls.")] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
) -> None:
    """Chat with the agent in the terminal: load documents, watch each turn's tree live.

    /help lists the slash commands. Ctrl-C cancels a running turn; at the prompt it leaves.
    Exit status: 0 after /exit or Ctrl-D; 1 unknown session; 130 interrupted.
    """
    import os

    from pydantic import ValidationError

    from .chat import run_chat
    from .config import get_settings

    try:
        settings = get_settings(root_model=model, sub_model=sub_model, api_base=api_base)
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    code = run_chat(settings, session)
    # A cancelled turn's LM request and an unanswered prompt read may still hold threads the
    # interpreter would wait for: leave now that everything is printed and the store is closed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _with_store(action) -> str:
    """Run `await action(store)` on the configured store; a failure is a message and exit 1."""
    import asyncio

    from .store import Store

    async def run() -> str:
        async with Store.from_settings(Settings()) as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - a clear message, exit 1
        err.print(f"[red]database error:[/red] {escape(f'{type(exc).__name__}: {exc}')}")
        raise typer.Exit(1) from None


def _describe(store, revision: str | None) -> str:
    url = store.url.render_as_string(hide_password=True)
    return f"{url}: {'revision ' + revision if revision else 'empty (no schema)'}"


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the schema up to REVISION."""

    async def action(store) -> str:
        await store.upgrade(revision)
        return _describe(store, await store.current())

    console.print(_with_store(action))


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision: an id, -1, or base.")],
) -> None:
    """Migrate the schema down to REVISION (base drops every table and its data)."""

    async def action(store) -> str:
        await store.downgrade(revision)
        return _describe(store, await store.current())

    console.print(_with_store(action))


@db_app.command("current")
def db_current() -> None:
    """Print the database URL and its schema revision."""

    async def action(store) -> str:
        return _describe(store, await store.current())

    console.print(_with_store(action))


def _trace_run(settings: Settings, events: list, question: str) -> None:
    """With an MLflow tracking URI configured, the run becomes one trace."""
    if not settings.mlflow_tracking_uri:
        return
    from .tracing import record_trace

    trace_id = record_trace(settings, events, name="fleet run", inputs={"question": question},
                            tags={"fleet.kind": "run"}, wait=True)
    if trace_id is None:
        err.print("[yellow]warning:[/yellow] the MLflow trace was not recorded")
    else:
        err.print(f"MLflow trace: {trace_id}")


@app.command("export")
def export_command(
    id: Annotated[str, typer.Argument(help="A turn id (a session id with --session).")],
    format: Annotated[str, typer.Option("--format", "-f", help="json | markdown")] = "json",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write to this file instead of standard output.")] = None,
    session: Annotated[bool, typer.Option(
        "--session", help="ID is a session: export it with all its turns.")] = False,
) -> None:
    """Export a turn from the store (FLEET_DATA_DIR / FLEET_DATABASE_URL) as JSON (everything,
    every event) or as a Markdown transcript."""
    import asyncio

    from .export import FORMATS, export_session, export_turn
    from .store import NotFound, Store

    if format not in FORMATS:
        err.print(f"[red]error:[/red] --format must be one of {', '.join(FORMATS)}")
        raise typer.Exit(1)
    kind = "session" if session else "turn"

    async def load() -> str:
        async with Store.from_settings(Settings()) as store:
            if await store.current() is None:  # no database yet, so nothing to export
                raise NotFound(kind, id)
            return await (export_session if session else export_turn)(store, id, format)

    try:
        text = asyncio.run(load())
    except NotFound:
        err.print(f"[red]error:[/red] no {kind} with id {escape(repr(id))}")
        raise typer.Exit(1) from None
    except Exception as exc:  # noqa: BLE001 - a clear message, exit 1
        err.print(f"[red]database error:[/red] {escape(f'{type(exc).__name__}: {exc}')}")
        raise typer.Exit(1) from None
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {kind} {id} to {out}")


@app.command("serve-mcp")
def serve_mcp(
    transport: Annotated[str, typer.Option(help="stdio | http (streamable HTTP at /mcp)")]
    = "stdio",
    host: Annotated[str, typer.Option(help="Address to bind (http).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (http).")] = 8765,
) -> None:
    """Serve the engine and the sessions to other agents over MCP: tools rlm_query, chat,
    list_sessions, get_turn. Over http a bearer token (FLEET_MCP_TOKEN) is required unless the
    server binds to a loopback address."""
    from .mcp import McpConfigError, check_bind, serve

    if transport not in ("stdio", "http"):
        err.print("[red]error:[/red] --transport must be stdio or http")
        raise typer.Exit(1)
    settings = Settings()
    try:
        check_bind(settings, transport, host)
        if transport == "http":
            auth = "bearer token required" if settings.mcp_token else "no token (loopback only)"
            err.print(f"fleet-rlm MCP server on http://{host}:{port}/mcp ({auth})")
        serve(settings, transport, host, port)
    except (McpConfigError, ImportError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the browser.")] = False,
) -> None:
    """Serve the web workspace and its API (/api/v1, docs at /api/v1/docs).

    Loopback only unless FLEET_AUTH=token: without login, anyone who can reach the port could
    run code in your sandboxes and spend your model budget.
    """
    import threading
    import webbrowser

    import uvicorn

    from .server import create_app
    from .server.auth import is_loopback_host

    settings = Settings()
    if not is_loopback_host(host) and settings.auth != "token":
        err.print(f"[red]error:[/red] refusing to listen on {host}: without login only "
                  "loopback addresses (127.0.0.1, ::1, localhost) are allowed. Set "
                  "FLEET_AUTH=token and create users and tokens (`fleet users add`, `fleet "
                  "tokens create`) to serve other hosts.")
        raise typer.Exit(1)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    err.print(f"fleet-rlm web on {url} (auth: {settings.auth})")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, [url]).start()
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info",
                ws="websockets-sansio")


users_app = typer.Typer(help="Users of the web workspace (FLEET_AUTH=token).",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")
tokens_app = typer.Typer(help="API tokens of users (FLEET_AUTH=token).", no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    tenant: Annotated[str | None, typer.Option(
        help="Tenant (a group sharing sessions), created if missing; default: named NAME.")]
    = None,
    admin: Annotated[bool, typer.Option(help="May change the server's settings.")] = False,
) -> None:
    """Add a user; its sessions are visible to its tenant only."""
    from .store.repos import UserRepo

    async def action(store) -> str:
        await store.upgrade()
        user = await UserRepo(store).add(name, tenant, admin=admin)
        return f"user {user.name} ({user.id}) in tenant {tenant or name}" + (
            ", admin" if admin else "")

    console.print(escape(_with_store(action)))


@users_app.command("list")
def users_list() -> None:
    """List users with their tenants."""
    from .store.repos import UserRepo

    async def action(store) -> str:
        await store.upgrade()
        rows = await UserRepo(store).list()
        return "\n".join(f"{u.id}  {t}/{u.name}{'  admin' if u.admin else ''}" for u, t in rows)

    console.print(escape(_with_store(action)))


@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Argument(help="User name or id.")],
    name: Annotated[str, typer.Option(help="A label for the token.")] = "token",
) -> None:
    """Create a token and print it once (only its hash is kept)."""
    from .store.repos import TokenRepo, UserRepo

    async def action(store) -> str:
        await store.upgrade()
        owner = await UserRepo(store).find(user)
        token, secret = await TokenRepo(store).create(owner.id, name)
        err.print(f"token {token.id} for {owner.name}; shown once, store it now:")
        return secret

    print(_with_store(action))


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="Token id.")]) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from .store.repos import TokenRepo

    async def action(store) -> str:
        await store.upgrade()
        token = await TokenRepo(store).revoke(token_id)
        return f"revoked token {token.id}"

    console.print(_with_store(action))


@tokens_app.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Argument(help="User name or id; default all.")] = None,
) -> None:
    """List tokens (never their secrets)."""
    from .store.repos import TokenRepo, UserRepo

    async def action(store) -> str:
        await store.upgrade()
        owner = await UserRepo(store).find(user) if user else None
        tokens = await TokenRepo(store).list(owner.id if owner else None)
        return "\n".join(
            f"{t.id}  user {t.user_id}  {t.name}  created {t.created_at:%Y-%m-%d %H:%M}"
            f"{'  REVOKED' if t.revoked_at else ''}" for t in tokens)

    console.print(escape(_with_store(action)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
