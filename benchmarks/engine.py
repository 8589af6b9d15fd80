"""Engine benchmark: fleet-rlm's RecursiveRLM against dspy's stock dspy.RLM (Deno + Pyodide).

    uv run --group bench python benchmarks/engine.py [--repeat N] [--quick] [--children]

Both engines play the same scripted root-model replies from one local scripted LM server, in
one process, case by case and side by side; the table shows medians and ratios.
"""

# ruff: noqa: E402 - litellm reads LITELLM_LOCAL_MODEL_COST_MAP when it is first imported
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download

import argparse
import http.client
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dspy
from _stock import StockUnavailable, stock_factory
from _table import Goal, Report, fmt, load_average, times
from dspy.primitives.python_interpreter import PythonInterpreter
from rich.console import Console
from rich.table import Table
from tree_memory import TreeMemory

from fleet_rlm.config import Settings
from fleet_rlm.engine.rlm import BATCH_WORKERS, RecursiveRLM
from fleet_rlm.testing import dspy_reply

# The server writes headers and body in two sends on a keep-alive socket; without TCP_NODELAY
# every reply then waits ~40 ms for the client's delayed ACK, a cost no real provider has.
SERVE = """import sys
from fleet_rlm.testing import scripted_lm
scripted_lm._Handler.disable_nagle_algorithm = True
scripted_lm.main(sys.argv[1:])
"""

MB = 1 << 20
SIGNATURE = "context, question -> answer"
FANOUT, DELAY_S = 64, 0.2
IDEAL_FANOUT_S = FANOUT / BATCH_WORKERS * DELAY_S
FANOUT_GOAL = 1.10  # times the ideal
STEADY_GOAL = 1 / 4  # ours' steady-state overhead per iteration, as a fraction of stock's
NEEDLE = "the secret word is PAPAYA"

BIG = [  # iteration K's code; the last one submits
    "print(len(context))",
    "print(context[:300])",
    "print(context.count('lorem'))",
    f"pos = context.find({NEEDLE!r})\nprint(pos, context[pos:pos + 40])",
    "SUBMIT(answer=context[pos:pos + 40].splitlines()[0].split()[-1])",
]
FAN = [
    f"answers = llm_query_batched([f'item {{i}}' for i in range({FANOUT})])\nprint(len(answers))",
    "SUBMIT(answer=str(len(answers)))",
]
TRIVIAL = [f"x = {k}\nprint(x)" for k in range(1, 10)] + ["SUBMIT(answer=str(x))"]


def haystack(size: int) -> str:
    line = "lorem ipsum dolor sit amet, consectetur adipiscing elit\n"
    body = (line * (size // len(line) + 1))[:size - len(NEEDLE) - 1]
    cut = body.rindex("\n", 0, 2 * len(body) // 3) + 1
    return body[:cut] + NEEDLE + "\n" + body[cut:]


def script(codes: list[str]) -> list[dict]:
    steps = [{"model": "root", "match": rf"\[\[ ## iteration ## \]\]\n{k}/",
              "reply": dspy_reply(reasoning=f"Step {k}.", code=code)}
             for k, code in enumerate(codes, 1)]
    return steps + [{"model": "sub", "match": r"^item \d+$", "reply": "ok",
                     "delay_ms": round(DELAY_S * 1000)}]


@contextmanager
def script_server(rules: list[dict]) -> Iterator[str]:
    """The scripted LM server in its own process, as a provider would be: it must not compete
    with the engine for this process's GIL. Yields its base URL."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "script.json")
        path.write_text(json.dumps(rules))
        proc = subprocess.Popen([sys.executable, "-c", SERVE, "--script", str(path)],
                                stdout=subprocess.PIPE, text=True)
        try:
            url = proc.stdout.readline().strip()
            check("server", url.startswith("http://"), f"did not start: {url!r}")
            yield url
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            stats = json.load(opener.open(url + "/_stats"))
            check("server", not stats["unexpected"], str(stats["unexpected_calls"]))
        finally:
            proc.terminate()
            proc.wait()


def bare_fanout(lm: dspy.LM, threads: int) -> float:
    """The same batch straight through one dspy.LM on a thread pool: no engine, dspy's client
    path (its connections stay open between runs, as ours do)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lm, [f"item {i}" for i in range(FANOUT)]))
    return time.perf_counter() - started


class PlainClient:
    """The same batch as plain HTTP requests over keep-alive connections kept between runs:
    the floor any client in this process stands on (the server's own time included)."""

    def __init__(self, api_base: str) -> None:
        self.host, port = api_base.split("//", 1)[1].split("/", 1)[0].split(":")
        self.port = int(port)
        self.idle: queue.SimpleQueue[http.client.HTTPConnection] = queue.SimpleQueue()

    def call(self, prompt: str) -> str:
        try:
            conn = self.idle.get_nowait()
        except queue.Empty:
            conn = http.client.HTTPConnection(self.host, self.port)
        body = json.dumps({"model": "sub", "messages": [{"role": "user", "content": prompt}]})
        conn.request("POST", "/v1/chat/completions", body,
                     {"Content-Type": "application/json", "Authorization": "Bearer x"})
        reply = json.loads(conn.getresponse().read())
        self.idle.put(conn)
        return reply["choices"][0]["message"]["content"]

    def fanout(self, threads: int) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            answers = list(pool.map(self.call, [f"item {i}" for i in range(FANOUT)]))
        elapsed = time.perf_counter() - started
        check("plain client", answers == ["ok"] * FANOUT, repr(answers[:3]))
        return elapsed


@dataclass
class Sample:
    wall: float  # the whole run, sandbox start and shutdown included
    calls: list[tuple[float, float]]  # (end as Unix time, latency) of each root model call
    cells: dict[str, float] = field(default_factory=dict)  # code -> wall time of its execute()

    @property
    def lm(self) -> float:
        return sum(latency for _, latency in self.calls)

    @property
    def overhead(self) -> float:
        return self.wall - self.lm

    @property
    def steady(self) -> float:
        """Per iteration from the first model reply to the last: sandbox start left out."""
        between = self.calls[-1][0] - self.calls[0][0] - sum(lat for _, lat in self.calls[1:])
        return between / (len(self.calls) - 1)


def run_ours(api_base: str, codes: list[str], inputs: dict, expect: str) -> Sample:
    settings = Settings(root_model="openai/root", sub_model="openai/sub", api_base=api_base,
                        max_iterations=len(codes), allow_unpriced_models=True)
    started = time.perf_counter()
    out = RecursiveRLM(SIGNATURE, settings=settings, program=None)(**inputs)  # no store read
    wall = time.perf_counter() - started
    check("ours", out.status == "ok" and out.answer == expect, f"{out.status} {out.error} "
          f"{out.answer!r}")
    calls = [(e.ts, e.latency_s) for e in out.events if e.type == "lm_call" and e.role == "root"]
    cells, code, begun = {}, None, 0.0
    for event in out.events:  # host time included: from the parsed action to its reported output
        if event.type == "rlm_iteration":
            code, begun = event.code, event.ts
        elif event.type == "code_output":
            cells[code] = event.ts - begun
    return Sample(wall, calls, cells)


class TimedLM(dspy.LM):
    """dspy.LM that records (end, latency) of its calls, like our lm_call events."""

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self.calls.append((time.time(), time.perf_counter() - started))


class StockRLM(dspy.RLM):
    """Stock dspy.RLM with its llm_query_batched at our concurrency (its default is 8)."""

    def _make_llm_tools(self, budget=None, max_workers: int = 8):
        return super()._make_llm_tools(budget, max_workers=BATCH_WORKERS)


def run_stock(make: Callable, api_base: str, codes: list[str], inputs: dict,
              expect: str) -> Sample:
    cells: dict[str, float] = {}

    def factory():
        interpreter = make()
        execute = interpreter.execute

        def timed(code, *args, **kwargs):
            started = time.perf_counter()
            try:
                return execute(code, *args, **kwargs)
            finally:
                cells[code] = time.perf_counter() - started

        interpreter.execute = timed
        return interpreter

    factory.execution_instructions = PythonInterpreter.execution_instructions
    lm = TimedLM("openai/root", api_base=api_base, api_key="x", cache=False)
    lm.calls = []
    sub = dspy.LM("openai/sub", api_base=api_base, api_key="x", cache=False)
    rlm = StockRLM(SIGNATURE, max_iters=len(codes), max_llm_calls=200, sub_lm=sub,
                   interpreter_factory=factory)  # 200 = our default; stock's 50 < FANOUT
    started = time.perf_counter()
    with dspy.context(lm=lm):
        out = rlm(**inputs)
    wall = time.perf_counter() - started
    check("stock", out.answer == expect, repr(out.answer))
    return Sample(wall, lm.calls, cells)


def check(engine: str, ok: bool, detail: str) -> None:
    if not ok:
        raise RuntimeError(f"{engine} run went off script: {detail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per engine and case")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 timed run per case")
    parser.add_argument("--children", action="store_true",
                        help="only the child-RLM table (ours alone)")
    parser.add_argument("--child-case", nargs=3, metavar=("API_BASE", "K", "WHAT"),
                        help=argparse.SUPPRESS)  # one measured child-RLM run, in a new process
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    console = Console()
    console.width = max(console.width, 132)  # a pipe gets 80 columns otherwise
    console.print(f"[dim]{load_average()} at the start[/dim]")
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    if args.child_case:
        api_base, k, what = args.child_case
        print(json.dumps(child_case(api_base, int(k), what)))
        return 0
    if args.children:
        child_rlm_table(console, repeat)
        return 0
    report = Report("Engine: fleet-rlm RecursiveRLM (bubblewrap + CPython) vs stock dspy.RLM "
                    "(Deno + Pyodide) - medians")
    try:
        stock: Callable | None = stock_factory()
    except StockUnavailable as exc:
        stock = None
        report.notes.append(f"stock not measured: {exc}")

    big = {"context": haystack(10 * MB), "question": "What is the secret word?"}
    small = {"context": "a short context", "question": "How many?"}
    cases = [("10 MB context, 5 iterations", BIG, big, "PAPAYA"),
             (f"fan-out: {FANOUT} llm_query_batched @ {DELAY_S * 1e3:.0f} ms", FAN, small,
              str(FANOUT)),
             ("10 trivial iterations, 0 ms LM", TRIVIAL, small, "9")]
    results: dict[str, tuple[list[Sample], list[Sample]]] = {}
    for name, codes, inputs, expect in cases:
        console.print(f"[dim]… {name}[/dim]")
        with script_server(script(codes)) as url:
            api_base, fan = url + "/v1", codes is FAN
            dspy_lm = dspy.LM("openai/sub", api_base=api_base, api_key="x", cache=False)
            plain = PlainClient(api_base)
            ours_runs: list[Sample] = []
            stock_runs: list[Sample] = []
            for _ in range(repeat + 1):  # run 0 warms both up (imports, first sandbox) untimed
                ours_runs.append(run_ours(api_base, codes, inputs, expect))
                if fan:  # the floors, between the engines' runs: the same load hits all
                    ours_runs[-1].cells["dspy.LM"] = bare_fanout(dspy_lm, BATCH_WORKERS)
                    ours_runs[-1].cells["plain"] = plain.fanout(BATCH_WORKERS)
                if stock is None:
                    continue
                try:
                    stock_runs.append(run_stock(stock, api_base, codes, inputs, expect))
                except Exception as exc:  # noqa: BLE001 - report, keep measuring ours
                    report.notes.append(f"stock failed on {name}: {type(exc).__name__}: "
                                        f"{exc}"[:400])
                    stock = None
        results[codes[0]] = (ours_runs[1:], stock_runs[1:])  # by the case's first cell

    def row(label: str, runs: tuple[list[Sample], list[Sample]], pick: Callable[[Sample], float],
            goal: Goal | None = None, note: Callable[[float], str] | None = None) -> None:
        ours = statistics.median(pick(s) for s in runs[0])
        theirs = statistics.median(pick(s) for s in runs[1]) if runs[1] else None
        report.row(label, ours, theirs, goal, note(ours) if note else "")

    def ideal(seconds: float) -> str:
        return f"{seconds / IDEAL_FANOUT_S:.3g}x ideal"

    big_runs, fan_runs, trivial_runs = results[BIG[0]], results[FAN[0]], results[TRIVIAL[0]]
    floors = (fan_runs[0], [])  # the floors are figures of this process, not of an engine
    row("10 MB, 5 iterations: wall", big_runs, lambda s: s.wall, Goal.fraction_of_stock(1 / 5))
    row("  minus root LM latency", big_runs, lambda s: s.overhead)
    row("  exec: print(len(context))", big_runs, lambda s: s.cells[BIG[0]])
    row(f"fan-out cell, {BATCH_WORKERS} workers both", fan_runs, lambda s: s.cells[FAN[0]],
        Goal.at_most(FANOUT_GOAL * IDEAL_FANOUT_S, f"ours <= {FANOUT_GOAL:.2f}x ideal "
                     f"{IDEAL_FANOUT_S:.1f} s"), ideal)
    row(f"  floor: dspy.LM, {BATCH_WORKERS} threads", floors, lambda s: s.cells["dspy.LM"],
        note=ideal)
    row(f"  floor: plain HTTP client, {BATCH_WORKERS} threads", floors,
        lambda s: s.cells["plain"], note=ideal)
    row("overhead / iteration, steady state", trivial_runs, lambda s: s.steady,
        Goal.fraction_of_stock(STEADY_GOAL))
    row("  with sandbox start (wall - LM) / 10", trivial_runs, lambda s: s.overhead / 10)
    row("  10 iterations: wall", trivial_runs, lambda s: s.wall)
    row("  root LM latency / call", trivial_runs, lambda s: s.lm / 10)
    report.print(console)
    n = f"{len(big_runs[0])}/{len(big_runs[1])}"
    console.print(
        f"python {sys.version.split()[0]}, dspy {dspy.__version__}; n ours/stock = {n} timed runs "
        "per case after one untimed warm-up. Wall includes sandbox start and shutdown. Cells are "
        "the wall time of one execute() including host callbacks (ours: rlm_iteration to "
        "code_output event). Both engines' llm_query_batched run 16 at a time; the floors make "
        "the same 64 calls on 16 threads without an engine, between the engines' runs. "
        "Overhead = wall minus root LM call time; 'steady state' spans first to last root "
        "reply, so sandbox start is left out. The scripted LM server runs in its own process "
        "with TCP_NODELAY.")
    child_rlm_table(console, repeat)
    return 0


CHILDREN = (1, 4, 8)
CHILD_CODE = "found = context.count('lorem')  # every page read\nSUBMIT(answer=str(len(context)))"


def child_rlm_script() -> list[dict]:
    """The root hands its context (or a short text) to k children at once; each child reads
    all of it and answers its length in one step."""
    rules = [{"model": "root", "match": rf"k={k} {what}\.\n.*\[\[ ## iteration ## \]\]\n1/",
              "reply": dspy_reply(reasoning="Fan out.", code=(
                  f"answers = rlm_query_batched(['count'] * {k}, "
                  f"[{'context' if what == 'shared' else repr('c')}] * {k})\n"
                  "SUBMIT(answer=','.join(answers))"))}
             for k in CHILDREN for what in ("shared", "short")]
    return rules + [{"model": "root", "match": r"Variable: `query`.*## iteration ## \]\]\n1/",
                     "reply": dspy_reply(reasoning="Count.", code=CHILD_CODE)}]


def child_case(api_base: str, k: int, what: str) -> tuple[float, int]:
    """In a process of its own (so no earlier run's memory is reused): one untimed run with one
    child, then the measured one. Wall time and peak memory (PSS of this process and every
    process under it, above what it held before) of the root and its k children."""
    context = haystack(10 * MB)
    settings = Settings(root_model="openai/root", sub_model="openai/sub", api_base=api_base,
                        max_iterations=2, allow_unpriced_models=True)
    for run_k, run_what in ((1, "short"), (k, what)):
        rlm = RecursiveRLM(SIGNATURE, settings=settings, program=None)
        with TreeMemory() as memory:
            started = time.perf_counter()
            out = rlm(context=context, question=f"k={run_k} {run_what}.")
            wall = time.perf_counter() - started
        size = str(len(context) if run_what == "shared" else 1)
        check("ours", out.status == "ok" and out.answer == ",".join([size] * run_k),
              f"{out.status} {out.error} {str(out.answer)[:200]!r}")
    return wall, memory.peak_above_start


def run_children(api_base: str, k: int, what: str) -> tuple[float, int]:
    done = subprocess.run([sys.executable, __file__, "--child-case", api_base, str(k), what],
                          capture_output=True, text=True, check=False)
    check("ours", done.returncode == 0, done.stderr[-2000:])
    wall, peak = json.loads(done.stdout.splitlines()[-1])
    return wall, peak


def child_rlm_table(console: Console, repeat: int) -> None:
    """Child RLMs on a 10 MiB context, k at a time, each child handed the root's context, beside
    the same run whose children get a one-character context (each sandbox's own baseline)."""
    console.print("[dim]… child RLMs[/dim]")
    runs: dict[tuple[int, str], list[tuple[float, int]]] = {}
    with script_server(child_rlm_script()) as url:
        for _ in range(repeat):  # interleaved, so load from elsewhere hits every case alike
            for k in CHILDREN:
                for what in ("shared", "short"):
                    runs.setdefault((k, what), []).append(run_children(url + "/v1", k, what))

    def med(k: int, what: str, index: int) -> float:
        return statistics.median(sample[index] for sample in runs[(k, what)])

    def mib(n: float) -> str:
        return f"{n / MB:.0f} MiB"

    one_wall, one_extra = med(1, "shared", 0), med(1, "shared", 1) - med(1, "short", 1)
    table = Table(title="Child RLMs on a 10 MiB context: rlm_query_batched to k children, each "
                        "given the root's context — medians")
    for column in ("k", "wall", "wall / k=1", "wall at baseline", "memory", "memory at baseline",
                   "memory beyond baseline", "more than k=1", "goal", "result"):
        table.add_column(column, justify="left" if column == "goal" else "right")
    for k in CHILDREN:
        wall, peak, base = med(k, "shared", 0), med(k, "shared", 1), med(k, "short", 1)
        extra = peak - base
        if k == CHILDREN[-1]:
            ok_time, ok_memory = wall <= 1.3 * one_wall, extra - one_extra <= 30 * MB
            goal = "<= 1.3x the wall of k=1; <= 30 MiB more than k=1 beyond baseline"
            result = (f"time {'met' if ok_time else '[bold red]MISSED[/bold red]'}, memory "
                      f"{'met' if ok_memory else '[bold red]MISSED[/bold red]'}")
        else:
            goal, result = "-", ""
        table.add_row(str(k), fmt(wall), times(wall / one_wall), fmt(med(k, "short", 0)),
                      mib(peak), mib(base), mib(extra), mib(extra - one_extra), goal, result)
    console.print(table)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(
        f"n = {repeat} timed runs per row, each in a new process after an untimed run with one "
        f"child; load average {load}. Wall: "
        "the whole call, every sandbox's start included. Memory: peak PSS of this process and "
        "every process under it (sandboxes included; pages shared between them counted once), "
        "above what they held before the run, sampled every 20 ms. 'At baseline': the same run "
        "whose children get a one-character context (each child sandbox's own cost); 'beyond "
        "baseline' is the difference, what handing the context to the children costs.")


if __name__ == "__main__":
    sys.exit(main())
