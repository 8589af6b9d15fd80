"""`fleet export`: a turn or a session from the store as JSON or a Markdown transcript."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.markup import escape

from ..config import Settings
from .common import database_error, err

if TYPE_CHECKING:
    from ..export import ExportFormat


def export_command(
    id: Annotated[str, typer.Argument(help="A turn id (a session id with --session).")],
    format: Annotated[str, typer.Option("--format", "-f", help="json | markdown | rlm-log (a "
                                        "turn, as the RLM reference implementation logs)")
                      ] = "json",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write to this file instead of standard output.")] = None,
    session: Annotated[bool, typer.Option(
        "--session", help="ID is a session: export it with all its turns.")] = False,
) -> None:
    """Export a turn from the store (FLEET_DATA_DIR / FLEET_DATABASE_URL) as JSON (everything,
    every event), as a Markdown transcript, or as a trajectory log of the RLM paper's reference
    implementation (rlm-log: its first RLM node, which that project's visualizer reads)."""
    import asyncio

    from ..export import FORMATS
    from ..sessions import NotFound
    from ..sessions.offline import export

    if format not in FORMATS:
        err.print(f"[red]error:[/red] --format must be one of {', '.join(FORMATS)}")
        raise typer.Exit(1)
    kind = "session" if session else "turn"

    try:
        text = asyncio.run(export(Settings(), kind, id,
                                  cast("ExportFormat", format)))  # checked above
    except NotFound:
        err.print(f"[red]error:[/red] no {kind} with id {escape(repr(id))}")
        raise typer.Exit(1) from None
    except ValueError as exc:  # a format the turn or session cannot be written in
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except Exception as exc:  # noqa: BLE001 - a clear message, exit 1
        raise database_error(exc) from None
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {kind} {id} to {out}")
