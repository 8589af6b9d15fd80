"""`fleet doctor`: can this machine run fleet-rlm, is a model configured (and, with `--live`, does
it answer), how isolated are its sandboxes, and how to fix what is missing. The sandbox checks are
the backend's health checks (sandbox/health.py), the same the server's sandbox check returns; the
live model check is the settings page's "Test model"."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape

from ..config import Settings, missing_model_message, model_ready, provider_keys
from .common import console

MARKS = {"ok": "[green]✓[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✗[/red]"}


def doctor(
    live: Annotated[bool, typer.Option(
        "--live", help="Also make one tiny call to the root model.")] = False,
) -> None:
    """Check that this machine can run fleet-rlm, and say how to fix what is missing.

    Exit status: 0 all good (warnings allowed); 1 a check failed or no model is configured."""
    from ..sandbox.health import iter_checks

    settings = Settings()
    console.print(f"root model: {settings.root_model}  sub model: {settings.effective_sub_model}")
    console.print(f"api base:   {settings.api_base or '(provider default)'}")
    console.print(f"sandbox:    {settings.sandbox}")
    failed = not _model_checks(settings, live)
    for check in iter_checks(settings):
        console.print(f"{MARKS[check.status]} {escape(check.detail)}", soft_wrap=True)
        failed = failed or check.failed
    raise typer.Exit(1 if failed else 0)


def _model_checks(settings: Settings, live: bool) -> bool:
    """The model's configuration, and with `live` one call; False when either fails."""
    if not model_ready(settings):
        console.print(f"{MARKS['fail']} {escape(missing_model_message(settings))}",
                      soft_wrap=True)
        return False
    source = ("FLEET_API_KEY" if settings.api_key
              else f"FLEET_API_BASE {settings.api_base}" if settings.api_base
              else next((n for n in provider_keys(settings.root_model) if os.environ.get(n)),
                        "the provider's own credentials"))
    console.print(f"{MARKS['ok']} model configured: {escape(settings.root_model)} "
                  f"({escape(source)})")
    if not live:
        return True
    from ..server.checks import check_model

    result = check_model(settings)
    detail = f" ({result.detail})" if result.detail and not result.ok else ""
    console.print(f"{MARKS['ok' if result.ok else 'fail']} live call: "
                  f"{escape(result.message)}{escape(detail)}", soft_wrap=True)
    return result.ok
