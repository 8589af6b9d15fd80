"""`fleet doctor`: can this machine run fleet-rlm, how isolated are its sandboxes, and how to fix
what is missing."""

from __future__ import annotations

import typer
from rich.markup import escape

from ..config import Settings
from .common import console

MARKS = {True: "[green]✓[/green]", None: "[yellow]![/yellow]", False: "[red]✗[/red]"}


def doctor() -> None:
    """Check that this machine can run fleet-rlm, and say how to fix what is missing."""
    from ..sandbox import SandboxError

    settings = Settings()
    console.print(f"root model: {settings.root_model}  sub model: {settings.effective_sub_model}")
    console.print(f"api base:   {settings.api_base or '(provider default)'}")
    console.print(f"sandbox:    {settings.sandbox}")
    ok = True
    if settings.sandbox in ("local", "gvisor"):
        from ..sandbox.isolation import isolation_checks

        try:
            checks = isolation_checks(settings)
        except SandboxError as exc:
            checks = [(False, str(exc))]
        for works, line in checks:
            ok = ok and works is not False
            console.print(f"{MARKS[works]} {escape(line)}")
    elif settings.sandbox == "unsafe-local":
        console.print("[yellow]! sandbox isolation is OFF (FLEET_SANDBOX=unsafe-local)[/yellow]")
    elif settings.sandbox == "daytona":
        from ..sandbox.daytona_admin import check

        for works, line in check(settings):
            ok = ok and works is not False
            console.print(f"{MARKS[works]} {escape(line)}")
    raise typer.Exit(0 if ok else 1)
