"""The `fleet` command: the Typer app, its commands and groups each in a module of their own.

A command's module is imported only when that command runs (or a help page lists it): `fleet
run` does not pay for the server, the store or the optimiser before its first line."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import typer
from typer.core import TyperGroup

# Name → (module in this package, its command function or Typer group). `fleet --help` lists
# them in this order: commands, then groups.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "doctor"),
    "run": ("run", "run_command"),
    "chat": ("chat", "chat"),
    "export": ("export", "export_command"),
    "serve-mcp": ("server", "serve_mcp"),
    "web": ("server", "web"),
    "sandbox": ("sandbox", "sandbox_app"),
    "db": ("admin", "db_app"),
    "daytona": ("daytona", "daytona_app"),
    "bench": ("bench", "bench_app"),
    "users": ("admin", "users_app"),
    "tokens": ("admin", "tokens_app"),
    "import": ("imports", "import_app"),
    "optimize": ("optimize", "optimize_app"),
    "programs": ("optimize", "programs_app"),
}


def _flags_without_metavars() -> None:
    """Typer's help shows `<bool>` beside a flag, which takes no value: show nothing there.
    (TyperOption.display_type_rich is Typer's; tests/integration/test_cli_help.py fails if it
    moves.)"""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag and self.metavar is None else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def _group_holding(name: str) -> TyperGroup:
    """A group holding the command `name`, built from its module just as registering it on the
    app would have built it."""
    module, attribute = COMMANDS[name]
    target = getattr(import_module(f"{__name__}.{module}"), attribute)
    holder = typer.Typer(rich_markup_mode=app.rich_markup_mode,
                         pretty_exceptions_short=app.pretty_exceptions_short)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder)


class LazyGroup(TyperGroup):
    """`fleet` itself: knows its commands by name and loads each on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            self.commands.update(_group_holding(cmd_name).commands)
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in COMMANDS:  # a typo: "did you mean" looks at every command
            for name in COMMANDS:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


_flags_without_metavars()
app = typer.Typer(cls=LazyGroup, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="fleet-rlm: a workspace for recursive language-model work on DSPy.")


@app.callback()
def _fleet() -> None:
    """A group needs a callback; its commands do the work."""


def main() -> None:
    app()
