"""Start-up benchmark: how long `fleet run`, `fleet chat` and `fleet web` take to say something.

    uv run python benchmarks/startup.py [--repeat 5] [--quick]

Each command is launched as a real subprocess (the `fleet` script of this environment) on a
pseudo-terminal, so it draws what it draws for a person: the live view's first frame for `fleet
run`, the header for `fleet chat`, the URL for `fleet web`. The clock starts just before the
launch; "first line" is the first visible text on the terminal (escape sequences removed), and
"ready" is when the command can be used: `fleet run`'s exit with its answer, `fleet chat`'s
prompt, `fleet web`'s "Uvicorn running" line. The model is the scripted LM server in a process of
its own (`fleet run` answers in one iteration, in a real sandbox); the data dir is a temporary
directory; `fleet web` gets a free loopback port. Each command is launched once untimed first
(the store is made, caches are warm), then `--repeat` times. Goal: the first line within 1 s.

A second table splits the imports each command pays for into those before its first line and
those after, each timed in a fresh interpreter, beside what the command line imported before any
command ran when it loaded every command's module up front.
"""

# ruff: noqa: E402 - litellm reads LITELLM_LOCAL_MODEL_COST_MAP when it is first imported
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the commands inherit it

import argparse
import fcntl
import json
import pty
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fleet_rlm.testing import dspy_reply

GOAL_FIRST_LINE_S = 1.0
FLEET = Path(sys.executable).with_name("fleet")
SERVE = "from fleet_rlm.testing.scripted_lm import main; main()"
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][A-Z0-9]")
ROWS, COLUMNS = 40, 120
console = Console(width=max(Console().width, 100))


@dataclass(frozen=True)
class Command:
    name: str
    ready: str  # a regex on the terminal's text: the command can be used
    leave: str | None  # typed once ready (None: SIGTERM, or the command exits by itself)
    imports_before: tuple[str, ...]  # what it imports before its first line
    imports_after: tuple[str, ...]  # what it imports after


COMMANDS = {
    "python": Command("python", r"ready", None, (), ()),  # the floor: an interpreter's start
    "run": Command("run", r"\bdone\b", None,
                   ("fleet_rlm.cli", "fleet_rlm.cli.run", "fleet_rlm.cli.render"),
                   ("fleet_rlm.engine.rlm", "fleet_rlm.sessions.offline")),
    "chat": Command("chat", r"you> ", "/exit\n",
                    ("fleet_rlm.cli", "fleet_rlm.cli.chat", "fleet_rlm.config"),
                    ("fleet_rlm.cli.chat_loop",)),
    "web": Command("web", r"Uvicorn running", None,
                   ("fleet_rlm.cli", "fleet_rlm.cli.server", "fleet_rlm.server.local_auth"),
                   ("uvicorn", "fleet_rlm.server.app", "fleet_rlm.server.serving")),
}
FLEET_COMMANDS = ["run", "chat", "web"]
# Every command's module: what `import fleet_rlm.cli` loaded when commands were registered
# eagerly.
EVERY_COMMAND_MODULE = tuple(f"fleet_rlm.cli.{m}" for m in (
    "admin", "bench", "chat", "daytona", "doctor", "export", "imports", "optimize", "run",
    "sandbox", "server"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def lm_server(tmp: Path) -> Iterator[str]:
    """The scripted LM server in its own process: every root call submits "done" at once."""
    path = tmp / "script.json"
    path.write_text(json.dumps([{"model": "root", "reply": dspy_reply(
        reasoning="r", code="SUBMIT(answer='done')")}]))
    proc = subprocess.Popen([sys.executable, "-c", SERVE, "--script", str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        if not url.startswith("http://"):
            raise RuntimeError(f"the scripted LM server did not start: {url!r}")
        yield f"{url}/v1"
    finally:
        proc.terminate()
        proc.wait()


def argv(command: Command) -> list[str]:
    if command.name == "python":
        return [sys.executable, "-c", "print('ready')"]
    if command.name == "run":
        return [str(FLEET), "run", "What is the answer?"]
    if command.name == "web":
        return [str(FLEET), "web", "--port", str(free_port())]
    return [str(FLEET), command.name]


def launch(command: Command, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """One launch on a pseudo-terminal: seconds to the first visible text and to ready."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    started = time.perf_counter()
    proc = subprocess.Popen(argv(command), stdin=slave, stdout=slave, stderr=slave, env=env,
                            cwd=cwd, start_new_session=True)
    os.close(slave)
    text, first, ready = "", None, None
    try:
        deadline = started + 120
        while ready is None:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"fleet {command.name} was not ready in 120 s:\n{text}")
            readable, _, _ = select.select([master], [], [], 0.5)
            if not readable:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the command exited
                chunk = b""
            now = time.perf_counter()
            if not chunk:
                raise RuntimeError(f"fleet {command.name} exited early "
                                   f"({proc.wait()}):\n{text}")
            text += ESCAPES.sub("", chunk.decode("utf-8", "replace"))
            if first is None and text.strip():
                first = now - started
            if re.search(command.ready, text):
                ready = now - started
        if command.leave is not None:
            os.write(master, command.leave.encode())
        elif command.name == "web":
            proc.send_signal(signal.SIGTERM)
        drain_until_exit(proc, master)
        if command.name != "web" and proc.returncode != 0:
            raise RuntimeError(f"{command.name} exited {proc.returncode}:\n{text}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert first is not None
    return first, ready


def drain_until_exit(proc: subprocess.Popen, master: int, timeout: float = 60) -> None:
    """Read the terminal until the command exits, so it never blocks on a full terminal."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            try:
                os.read(master, 65536)
            except OSError:
                break
    proc.wait(max(deadline - time.monotonic(), 1))


def import_seconds(env: dict[str, str], modules: tuple[str, ...],
                   then: tuple[str, ...] = ()) -> tuple[float, float]:
    """Seconds to import `modules`, then `then` on top of them, in a fresh interpreter."""
    code = ("import importlib, sys, time\n"
            "def load(names):\n"
            "    t = time.perf_counter()\n"
            "    for name in names: importlib.import_module(name)\n"
            "    return time.perf_counter() - t\n"
            f"print(load({list(modules)!r}), load({list(then)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    return float(out[0]), float(out[1])


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed launches per command")
    parser.add_argument("--quick", action="store_true", help="2 launches per command")
    parser.add_argument("--commands", nargs="+", choices=FLEET_COMMANDS, default=FLEET_COMMANDS)
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="compile every module from source at each launch (what "
                        "PYTHONDONTWRITEBYTECODE=1 does on an environment without bytecode)")
    args = parser.parse_args()
    repeat = 2 if args.quick else args.repeat
    load_before = load_average()
    results: dict[str, list[tuple[float, float]]] = {}
    imports: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="fleet-bench-startup-") as tmp_name:
        tmp = Path(tmp_name)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FLEET_", "MLFLOW_", "OTEL_", "PYTHONDONTWRITEBYTECODE"))}
        env.update(FLEET_DATA_DIR=str(tmp / "data"), FLEET_API_KEY="test",
                   FLEET_ROOT_MODEL="openai/root", FLEET_SUB_MODEL="openai/sub",
                   FLEET_ALLOW_UNPRICED_MODELS="true", TERM="xterm-256color",
                   COLUMNS=str(COLUMNS), LINES=str(ROWS),
                   # Bytecode is cached as an installed Python caches it (the untimed launch
                   # writes it), in the temporary directory rather than the tree.
                   PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
        if args.no_bytecode_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        with lm_server(tmp) as api_base:
            env["FLEET_API_BASE"] = api_base
            for name in ["python", *args.commands]:
                launch(COMMANDS[name], env, tmp)  # untimed: the store made, caches warm
                results[name] = [launch(COMMANDS[name], env, tmp) for _ in range(repeat)]
        for name in args.commands:
            command = COMMANDS[name]
            imports[f"fleet {name}"] = [import_seconds(env, command.imports_before,
                                                       command.imports_after)
                                        for _ in range(repeat)]
        imports["fleet_rlm.cli alone (commands load when they run)"] = [
            import_seconds(env, ("fleet_rlm.cli",)) for _ in range(repeat)]
        imports["every command's module (the CLI before lazy loading)"] = [
            import_seconds(env, ("fleet_rlm.cli", *EVERY_COMMAND_MODULE)) for _ in range(repeat)]

    table = Table(title="Start-up on a terminal: launch to first line and to ready — medians "
                        f"of {repeat} launches")
    for column in ("command", "first line", "ready", "goal", "result", "first lines"):
        table.add_column(column, justify="left" if column in ("command", "goal") else "right")
    for name, runs in results.items():
        first = statistics.median(r[0] for r in runs)
        ready = statistics.median(r[1] for r in runs)
        if name == "python":
            label, goal, verdict = "floor: python", "-", ""
        else:
            label, goal = f"fleet {name}", f"first line <= {GOAL_FIRST_LINE_S:g} s"
            verdict = "met" if first <= GOAL_FIRST_LINE_S else "[bold red]MISSED[/bold red]"
        table.add_row(label, f"{first:.2f} s", f"{ready:.2f} s", goal, verdict,
                      " ".join(f"{r[0]:.2f}" for r in runs))
    console.print(table)

    split = Table(title=f"Imports, each timed in a fresh interpreter — medians of {repeat} runs")
    for column in ("what is imported", "before the first line", "after it"):
        split.add_column(column, justify="left" if column == "what is imported" else "right")
    for label, runs in imports.items():
        after = f"{statistics.median(r[1] for r in runs):.2f} s" if label.startswith("fleet ") \
            else "-"
        split.add_row(label, f"{statistics.median(r[0] for r in runs):.2f} s", after)
    console.print(split)
    cache = "off (compiled from source each launch)" if args.no_bytecode_cache else "on"
    console.print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, bytecode cache "
                  f"{cache}, load average {load_before} at the start, {load_average()} at the "
                  "end. First line: the first visible text on the pseudo-terminal; ready: "
                  "fleet run's exit with its answer, fleet chat's prompt, fleet web's 'Uvicorn "
                  "running' line.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
