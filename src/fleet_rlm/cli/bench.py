"""`fleet bench`: S-NIAH, OOLONG and OOLONG-Pairs run, scored and reported."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from .common import console, err

if TYPE_CHECKING:
    from ..bench import Scorer

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
        dry_run: Annotated[bool, typer.Option(
            help="Print the tasks, their context tokens and the projected cost; run nothing.")]
        = False,
        data: Annotated[Path | None, typer.Option(
            help="oolong: run every trec_coarse row of this released oolong-synth file (JSONL "
                 "or Parquet) instead of generated windows; --n is not used.")] = None,
        scorer: Annotated[str, typer.Option(
            help="OOLONG scorer: official (the published rule) or lenient (ours; reports "
                 "label it and show no published figures beside it).")] = "official",
    ) -> None:
        import os

        from ..bench.runner import run_cli

        code = run_cli(benchmark, console, err, n=n, mode=mode, concurrency=concurrency,
                       max_usd=max_usd, seed=seed, lengths=lengths,
                       out=out or Path(f"bench-{benchmark}"), export=export,
                       retry_errors=retry_errors, data=data,
                       scorer=cast("Scorer", scorer),  # run_cli refuses other names
                       dry_run=dry_run,
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
    from ..bench.results import RESULTS, load_results

    if not (out / RESULTS).exists():
        err.print(f"[red]error:[/red] no {RESULTS} in {out}")
        raise typer.Exit(1)
    console.print(f"{report.write_report(out)}: {report.summary_line(load_results(out))}")


@bench_app.command("score")
def bench_score(
    benchmark: Annotated[str, typer.Argument(help="oolong | oolong-pairs | sniah")],
    file: Annotated[Path, typer.Argument(help="JSONL of predictions: prediction, answer (in the "
                                         "dataset's form) and, for oolong, answer_type.")],
    scorer: Annotated[str, typer.Option(
        help="OOLONG scorer: official (the published rule) or lenient (ours).")] = "official",
    out: Annotated[Path | None, typer.Option(
        help="Write every line with its score to this JSONL file.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the mean and counts as JSON instead of a table.")] = False,
) -> None:
    """Score predictions made by any system against gold answers, by the benchmark's rule."""
    import json

    from rich.markup import escape
    from rich.table import Table

    from ..bench.scoring import ScoreFileError, score_file, write_lines

    try:
        scored = score_file(benchmark, file, scorer)  # type: ignore[arg-type]
    except (ScoreFileError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if out is not None:
        write_lines(scored, out)
    if as_json:
        console.print_json(json.dumps(scored.summary()))
        return
    if scorer == "lenient":
        console.print("[bold]scorer: lenient[/bold] (not the published metric)", soft_wrap=True)
    table = Table(title=f"{benchmark}, {scorer} scorer")
    for column in ("answer type", "n", "mean score"):
        table.add_column(column, justify="left" if column == "answer type" else "right")
    for kind, (n, value) in scored.by_type().items():
        table.add_row(kind, str(n), f"{value:.4f}")
    table.add_row("[b]all[/b]", str(len(scored.lines)), f"[b]{scored.mean:.4f}[/b]")
    console.print(table)
