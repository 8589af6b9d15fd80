"""Sandbox benchmark: fleet-rlm's bubblewrap sandbox against dspy's stock Deno/Pyodide interpreter.

    uv run --group bench python benchmarks/sandbox.py [--repeat N] [--slow-repeat M] [--quick]

Both sides run in one process through the same dspy CodeInterpreter calls (start, execute with
variables, host tools); the table shows medians of repeated runs and the ratio ours/stock. Where
gVisor's runsc is installed, start-up and call round trips of FLEET_SANDBOX=gvisor are measured
too and shown beside bubblewrap's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable

from _stock import StockUnavailable, stock_factory
from rich.console import Console
from rich.table import Table

from fleet_rlm.config import Settings
from fleet_rlm.sandbox.gvisor import GVisorSandbox
from fleet_rlm.sandbox.interpreter import SandboxInterpreter
from fleet_rlm.sandbox.local import LocalSandbox

MB = 1 << 20
Make = Callable[..., object]  # make(tools=...) -> a CodeInterpreter
Sampler = tuple[Callable[[], list[float]], Callable[[], None]]  # (take samples, close)


def echo(value):
    return value


def text(size: int) -> str:
    line = "lorem ipsum dolor sit amet, consectetur adipiscing elit\n"
    return (line * (size // len(line) + 1))[:size]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def cold_start(make: Make) -> Sampler:
    """create + start + first trivial exec; shutdown is not timed."""
    def sample() -> list[float]:
        made = []
        seconds = timed(lambda: (made.append(make()), made[0].start(), made[0].execute("x = 1")))
        made[0].shutdown()
        return [seconds]

    return sample, lambda: None


def round_trip(code: str) -> Callable[[Make], Sampler]:
    """Single execute() calls on a warm interpreter, timed one by one in blocks of ten."""
    def open_(make: Make) -> Sampler:
        interp = make(tools={"echo": echo})
        for _ in range(3):  # tool registration, first compile
            interp.execute(code)
        return (lambda: [timed(lambda: interp.execute(code)) for _ in range(10)]), interp.shutdown

    return open_


def with_variable(value: str, iterations: int) -> Callable[[Make], Sampler]:
    """Total wall of `iterations` execute() calls each passing `value`, as dspy.RLM does every
    iteration, on a fresh interpreter (its start untimed)."""
    def sample(make: Make) -> list[float]:
        interp = make()
        try:
            interp.execute("x = 1")
            return [timed(lambda: [interp.execute("n = len(context)", {"context": value})
                                   for _ in range(iterations)])]
        finally:
            interp.shutdown()

    return lambda make: ((lambda: sample(make)), lambda: None)


def measure(open_: Callable[[Make], Sampler], ours: tuple[Make, int],
            stock: tuple[Make, int] | None, notes: list[str]) -> tuple[list[float], list[float]]:
    """Samples of both sides, taken in turns so background load hits both alike.
    Ours fails loud; stock stops at its first failure, which goes to `notes`."""
    mine: list[float] = []
    theirs: list[float] = []
    our_sample, our_close = open_(ours[0])
    their: Sampler | None = None
    if stock is not None:
        try:
            their = open_(stock[0])
        except Exception as exc:  # noqa: BLE001 - say why, keep measuring ours
            notes.append(f"{type(exc).__name__}: {exc}")
    try:
        for i in range(max(ours[1], stock[1] if stock else 0)):
            if i < ours[1]:
                mine += our_sample()
            if their is not None and i < stock[1]:
                try:
                    theirs += their[0]()
                except Exception as exc:  # noqa: BLE001
                    notes.append(f"{type(exc).__name__}: {exc}")
                    their = None
    finally:
        our_close()
        if their is not None:
            their[1]()
    return mine, theirs


# The cases gVisor is measured on: what it changes is the cost of starting and of each call.
GVISOR_CASES = ("cold start (create+start+exec)", "exec round trip (x = 1)",
                "host callback round trip")


def cases(repeat: int, slow: int, quick: bool) -> list[tuple]:
    """(name, open(make) -> (sample, close), runs ours, runs stock, goal for ours/stock)."""
    small, big = text(10 * MB), "" if quick else text(100 * MB)
    rows = [
        ("cold start (create+start+exec)", cold_start, repeat, repeat, None),
        ("exec round trip (x = 1)", round_trip("x = 1"), repeat, repeat, 1 / 20),
        ("host callback round trip", round_trip("echo('ping')"), repeat, repeat, None),
        ("load 10 MB variable (first)", with_variable(small, 1), repeat, repeat, None),
        ("load 100 MB variable (first)", with_variable(big, 1), repeat, slow, None),
        ("10 MB variable x 5 iterations", with_variable(small, 5), repeat, slow, 1 / 5),
    ]
    return [row for row in rows if big or "100 MB" not in row[0]]


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7,
                        help="runs per case; a round-trip run is a block of ten calls")
    parser.add_argument("--slow-repeat", type=int, default=3,
                        help="stock runs for the 100 MB load and the 5-iteration case")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, no 100 MB case")
    args = parser.parse_args()
    repeat, slow = (2, 1) if args.quick else (args.repeat, min(args.slow_repeat, args.repeat))
    console = Console()
    console.width = max(console.width, 140)  # a pipe gets 80 columns otherwise

    settings = Settings()
    load_before = os.getloadavg()[0]

    def ours(tools: dict | None = None) -> SandboxInterpreter:
        return SandboxInterpreter(LocalSandbox(settings), tools=tools)

    def gvisor(tools: dict | None = None) -> SandboxInterpreter:
        return SandboxInterpreter(GVisorSandbox(settings.model_copy(update={"sandbox": "gvisor"})),
                                  tools=tools)

    has_gvisor = shutil.which("runsc") is not None
    warm = ours()  # untimed, like stock's probe: page cache, imports
    warm.execute("x = 1")
    warm.shutdown()
    notes = []
    try:
        stock: Make | None = stock_factory()
    except StockUnavailable as exc:
        stock = None
        notes.append(f"stock not measured: {exc}")

    table = Table(title="fleet-rlm sandbox (bubblewrap + CPython) vs dspy.PythonInterpreter "
                        "(Deno + Pyodide): medians")
    for column in ("case", "ours", "stock", "ours/stock", "goal", "runs ours/stock", "gVisor",
                   "gVisor/ours"):
        table.add_column(column, justify="left" if column == "case" else "right")
    rows = []
    for name, open_, n_ours, n_stock, goal in cases(repeat, slow, args.quick):
        console.print(f"[dim]... {name}[/dim]")
        errors: list[str] = []
        mine, theirs = measure(open_, (ours, n_ours), stock and (stock, n_stock), errors)
        notes += [f"stock failed on {name}: {error}"[:400] for error in errors]
        rows.append((name, open_, n_ours, goal, mine, theirs))
    # gVisor last, in a pass of its own: measured between the others, its runtime slowed the
    # bubblewrap round trips that followed (by half or more).
    in_gvisor: dict[str, float] = {}
    if has_gvisor:
        warm = gvisor()
        warm.execute("x = 1")
        warm.shutdown()
        for name, open_, n_ours, *_ in rows:
            if name in GVISOR_CASES:
                console.print(f"[dim]... {name} (gVisor)[/dim]")
                in_gvisor[name] = statistics.median(
                    measure(open_, (gvisor, n_ours), None, notes)[0])
    for name, _, _, goal, mine, theirs in rows:
        a = statistics.median(mine)
        b = statistics.median(theirs) if theirs else None
        ratio = a / b if b else None
        verdict = "-" if goal is None else f"<= 1/{round(1 / goal)} " + (
            "?" if ratio is None else "met" if ratio <= goal else "MISSED")
        g = in_gvisor.get(name)
        table.add_row(name, fmt(a), fmt(b), "-" if ratio is None else f"1/{1 / ratio:.3g}",
                      verdict, f"{len(mine)}/{len(theirs)}", fmt(g),
                      "-" if g is None else f"{g / a:.3g}x")
    console.print(table)
    for note in notes:
        console.print(f"[yellow]{note}[/yellow]")
    console.print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
                  f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after. Round trips: "
                  "single execute() calls after 3 warm-up calls. Variable cases: a fresh started "
                  "interpreter per run (start untimed). Ours and stock take turns (round trips: "
                  "in blocks of ten).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
