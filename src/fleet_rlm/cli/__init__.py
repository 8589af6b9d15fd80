"""The `fleet` command: the Typer app, its commands and groups each in a module of their own."""

from __future__ import annotations

from typing import Any

import typer

from .admin import db_app, tokens_app, users_app
from .bench import bench_app
from .chat import chat
from .daytona import daytona_app
from .doctor import doctor
from .export import export_command
from .run import run_command
from .sandbox import sandbox_app
from .server import serve_mcp, web


def _flags_without_metavars() -> None:
    """Typer's help shows `<bool>` beside a flag, which takes no value: show nothing there.
    (TyperOption.display_type_rich is Typer's; tests/integration/test_cli_help.py fails if it
    moves.)"""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag and self.metavar is None else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_metavars()
app = typer.Typer(help="fleet-rlm: a workspace for recursive language-model work on DSPy.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
# `fleet --help` lists commands, then groups, each in the order registered here.
app.command("doctor")(doctor)
app.command("run")(run_command)
app.command("chat")(chat)
app.command("export")(export_command)
app.command("serve-mcp")(serve_mcp)
app.command("web")(web)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(db_app, name="db")
app.add_typer(daytona_app, name="daytona")
app.add_typer(bench_app, name="bench")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")


def main() -> None:
    app()
