"""`fleet import`: logs of other tools as read-only sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..config import Settings
from .common import console, database_error, err

import_app = typer.Typer(help="Import logs of other tools as read-only sessions.",
                         no_args_is_help=True)


@import_app.command("rlm-log")
def import_rlm_log(
    file: Annotated[Path, typer.Argument(help="A JSON lines trajectory log of the RLM paper's "
                                         "reference implementation (alexzhang13/rlm).")],
    title: Annotated[str | None, typer.Option(help="The session's title (default: the file's "
                                              "name and model).")] = None,
) -> None:
    """Read a trajectory log (its metadata line, then each run's iterations) into a read-only
    session of the store (FLEET_DATA_DIR / FLEET_DATABASE_URL), one turn per run. A log that is
    malformed or of another version is refused with the line and what was expected there, and
    nothing is stored."""
    import asyncio

    from ..rlm_log import RlmLogError
    from ..sessions.offline import import_rlm_log as import_log

    if not file.is_file():
        err.print(f"[red]error:[/red] no file {escape(str(file))}")
        raise typer.Exit(1)
    try:
        session_id, turns = asyncio.run(import_log(Settings(), file, title))
    except RlmLogError as exc:
        err.print(f"[red]error:[/red] {escape(str(file))}: {escape(str(exc))}; nothing was "
                  "imported")
        raise typer.Exit(1) from None
    except Exception as exc:  # noqa: BLE001 - a clear message, exit 1
        raise database_error(exc) from None
    console.print(f"imported {len(turns)} run(s) into session {session_id} (read-only)")
    for turn_id in turns:
        console.print(f"  turn {turn_id}")
