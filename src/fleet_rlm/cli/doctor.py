"""`fleet doctor`: can this machine run fleet-rlm, and how to fix what is missing."""

from __future__ import annotations

import typer
from rich.markup import escape

from ..config import Settings
from .common import console


def doctor() -> None:
    """Check that this machine can run fleet-rlm, and say how to fix what is missing."""
    from ..sandbox import SandboxError
    from ..sandbox.local import check_bubblewrap

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
        from ..sandbox.daytona_admin import check

        marks = {True: "[green]✓[/green]", None: "[yellow]![/yellow]", False: "[red]✗[/red]"}
        for works, line in check(settings):
            ok = ok and works is not False
            console.print(f"{marks[works]} {escape(line)}")
    raise typer.Exit(0 if ok else 1)
