"""Large values benchmark: what a value's size costs crossing the sandbox boundary.

    uv run --group bench python benchmarks/values.py [--repeat N] [--quick]

Rows: a host-callback argument of 10 MiB and of 80 MiB (beyond the 32 MiB frame limit) and
their ratio; a context of two 50 MiB documents (a dict, as `fleet run -c a -c b` passes) over
five iterations beside the same bytes as one document; the peak memory of a whole 100 MiB
single-document run, host and every sandbox process together. Each goal is printed met or
missed, with the load average.
"""

# ruff: noqa: E402 - litellm reads LITELLM_LOCAL_MODEL_COST_MAP when it is first imported
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from fleet_rlm.config import Settings
from fleet_rlm.sandbox.interpreter import SandboxInterpreter
from fleet_rlm.sandbox.local import LocalSandbox

MB = 1 << 20
LINE = "lorem ipsum dolor sit amet, consectetur adipiscing elit\n"
NEEDLE = "the secret word is PAPAYA"
ITERATIONS = 5


def text(size: int, needle: bool = False) -> str:
    """`size` characters of text, built with one copy at most (a list of one line, joined)."""
    count = (size - (len(NEEDLE) + 1 if needle else 0)) // len(LINE)
    parts = [LINE] * count
    if needle:
        parts.insert(2 * count // 3, NEEDLE + "\n")
    parts.append("x" * (size - count * len(LINE) - (len(NEEDLE) + 1 if needle else 0)))
    return "".join(parts)


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def met(ok: bool) -> str:
    return "met" if ok else "[bold red]MISSED[/bold red]"


# -- callback arguments ---------------------------------------------------------------------
def callback_seconds(size: int, repeat: int) -> list[float]:
    """A cell passing a `size`-character string to a host function (which takes its length);
    the string is made by an earlier, untimed cell. Timed: the whole execute()."""
    box = LocalSandbox(Settings())
    samples = []
    try:
        box.start()
        box.execute(f"s = 'a' * {size}")
        for _ in range(repeat + 1):  # the first is a warm-up
            started = time.perf_counter()
            result = box.execute("n = measure(s)", callbacks={"measure": len})
            samples.append(time.perf_counter() - started)
            assert result.ok, result.traceback
        assert box.execute("print(n)").stdout == f"{size}\n"
    finally:
        box.close()
    return samples[1:]


# -- unchanged inputs -----------------------------------------------------------------------
def iterations_seconds(context: object, repeat: int) -> list[tuple[float, float]]:
    """(wall of ITERATIONS execute() calls each passing `context`, as dspy.RLM does every
    iteration; the mean of the calls after the first), on a fresh interpreter (start untimed)."""
    samples = []
    for _ in range(repeat):
        interpreter = SandboxInterpreter(LocalSandbox(Settings()))
        try:
            interpreter.execute("x = 1")
            times = []
            for _ in range(ITERATIONS):
                started = time.perf_counter()
                interpreter.execute("n = len(context)", {"context": context})
                times.append(time.perf_counter() - started)
            samples.append((sum(times), statistics.mean(times[1:])))
        finally:
            interpreter.shutdown()
    return samples


# -- memory of a whole run ------------------------------------------------------------------
CHILD = "--memory-child"


def memory_child(api_base: str, size: int) -> None:
    """One 100 MiB single-document run of the engine, as `fleet run -c` would make it."""
    from fleet_rlm.engine.rlm import RecursiveRLM

    context = text(size, needle=True)
    settings = Settings(root_model="openai/root", sub_model="openai/sub", api_base=api_base,
                        max_iterations=ITERATIONS, allow_unpriced_models=True)
    out = RecursiveRLM("context, question -> answer", settings=settings, program=None)(
        context=context, question="What is the secret word?")
    assert out.answer == "PAPAYA", (out.status, out.error, out.answer)


def _tree(root: int) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    todo += map(int, children.read().split())
        except OSError:
            continue
    return found


def _field(path: str, name: str) -> int:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_memory(size: int) -> tuple[int, int, int]:
    """Run memory_child in a process of its own and sample its whole process tree (the host
    process, bwrap, the sandbox's supervisor and worker) every 5 ms: (the highest sum of PSS
    seen at one instant, the sum of each process's RSS high-water mark, processes seen)."""
    sys.path.insert(0, os.path.dirname(__file__))
    from engine import BIG, script, script_server

    with script_server(script(BIG)) as url:
        child = subprocess.Popen([sys.executable, __file__, CHILD, url + "/v1", str(size)])
        peak, marks = 0, {}
        while child.poll() is None:
            pids = _tree(child.pid)
            peak = max(peak, sum(_field(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids))
            for pid in pids:
                marks[pid] = max(marks.get(pid, 0), _field(f"/proc/{pid}/status", "VmHWM:"))
            time.sleep(0.005)
        if child.returncode:
            raise RuntimeError(f"the run failed ({child.returncode})")
    return peak, sum(marks.values()), len(marks)


def main() -> int:
    if sys.argv[1:2] == [CHILD]:
        memory_child(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 runs per case")
    args = parser.parse_args()
    repeat = 2 if args.quick else args.repeat
    console = Console()
    console.width = max(console.width, 130)
    load_before = os.getloadavg()[0]
    table = Table(title="Large values across the sandbox boundary (bubblewrap): medians")
    for column in ("case", "value", "ratio", "goal", "result"):
        table.add_column(column, justify="left" if column in ("case", "goal") else "right")

    def timed(name: str, run: Callable[[], list]) -> list:
        console.print(f"[dim]... {name}[/dim]")
        return run()

    small = statistics.median(timed("callback 10 MiB", lambda: callback_seconds(10 * MB, repeat)))
    large = statistics.median(timed("callback 80 MiB", lambda: callback_seconds(80 * MB, repeat)))
    table.add_row("host-callback argument, 10 MiB", fmt(small), "", "", "")
    table.add_row("host-callback argument, 80 MiB", fmt(large), f"{large / small:.3g}x",
                  "80 MiB <= 10x 10 MiB", met(large <= 10 * small))

    multi = timed("2 x 50 MiB documents", lambda: iterations_seconds(
        {"a.txt": text(50 * MB), "b.txt": text(50 * MB)}, repeat))
    single = timed("1 x 100 MiB document", lambda: iterations_seconds(text(100 * MB), repeat))
    walls = [statistics.median(s[0] for s in runs) for runs in (multi, single)]
    later = [statistics.median(s[1] for s in runs) for runs in (multi, single)]
    table.add_row(f"2 x 50 MiB documents, {ITERATIONS} iterations: wall", fmt(walls[0]),
                  f"{walls[0] / walls[1]:.3g}x", "<= 1.5x one document", met(
                      walls[0] <= 1.5 * walls[1]))
    table.add_row("  one 100 MiB document, same bytes", fmt(walls[1]), "", "", "")
    table.add_row("  2 x 50 MiB: each iteration after the first", fmt(later[0]), "",
                  "unchanged: <= 10 ms", met(later[0] <= 0.010))
    table.add_row("  one document: each iteration after the first", fmt(later[1]), "", "", "")

    console.print("[dim]... peak memory, 100 MiB run[/dim]")
    pss, marks, processes = peak_memory(100 * MB)
    table.add_row("100 MiB single-document run: peak PSS, whole tree", f"{pss / MB:.0f} MiB",
                  f"{pss / (100 * MB):.2f}x", "<= 3x the context", met(pss <= 300 * MB))
    table.add_row("  sum of each process's RSS high-water mark", f"{marks / MB:.0f} MiB",
                  f"{marks / (100 * MB):.2f}x", "", "")
    console.print(table)
    console.print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {repeat} runs per timed "
        f"case. Callback: execute() of a cell passing a string made by an earlier cell to a "
        f"host function. Iterations: {ITERATIONS} execute() calls each passing the context, "
        "sandbox start untimed. Memory: one engine run (RecursiveRLM, five scripted "
        f"iterations, the scripted LM server outside the tree) in a process of its own; PSS "
        f"summed over its {processes} processes every 5 ms (host, bwrap, the sandbox's "
        "supervisor and worker), baseline included.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
