"""Optimisation runs started from the web app: each a GEPA run in a worker thread of this
process, its progress kept in memory for the Optimise page to poll, its result saved as a
program version (never promoted). A run spends at most what one of the tenant's turns may."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ..config import Settings
from ..optimize.datasets import enough
from ..optimize.metrics import default_metric, metric
from ..optimize.run import Auto, Progress, optimise
from ..optimize.targets import target_kind
from ..store.models import new_id
from .programs import Programs

log = logging.getLogger(__name__)

RunState = Literal["running", "done", "failed"]
KEPT_RUNS = 20  # a tenant's latest runs are listed; their versions stay in the store


@dataclass
class OptimisationRun:
    id: str
    tenant_id: str
    target: str
    dataset: str
    metric: str
    started_at: datetime
    state: RunState = "running"
    metric_calls: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    version_id: str | None = None
    error: str | None = None


class OptimisationRuns:
    """The runs of this process, by tenant; at most one running per tenant."""

    def __init__(self, programs: Programs) -> None:
        self.programs = programs
        self.runs: dict[str, OptimisationRun] = {}
        self._tasks: set[asyncio.Task] = set()

    def of(self, tenant_id: str) -> list[OptimisationRun]:
        return [r for r in self.runs.values() if r.tenant_id == tenant_id]

    async def start(self, settings: Settings, tenant_id: str, target: str, dataset: str, *,
                    metric_name: str | None = None, auto: Auto = "light",
                    max_metric_calls: int | None = None, reflection_model: str | None = None
                    ) -> OptimisationRun:
        """Check everything that can be checked before a model call (target, dataset, metric;
        ValueError, NotFound, DatasetError), then start the run. `settings` carry the
        tenant's limits, the run's whole budget."""
        target_kind(target)
        if any(r.state == "running" for r in self.of(tenant_id)):
            raise ValueError("an optimisation run of this tenant is under way; wait for it")
        row, examples = await self.programs.dataset(tenant_id, dataset)
        enough(examples, dataset)
        chosen = metric(metric_name or default_metric(row.benchmark), row.benchmark)
        run = OptimisationRun(new_id(), tenant_id, target, dataset, chosen.name,
                              datetime.now(UTC))
        for old in self.of(tenant_id)[:-KEPT_RUNS + 1]:  # the oldest, all finished
            del self.runs[old.id]
        self.runs[run.id] = run
        loop = asyncio.get_running_loop()

        def report(progress: Progress) -> None:
            def apply() -> None:
                run.metric_calls, run.curve = progress.metric_calls, list(progress.curve)
            loop.call_soon_threadsafe(apply)

        async def work() -> None:
            try:
                outcome = await asyncio.to_thread(
                    optimise, settings, target, dataset, examples, benchmark=row.benchmark,
                    metric_name=chosen.name, auto=auto, max_metric_calls=max_metric_calls,
                    reflection_model=reflection_model, max_usd=settings.max_usd,
                    max_calls=settings.max_calls, on_progress=report)
                version = await self.programs.save(tenant_id, outcome)
                run.version_id, run.state = version.id, "done"
            except Exception as exc:  # noqa: BLE001 - the run fails, the server goes on
                log.exception("optimisation run %s failed", run.id)
                run.error, run.state = f"{type(exc).__name__}: {exc}", "failed"

        task = loop.create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run
