"""The servers: `fleet web` (the workspace and its API) and `fleet serve-mcp`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.markup import escape

from ..config import Settings
from .common import database_error, err

if TYPE_CHECKING:
    from ..mcp import Transport


def serve_mcp(
    transport: Annotated[str, typer.Option(help="stdio | http (streamable HTTP at /mcp)")]
    = "stdio",
    host: Annotated[str, typer.Option(help="Address to bind (http).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (http).")] = 8765,
) -> None:
    """Serve the engine and the sessions to other agents over MCP: tools rlm_query, chat,
    list_sessions, get_turn. Over http every request carries a bearer token, on loopback too:
    the server's (FLEET_MCP_TOKEN, else generated and printed at start) or a user's API token.
    rlm_query reads files only under FLEET_MCP_ROOTS (default: none over http, the working
    directory over stdio)."""
    from ..mcp import McpConfigError, roots_for, serve, with_server_token

    if transport not in ("stdio", "http"):
        err.print("[red]error:[/red] --transport must be stdio or http")
        raise typer.Exit(1)
    settings = Settings()
    try:
        mode = cast("Transport", transport)  # checked above
        roots = roots_for(settings, mode)
        if transport == "http":
            refuse_row_security_bypass(settings)
            generated = not settings.mcp_token
            settings = with_server_token(settings)
            token = (f"{settings.mcp_token} (new at each start; FLEET_MCP_TOKEN fixes it)"
                     if generated else "FLEET_MCP_TOKEN")
            err.print(f"fleet-rlm MCP server on http://{host}:{port}/mcp\n"
                      f"token (Authorization: Bearer ...): {token}; a user's API token works "
                      "too\nrlm_query reads files under: "
                      f"{', '.join(map(str, roots)) or 'nothing (FLEET_MCP_ROOTS)'}",
                      soft_wrap=True, markup=False)
        serve(settings, mode, host, port)
    except (McpConfigError, ImportError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def refuse_row_security_bypass(settings: Settings) -> None:
    """Serving tenants (FLEET_AUTH=token) on PostgreSQL as a role that row-level security does
    not bind is refused, with how to make a role it does."""
    if settings.auth != "token":
        return
    import asyncio

    from ..sessions.offline import row_security_bypass

    try:
        bypass = asyncio.run(row_security_bypass(settings))
    except Exception as exc:  # noqa: BLE001 - a clear message, exit 1
        raise database_error(exc) from None
    if bypass:
        err.print(f"[red]error:[/red] refusing to serve tenants: {escape(bypass)}")
        raise typer.Exit(1)


def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the browser.")] = False,
) -> None:
    """Serve the web workspace and its API (/api/v1, docs at /api/v1/docs).

    Every request carries a token, even on loopback: by default (FLEET_AUTH=local) the server's
    own, printed here as a URL that signs the browser in (FLEET_TOKEN fixes it; otherwise it is
    new at each start). FLEET_AUTH=token serves users and their API tokens on any address;
    FLEET_AUTH=none drops the token: any local user could then run code in your sandboxes and
    spend your model budget.
    """
    import threading

    from ..server.local_auth import is_loopback_host, with_server_token

    settings = with_server_token(Settings())
    if not is_loopback_host(host) and settings.auth != "token":
        err.print(f"[red]error:[/red] refusing to listen on {host}: without users and tokens "
                  "only loopback addresses (127.0.0.1, ::1, localhost) are allowed. Set "
                  "FLEET_AUTH=token and create users and tokens (`fleet users add`, `fleet "
                  "tokens create`) to serve other hosts.")
        raise typer.Exit(1)
    refuse_row_security_bypass(settings)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    if settings.auth == "local":
        url += f"?token={settings.token}"
        err.print(f"fleet-rlm web on {url}\n(open this URL to sign the browser in; the token "
                  "changes at each start unless FLEET_TOKEN is set)", soft_wrap=True)
    elif settings.auth == "token":
        err.print(f"fleet-rlm web on {url} (auth: users' API tokens, `fleet tokens create`)")
    else:
        err.print(f"fleet-rlm web on {url}\n[yellow]warning:[/yellow] FLEET_AUTH=none: no "
                  "token, so every local user of this machine can use this workspace (its "
                  "sessions, sandboxes and model budget); settings are read-only. Unset "
                  "FLEET_AUTH to require a token.", soft_wrap=True)
    if open_browser:
        threading.Timer(1.0, open_in_browser, [url]).start()
    import uvicorn  # the app, the session service and dspy: after the URL is on screen

    from ..server import create_app
    from ..server.serving import uvicorn_config

    uvicorn.Server(uvicorn_config(create_app(settings), settings, host, port,
                                  log_level="info")).run()


def open_in_browser(url: str) -> None:
    """Open `url` through a page only this user can read that redirects to it: a browser's
    command line, which other local users can see, never holds the token."""
    import html
    import tempfile
    import webbrowser
    from pathlib import Path

    fd, name = tempfile.mkstemp(prefix="fleet-web-", suffix=".html")  # mode 0600
    with open(fd, "w", encoding="utf-8") as page:
        target = html.escape(url, quote=True)
        page.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={target}">'
                   f'<a href="{target}">fleet-rlm</a>')
    webbrowser.open(Path(name).as_uri())
