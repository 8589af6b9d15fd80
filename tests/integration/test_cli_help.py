"""`--help` of every command: options that take a value show its type, flags show none."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from fleet_rlm.cli import app

COMMANDS = [["run"], ["chat"], ["doctor"], ["export"], ["web"], ["bench", "sniah"],
            ["bench", "score"], ["sandbox", "exec"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_no_bool_metavar_on_flags(command, monkeypatch):
    from typer.core import TyperOption

    assert hasattr(TyperOption, "display_type_rich"), "Typer moved display_type_rich"
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "BOOLEAN" not in result.output, result.output
    assert "--help" in result.output


def test_options_with_values_still_show_their_type(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    output = CliRunner().invoke(app, ["run", "--help"]).output
    assert "<path>" in output and "<int>" in output


def test_help_lists_every_command_with_its_help_text(monkeypatch):
    """Commands load on use, yet `fleet --help` lists each, in order, with its own help."""
    import typer

    from fleet_rlm.cli import COMMANDS

    assert list(COMMANDS) == ["doctor", "run", "chat", "export", "serve-mcp", "web", "sandbox",
                              "db", "daytona", "bench", "users", "tokens", "import",
                              "optimize", "programs"]
    monkeypatch.setenv("COLUMNS", "400")
    output = CliRunner().invoke(app, ["--help"]).output
    panel = output[output.index("─ Commands ─"):]
    listed = re.findall(r"^│ (\S+) +(\S.*?) *│$", panel, re.MULTILINE)  # a help's first line
    assert [name for name, _ in listed] == list(COMMANDS), output
    group = typer.main.get_command(app)
    for name, shown in listed:
        command = group.get_command(None, name)  # type: ignore[attr-defined]
        assert command is not None and command.help, name
        assert " ".join(command.help.split()).startswith(shown), (name, shown)


@pytest.mark.parametrize("name", ["doctor", "run", "chat", "export", "serve-mcp", "web",
                                  "sandbox", "db", "daytona", "bench", "users", "tokens",
                                  "import", "optimize", "programs"])
def test_every_command_loads_and_answers_help(name):
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert re.search(rf"Usage: \S+ {name} ", result.output), result.output


def test_a_mistyped_command_is_told_the_nearest_one():
    result = CliRunner().invoke(app, ["rnu"])
    assert result.exit_code == 2
    assert "Did you mean 'run'?" in result.output
