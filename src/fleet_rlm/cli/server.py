"""The servers: `fleet web` (the workspace and its API) and `fleet serve-mcp`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ..config import Settings
from .common import err, with_store


def serve_mcp(
    transport: Annotated[str, typer.Option(help="stdio | http (streamable HTTP at /mcp)")]
    = "stdio",
    host: Annotated[str, typer.Option(help="Address to bind (http).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (http).")] = 8765,
) -> None:
    """Serve the engine and the sessions to other agents over MCP: tools rlm_query, chat,
    list_sessions, get_turn. Over http a bearer token (FLEET_MCP_TOKEN) is required unless the
    server binds to a loopback address."""
    from ..mcp import McpConfigError, check_bind, serve

    if transport not in ("stdio", "http"):
        err.print("[red]error:[/red] --transport must be stdio or http")
        raise typer.Exit(1)
    settings = Settings()
    try:
        check_bind(settings, transport, host)
        if transport == "http":
            auth = "bearer token required" if settings.mcp_token else "no token (loopback only)"
            err.print(f"fleet-rlm MCP server on http://{host}:{port}/mcp ({auth})")
        serve(settings, transport, host, port)
    except (McpConfigError, ImportError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the browser.")] = False,
) -> None:
    """Serve the web workspace and its API (/api/v1, docs at /api/v1/docs).

    Loopback only unless FLEET_AUTH=token: without login, anyone who can reach the port could
    run code in your sandboxes and spend your model budget.
    """
    import threading
    import webbrowser

    import uvicorn

    from ..server import create_app
    from ..server.auth import is_loopback_host
    from ..server.serving import uvicorn_config

    settings = Settings()
    if not is_loopback_host(host) and settings.auth != "token":
        err.print(f"[red]error:[/red] refusing to listen on {host}: without login only "
                  "loopback addresses (127.0.0.1, ::1, localhost) are allowed. Set "
                  "FLEET_AUTH=token and create users and tokens (`fleet users add`, `fleet "
                  "tokens create`) to serve other hosts.")
        raise typer.Exit(1)
    if settings.auth == "token" and (bypass := with_store(lambda s: s.row_security_bypass())):
        err.print(f"[red]error:[/red] refusing to serve tenants: {escape(bypass)}")
        raise typer.Exit(1)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    err.print(f"fleet-rlm web on {url} (auth: {settings.auth})")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, [url]).start()
    uvicorn.Server(uvicorn_config(create_app(settings), settings, host, port,
                                  log_level="info")).run()
