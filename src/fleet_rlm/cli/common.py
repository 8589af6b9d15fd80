"""What every command shares: the two consoles and the database's error handling."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err = Console(stderr=True)


def database_error(exc: Exception) -> typer.Exit:
    """Print a database failure as one clear line; raise the exit 1 returned."""
    err.print(f"[red]database error:[/red] {escape(f'{type(exc).__name__}: {exc}')}")
    return typer.Exit(1)
