"""`fleet bench`: S-NIAH, OOLONG and OOLONG-Pairs run, scored and reported."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import console, err

bench_app = typer.Typer(help="Benchmarks: S-NIAH, OOLONG and OOLONG-Pairs, run, scored and "
                        "reported.", no_args_is_help=True)


def _bench_command(benchmark: str) -> None:
    def command(
        n: Annotated[int, typer.Option("--n", help="Number of tasks.")] = 50,
        mode: Annotated[str, typer.Option(help="rlm | direct | agent | code-only (no model).")]
        = "rlm",
        model: Annotated[str | None, typer.Option(help="Root model.")] = None,
        sub_model: Annotated[str | None, typer.Option(help="Model for sub-calls.")] = None,
        api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
        concurrency: Annotated[int, typer.Option(help="Tasks run at once.")] = 1,
        max_usd: Annotated[float | None, typer.Option(
            help="Stop launching tasks once the results in OUT have cost this much.")] = None,
        seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
        lengths: Annotated[list[str] | None, typer.Option(
            help="Context lengths in tokens (e.g. 8192,32k); default per benchmark.")] = None,
        out: Annotated[Path | None, typer.Option(
            help="Results directory (default ./bench-BENCHMARK).")] = None,
        export: Annotated[Path | None, typer.Option(
            help="Write the tasks as JSONL to this file and run nothing.")] = None,
        retry_errors: Annotated[bool, typer.Option(
            help="Run again the tasks whose recorded status is error.")] = False,
        scorer: Annotated[str, typer.Option(
            help="OOLONG scorer: official (the published rule) or lenient (ours; reports "
                 "label it and show no published figures beside it).")] = "official",
    ) -> None:
        import os

        from ..bench.runner import run_cli

        code = run_cli(benchmark, console, err, n=n, mode=mode, concurrency=concurrency,
                       max_usd=max_usd, seed=seed, lengths=lengths,
                       out=out or Path(f"bench-{benchmark}"), export=export,
                       retry_errors=retry_errors, scorer=scorer,
                       overrides={"root_model": model, "sub_model": sub_model,
                                  "api_base": api_base})
        if code == 130:  # an LM request walked away from would otherwise hold the exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise typer.Exit(code)

    command.__doc__ = (f"Run {benchmark} tasks and write OUT/results.jsonl, report.md and plots. "
                       "An interrupted run resumes: tasks already in results.jsonl are skipped.")
    bench_app.command(benchmark)(command)


for _benchmark in ("sniah", "oolong", "oolong-pairs"):
    _bench_command(_benchmark)


@bench_app.command("report")
def bench_report(out: Annotated[Path, typer.Argument(help="A results directory.")]) -> None:
    """Rebuild OUT/report.md and the plots from OUT/results.jsonl."""
    from ..bench import report
    from ..bench.runner import RESULTS, load_results

    if not (out / RESULTS).exists():
        err.print(f"[red]error:[/red] no {RESULTS} in {out}")
        raise typer.Exit(1)
    console.print(f"{report.write_report(out)}: {report.summary_line(load_results(out))}")
