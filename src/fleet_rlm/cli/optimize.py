"""`fleet optimize` (datasets and GEPA runs) and `fleet programs` (versions, promotion)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer
from rich.markup import escape
from rich.table import Table

from ..config import Settings
from .common import console, err

if TYPE_CHECKING:
    from ..optimize.run import Auto

optimize_app = typer.Typer(help="Optimise the agent and the engine with GEPA.",
                           no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets to optimise on, per tenant.", no_args_is_help=True)
optimize_app.add_typer(dataset_app, name="dataset")
programs_app = typer.Typer(help="Program versions: list, show, diff, promote, roll back.",
                           no_args_is_help=True)

T = TypeVar("T")
Tenant = Annotated[str, typer.Option("--tenant", help="The tenant (id or name).")]


def _with_programs(work: Callable[[Any, str], Awaitable[T]], tenant: str) -> T:
    """Run `work(programs, tenant_id)` on the configured store; its refusals as one clear
    line and exit 1."""
    from ..optimize.datasets import DatasetError
    from ..sessions import Conflict, NotFound
    from ..sessions.offline import programs
    from ..sessions.programs import Incompatible

    async def main() -> T:
        async with programs(Settings(), tenant) as (door, tenant_id):
            return await work(door, tenant_id)

    try:
        return asyncio.run(main())
    except (DatasetError, Incompatible, Conflict, NotFound, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


@dataset_app.command("list")
def dataset_list(tenant: Tenant = "local") -> None:
    """The tenant's datasets: name, source, examples."""
    async def work(door: Any, tenant_id: str) -> list[Any]:
        return await door.datasets(tenant_id)

    table = Table("name", "source", "benchmark", "examples", "created")
    for row in _with_programs(work, tenant):
        table.add_row(escape(row.name), row.source, row.benchmark or "", str(len(row.examples)),
                      f"{row.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


@dataset_app.command("create")
def dataset_create(
    name: Annotated[str, typer.Argument(help="The dataset's name (unique per tenant).")],
    feedback: Annotated[bool, typer.Option(
        "--feedback", help="From turns with feedback: a thumbs-down's corrected answer, a "
        "thumbs-up's own answer.")] = False,
    jsonl: Annotated[Path | None, typer.Option(
        "--jsonl", help="From a JSONL file of {question, context | document_ids, answer}.",
        exists=True, dir_okay=False)] = None,
    bench: Annotated[Path | None, typer.Option(
        "--bench", help="From a benchmark results directory (fleet bench run --out).",
        exists=True, file_okay=False)] = None,
    tenant: Tenant = "local",
) -> None:
    """Make a dataset from one source; refused when empty, too small or an example lacks a
    field."""
    async def work(door: Any, tenant_id: str) -> Any:
        return await door.create_dataset(tenant_id, name, feedback=feedback, jsonl=jsonl,
                                         bench=bench)

    row = _with_programs(work, tenant)
    console.print(f"dataset {escape(row.name)}: {len(row.examples)} examples from {row.source}"
                  + (f" ({row.benchmark})" if row.benchmark else ""))


@optimize_app.command("run")
def optimize_run(
    target: Annotated[str, typer.Argument(help="agent | rlm")],
    dataset: Annotated[str, typer.Option("--dataset", help="The dataset's name.")],
    metric: Annotated[str | None, typer.Option(
        "--metric", help="exact | normalised | bench (default: bench for a benchmark "
        "dataset, else normalised).")] = None,
    auto: Annotated[str, typer.Option("--auto", help="light | medium | heavy")] = "light",
    max_metric_calls: Annotated[int | None, typer.Option(
        "--max-metric-calls", help="Runs of the program GEPA may make (instead of --auto).")
    ] = None,
    reflection_model: Annotated[str | None, typer.Option(
        "--reflection-model", help="The model GEPA reflects with (default: the root model).")
    ] = None,
    max_usd: Annotated[float | None, typer.Option(
        "--max-usd", help="Most USD the whole run spends (default: FLEET_MAX_USD).")] = None,
    max_calls: Annotated[int | None, typer.Option(
        "--max-calls", help="Most model calls of the whole run, program and reflection.")
    ] = None,
    resume_dir: Annotated[Path | None, typer.Option(
        "--log-dir", help="Keep GEPA's state here; a run stopped with the same directory "
        "resumes.")] = None,
    tenant: Tenant = "local",
) -> None:
    """Run GEPA on the dataset's train split, score on its validation split, and save the
    best program as a new version (not promoted)."""
    from rich.progress import Progress as Bar

    from ..optimize.metrics import default_metric
    from ..optimize.run import NothingValidated, optimise

    if auto not in ("light", "medium", "heavy"):
        err.print("[red]error:[/red] --auto must be light, medium or heavy")
        raise typer.Exit(1)

    async def work(door: Any, tenant_id: str) -> Any:
        row, examples = await door.dataset(tenant_id, dataset)
        with Bar(console=err, transient=True) as bar:
            task = bar.add_task("validating", total=None)

            def report(progress: Any) -> None:
                best = max((p["score"] for p in progress.curve), default=0.0)
                bar.update(task, description=f"{progress.metric_calls} program runs, best "
                                             f"validation score {best:.3f}")

            try:
                outcome = await asyncio.to_thread(
                    optimise, Settings(), target, dataset, examples, benchmark=row.benchmark,
                    metric_name=metric or default_metric(row.benchmark),
                    auto=cast("Auto", auto),
                    max_metric_calls=max_metric_calls, reflection_model=reflection_model,
                    max_usd=max_usd, max_calls=max_calls, log_dir=resume_dir,
                    on_progress=report)
            except NothingValidated as exc:
                raise ValueError(str(exc)) from None
        return await door.save(tenant_id, outcome)

    version = _with_programs(work, tenant)
    _print_version(version)
    console.print(f"promote it with: fleet programs promote {version.target}:{version.number}")


def _print_version(v: Any, diff: bool = False) -> None:
    stopped = f", stopped early: {escape(v.stopped)}" if v.stopped else ""
    console.print(f"[bold]{v.target}:{v.number}[/bold] ({v.id}) dataset {escape(v.dataset)}, "
                  f"metric {v.metric}; validation {v.score_before:.3f} -> {v.score_after:.3f}"
                  f"{stopped}")
    if diff:
        console.print(escape(v.detail.get("prompt_diff") or "(instructions unchanged)"),
                      highlight=False)


@programs_app.command("list")
def programs_list(tenant: Tenant = "local") -> None:
    """Every version of the tenant, the promoted ones marked."""
    async def work(door: Any, tenant_id: str) -> tuple[list[Any], dict[str, Any]]:
        return await door.versions(tenant_id), await door.promoted_versions(tenant_id)

    versions, promoted = _with_programs(work, tenant)
    table = Table("version", "id", "dataset", "metric", "before", "after", "stopped",
                  "promoted")
    for v in versions:
        live = promoted.get(v.target)
        table.add_row(f"{v.target}:{v.number}", v.id, escape(v.dataset), v.metric,
                      f"{v.score_before:.3f}", f"{v.score_after:.3f}", escape(v.stopped or ""),
                      "yes" if live is not None and live.id == v.id else "")
    console.print(table)
    for target in ("agent", "rlm"):
        if target not in promoted:
            console.print(f"{target}: the baseline runs")


@programs_app.command("show")
def programs_show(version: Annotated[str, typer.Argument(help="TARGET:NUMBER or an id.")],
                  tenant: Tenant = "local") -> None:
    """A version's dataset, metric, scores and instructions."""
    async def work(door: Any, tenant_id: str) -> Any:
        return await door.version(tenant_id, version)

    v = _with_programs(work, tenant)
    _print_version(v)
    for name, text in v.instructions.items():
        console.print(f"\n[bold]{escape(name)}[/bold]\n{escape(text)}", highlight=False)


@programs_app.command("diff")
def programs_diff(version: Annotated[str, typer.Argument(help="TARGET:NUMBER or an id.")],
                  tenant: Tenant = "local") -> None:
    """The version's instructions against the baseline it was optimised from."""
    async def work(door: Any, tenant_id: str) -> Any:
        return await door.version(tenant_id, version)

    _print_version(_with_programs(work, tenant), diff=True)


@programs_app.command("promote")
def programs_promote(version: Annotated[str, typer.Argument(help="TARGET:NUMBER or an id.")],
                     tenant: Tenant = "local") -> None:
    """New turns of the tenant run this version; refused for another release's version."""
    async def work(door: Any, tenant_id: str) -> Any:
        await door.promote(tenant_id, version, by="cli")
        return await door.version(tenant_id, version)

    v = _with_programs(work, tenant)
    console.print(f"promoted {v.target}:{v.number}: new turns run it")


@programs_app.command("rollback")
def programs_rollback(target: Annotated[str, typer.Argument(help="agent | rlm")],
                      tenant: Tenant = "local") -> None:
    """Put back what the promotion in force replaced (the baseline at the first)."""
    async def work(door: Any, tenant_id: str) -> Any:
        promotion = await door.rollback(tenant_id, target, by="cli")
        if promotion.version_id is None:
            return None
        return await door.version(tenant_id, promotion.version_id)

    v = _with_programs(work, tenant)
    console.print(f"{target}: " + ("the baseline runs" if v is None else
                                   f"{v.target}:{v.number} runs"))
