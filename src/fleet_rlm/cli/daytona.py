"""`fleet daytona`: the snapshot sandboxes start from, and clearing up what is left on Daytona."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ..config import Settings
from .common import console, database_error, err

daytona_app = typer.Typer(help="Daytona sandboxes (FLEET_SANDBOX=daytona; DAYTONA_API_KEY).",
                          no_args_is_help=True)


@daytona_app.command("snapshot")
def daytona_snapshot() -> None:
    """Create the snapshot sandboxes start from: Python with this version of the driver."""
    from ..sandbox import SandboxError
    from ..sandbox.daytona_admin import create_snapshot

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
    from ..sandbox import SandboxError, backend
    from ..sandbox.daytona_admin import gc_volumes
    from ..sessions.offline import database_label

    settings = Settings()
    store = database_label(settings)
    if not turns and not yes:
        typer.confirm("Delete every fleet-rlm sandbox of this Daytona organisation, including "
                      "those of turns still running, and the volume of every session not in "
                      f"{store}?", abort=True)
    try:
        # Sandboxes first: a deleted session's sandbox would keep its volume in use.
        deleted = backend("daytona").gc(settings, turns or None)
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

        def live_sessions() -> set[str]:
            ids = _session_ids(settings)
            if ids is None:
                raise SandboxError(f"the fleet-rlm database at {store} went away")
            return ids

        volumes = gc_volumes(settings, live_sessions)
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

    from ..sessions.offline import session_ids

    try:
        return asyncio.run(session_ids(settings))
    except Exception as exc:  # noqa: BLE001 - a clear message, exit 1
        raise database_error(exc) from None
