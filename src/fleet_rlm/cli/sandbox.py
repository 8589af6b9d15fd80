"""`fleet sandbox exec`: run code in a fresh sandbox of the configured backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..config import Settings
from .common import err

sandbox_app = typer.Typer(help="Run code in a sandbox of the configured backend.",
                          no_args_is_help=True)


@sandbox_app.command("exec")
def sandbox_exec(
    file: Annotated[str, typer.Argument(help="Python file to run, or - for standard input.")] = "-",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds before the code is stopped.")] = None,
) -> None:
    """Run code in a fresh sandbox and print what it did."""
    from ..sandbox import SandboxError, create_sandbox

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
