"""The command line starts light: importing it loads no command's module and neither dspy nor
litellm, and `fleet run`, `fleet chat` and `fleet web` print their first line before dspy is
imported. Order, not time: `python -X importtime` writes each import to standard error as it
happens, on the same terminal as the command's own output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from fleet_rlm.cli import COMMANDS
from fleet_rlm.testing import dspy_reply

HEAVY = ("dspy", "litellm", "sqlalchemy", "fastapi", "uvicorn", "fleet_rlm.sessions",
         "fleet_rlm.engine", "fleet_rlm.server.app")


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


def test_importing_the_cli_loads_no_command_and_nothing_heavy():
    loaded = modules_after("import fleet_rlm.cli")
    command_modules = {f"fleet_rlm.cli.{module}" for module, _ in COMMANDS.values()}
    assert not loaded & command_modules, sorted(loaded & command_modules)
    assert not {m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY}, \
        sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY)


@pytest.mark.parametrize(("command", "before_first_line"), [
    ("run", "import fleet_rlm.cli.run, fleet_rlm.cli.render, fleet_rlm.events"),
    ("chat", "import fleet_rlm.cli.chat, fleet_rlm.config"),
    ("web", "import fleet_rlm.cli.server, fleet_rlm.server.local_auth"),
])
def test_what_a_command_imports_before_its_first_line_is_light(command, before_first_line):
    loaded = modules_after(f"from fleet_rlm.cli import app\nimport typer\n"
                           f"group = typer.main.get_command(app)\n"
                           f"group.get_command(None, {command!r})\n{before_first_line}")
    heavy = sorted(m for m in loaded if m in HEAVY or m.split(".")[0] in HEAVY
                   or any(m.startswith(h + ".") for h in HEAVY))
    assert not heavy, heavy
    own = {f"fleet_rlm.cli.{COMMANDS[command][0]}"}
    others = {f"fleet_rlm.cli.{module}" for module, _ in COMMANDS.values()} - own
    assert not loaded & others, sorted(loaded & others)


def env(tmp_path: Path, api_base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(FLEET_ALLOW_UNPRICED_MODELS="true", FLEET_DATA_DIR=str(tmp_path / "data"),
               FLEET_ROOT_MODEL="openai/root", FLEET_SUB_MODEL="openai/sub",
               FLEET_API_KEY="test", FLEET_API_BASE=api_base, TERM="xterm",
               PYTHONUNBUFFERED="1")
    return env


def first_line_then_dspy(tmp_path: Path, api_base: str, args: list[str], first: str,
                         leave: str | None) -> str:
    """What the terminal shows up to `first` (the command's first line); then dspy must be
    imported, and the command is left with the line `leave` (None: it ends by itself; "": it
    is stopped)."""
    child = pexpect.spawn(sys.executable, ["-X", "importtime", "-m", "fleet_rlm.cli", *args],
                          cwd=str(tmp_path), env=env(tmp_path, api_base), encoding="utf-8",
                          timeout=60, dimensions=(40, 200))
    try:
        child.expect(first)
        before = child.before
        child.expect(r"\|\s+dspy\r?\n")
        if leave:
            child.sendline(leave)
        elif leave == "":
            child.kill(15)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    return before


@pytest.mark.slow
@pytest.mark.parametrize(("args", "first", "leave"), [
    (["run", "q"], "starting…", None),
    (["chat"], r"fleet chat(\x1b\[[0-9;]*m)* · openai/root", "/exit"),
    (["web", "--port", "0"], "fleet-rlm web on", ""),
], ids=["run", "chat", "web"])
def test_the_first_line_comes_before_dspy_is_imported(tmp_path, scripted_lm, args, first,
                                                       leave):
    server = scripted_lm([{"model": "root", "reply": dspy_reply(
        reasoning="r", code="SUBMIT(answer='done')")}])
    before = first_line_then_dspy(tmp_path, server.api_base, args, first, leave)
    imported = re.findall(r"\|\s+([\w.]+)\r?$", before, re.MULTILINE)
    assert imported, before  # importtime wrote what was imported before the first line
    assert not [m for m in imported if m.split(".")[0] in ("dspy", "litellm")], imported
    assert "fleet_rlm.cli" in imported
