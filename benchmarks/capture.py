"""Call store benchmark: what keeping every model call costs, in time per call and bytes on disk.

    uv run python benchmarks/capture.py [--iterations 20] [--document-mb 1] [--repeat 5] [--quick]

A run of `--iterations` calls, each sending the same document (`--document-mb` of text) and a
history that grows by a step per call, as an RLM's iterations do. Side by side: the call store
(`store/calls.py`: long texts cut into chunks kept once, redacted) and the plain way (each call's
request and reply written whole as one JSON file, redacted too). Medians of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fleet_rlm.capture import CapturedCall
from fleet_rlm.redaction import redact
from fleet_rlm.store.calls import CallStore

console = Console()
WORDS = ["alpha", "beta", "gamma", "delta", "needle", "hay", "stack", "river", "stone", "cloud"]


def text(chars: int, seed: int) -> str:
    rng = random.Random(seed)
    lines, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) + "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)


def calls(iterations: int, document: str) -> list[CapturedCall]:
    history, made = "", []
    for k in range(iterations):
        history += f"step {k}:\n" + text(3000, seed=k + 1)
        made.append(CapturedCall(f"c{k}", "turn", "node", "root", "openai/root", {},
                                 [{"role": "system", "content": "You are an RLM."},
                                  {"role": "user", "content": document + history}],
                                 reply=text(800, seed=1000 + k)))
    return made


def size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def chunked(made: list[CapturedCall], root: Path) -> list[float]:
    store, times = CallStore(root), []
    for call in made:
        started = time.perf_counter()
        assert store.save(call) is None
        times.append(time.perf_counter() - started)
    return times


def whole(made: list[CapturedCall], root: Path) -> list[float]:
    root.mkdir(parents=True, exist_ok=True)
    times = []
    for call in made:
        started = time.perf_counter()
        (root / f"{call.call_id}.json").write_text(redact(json.dumps(call.as_dict())))
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--document-mb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.document_mb, args.repeat = 5, 0.2, 2
    made = calls(args.iterations, text(int(args.document_mb * 1024 * 1024), seed=0))
    results: dict[str, dict[str, list[float]]] = {"call store": {}, "whole JSON": {}}
    for _ in range(args.repeat):  # the two take turns, run by run
        for name, keep in (("call store", chunked), ("whole JSON", whole)):
            with tempfile.TemporaryDirectory() as tmp:
                times = keep(made, Path(tmp) / "calls")
                runs = results[name]
                runs.setdefault("per call ms", []).append(statistics.median(times) * 1000)
                runs.setdefault("first call ms", []).append(times[0] * 1000)
                runs.setdefault("disk MB", []).append(size(Path(tmp)) / 1024 / 1024)
    table = Table(title=f"{args.iterations} calls, a {args.document_mb:g} MB document in each, "
                  f"medians of {args.repeat} runs")
    table.add_column("measure")
    for name in results:
        table.add_column(name, justify="right")
    table.add_column("ratio store/whole", justify="right")
    for measure in ("per call ms", "first call ms", "disk MB"):
        ours, plain = (statistics.median(results[n][measure]) for n in results)
        table.add_row(measure, f"{ours:.2f}", f"{plain:.2f}", f"{ours / plain:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
