"""`fleet doctor`: can this machine run fleet-rlm, how isolated are its sandboxes, and how to fix
what is missing. The checks are the backend's health checks (sandbox/health.py), the same the
server's sandbox check returns."""

from __future__ import annotations

import typer
from rich.markup import escape

from ..config import Settings
from .common import console

MARKS = {"ok": "[green]✓[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✗[/red]"}


def doctor() -> None:
    """Check that this machine can run fleet-rlm, and say how to fix what is missing."""
    from ..sandbox.health import iter_checks

    settings = Settings()
    console.print(f"root model: {settings.root_model}  sub model: {settings.effective_sub_model}")
    console.print(f"api base:   {settings.api_base or '(provider default)'}")
    console.print(f"sandbox:    {settings.sandbox}")
    failed = False
    for check in iter_checks(settings):
        console.print(f"{MARKS[check.status]} {escape(check.detail)}")
        failed = failed or check.failed
    raise typer.Exit(1 if failed else 0)
