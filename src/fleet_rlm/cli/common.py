"""What every command shares: the two consoles and the store's error handling."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from ..config import Settings

console = Console()
err = Console(stderr=True)


def database_error(exc: Exception) -> typer.Exit:
    """Print a database failure as one clear line; raise the exit 1 returned."""
    err.print(f"[red]database error:[/red] {escape(f'{type(exc).__name__}: {exc}')}")
    return typer.Exit(1)


def with_store(action, url: str | None = None) -> str:
    """Run `await action(store)` on the configured store (or the database at `url`); a failure
    is a message and exit 1."""
    import asyncio

    from ..store import Store

    async def run() -> str:
        settings = Settings()
        async with Store(url or settings.database_url, settings.data_dir) as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except Exception as exc:  # noqa: BLE001 - a clear message, exit 1
        raise database_error(exc) from None
