"""`--help` of every command: options that take a value show its type, flags show none."""

from __future__ import annotations

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
