"""The store door of optimisation: feedback on turns, datasets, program versions and their
promotion, per tenant. The server, the CLI and the session service use it; nothing else
touches these tables."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

from ..config import Settings
from ..engine.programs import TARGETS, Program
from ..optimize.datasets import (
    DatasetError,
    Example,
    enough,
    from_bench_results,
    from_feedback,
    from_jsonl,
)
from ..optimize.run import Outcome
from ..store import Conflict, Dataset, Feedback, NotFound, ProgramVersion, Promotion, Store
from ..store.models import Document

log = logging.getLogger(__name__)

_REF = re.compile(r"^(agent|rlm)[:@#]?v?(\d+)$")


class Incompatible(ValueError):
    """A program version made for another release of the program than this one runs."""

    def __init__(self, version: ProgramVersion, current: str) -> None:
        self.version, self.current = version, current
        super().__init__(
            f"{version.target} v{version.number} was optimised on program release "
            f"{version.release}; this release runs {current}: its predictors or their fields "
            "changed, so its instructions do not fit. Optimise again on this release.")


class Programs:
    """Optimisation's rows of one store. `releases` holds this process's release per target."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self._releases: dict[str, str] = {}

    async def current_release(self, target: str) -> str:
        """This process's release of the target; built once, off the event loop."""
        if target not in self._releases:
            await asyncio.to_thread(self.release, target)
        return self._releases[target]

    def release(self, target: str) -> str:
        if target not in self._releases:
            from ..optimize.targets import baseline

            self._releases[target] = baseline(self.settings, target)[0]
        return self._releases[target]

    # -- feedback ---------------------------------------------------------------------------
    async def add_feedback(self, tenant_id: str, turn_id: str, user_name: str, thumbs_up: bool,
                           comment: str | None = None, corrected_answer: str | None = None
                           ) -> Feedback:
        return await self.store.feedback.add(tenant_id, turn_id, user_name, thumbs_up, comment,
                                             corrected_answer)

    async def feedback_examples(self, tenant_id: str) -> list[Example]:
        """The tenant's feedback as examples; a turn's attached documents are its context."""
        pairs = []
        for feedback, turn in await self.store.feedback.with_turns(tenant_id):
            texts = []
            for attached in turn.attachments or []:
                try:
                    texts.append(await self.store.documents.read(attached["id"]))
                except NotFound:
                    continue  # deleted since: the example keeps the rest
            row = {"id": turn.id, "user_message": turn.user_message, "answer": turn.answer}
            pairs.append(({"thumbs_up": feedback.thumbs_up, "comment": feedback.comment,
                           "corrected_answer": feedback.corrected_answer}, row, texts))
        examples = from_feedback((f, t) for f, t, _ in pairs)
        contexts = {t["id"]: "\n\n".join(texts) for _, t, texts in pairs}
        return [e.model_copy(update={"context": contexts.get(e.turn_id or "", "")})
                for e in examples]

    # -- datasets ---------------------------------------------------------------------------
    async def create_dataset(self, tenant_id: str, name: str, *, feedback: bool = False,
                             jsonl: Path | None = None, bench: Path | None = None) -> Dataset:
        """From exactly one source; DatasetError (before anything is stored) when it is empty,
        too small, or an example lacks a field; Conflict when the name is taken."""
        if sum((feedback, jsonl is not None, bench is not None)) != 1:
            raise DatasetError("give exactly one source: feedback, a JSONL file or a benchmark "
                               "results directory")
        benchmark: str | None = None
        if feedback:
            source, examples = "feedback", await self.feedback_examples(tenant_id)
        elif jsonl is not None:
            documents = await self._documents(tenant_id, jsonl)
            source = "jsonl"
            examples = await asyncio.to_thread(from_jsonl, jsonl, documents)
        else:
            assert bench is not None
            source = "bench"
            benchmark, examples = await asyncio.to_thread(from_bench_results, bench)
        enough(examples, name)
        return await self.store.datasets.create(
            tenant_id, name, source, [e.model_dump() for e in examples], benchmark)

    async def _documents(self, tenant_id: str, jsonl: Path) -> Any:
        """A reader of the text of the documents the file's examples name by id, read once
        each; an id that is not a document of the tenant's sessions is refused."""
        import json

        import sqlalchemy as sa

        from ..store.models import Session

        named: set[str] = set()
        for line in (await asyncio.to_thread(jsonl.read_text, encoding="utf-8")).splitlines():
            try:
                ids = json.loads(line).get("document_ids") if line.strip() else None
            except (json.JSONDecodeError, AttributeError):
                continue  # from_jsonl names the bad line
            if isinstance(ids, list):
                named.update(str(i) for i in ids)
        async with self.store.reading() as db:
            owned = set(await db.scalars(sa.select(Document.id).join(
                Session, Session.id == Document.session_id).where(
                Session.tenant_id == tenant_id, Document.id.in_(named))))
        texts = {i: await self.store.documents.read(i) for i in owned}

        def read(ids: list[str]) -> str:
            missing = [i for i in ids if i not in texts]
            if missing:
                raise DatasetError(f"no document {', '.join(missing)} in this tenant's sessions")
            return "\n\n".join(texts[i] for i in ids)

        return read

    async def datasets(self, tenant_id: str) -> list[Dataset]:
        return await self.store.datasets.list(tenant_id)

    async def dataset(self, tenant_id: str, name: str) -> tuple[Dataset, list[Example]]:
        row = await self.store.datasets.get(tenant_id, name)
        return row, [Example.model_validate(e) for e in row.examples]

    # -- versions and promotion -------------------------------------------------------------
    async def save(self, tenant_id: str, outcome: Outcome) -> ProgramVersion:
        return await self.store.programs.add(
            tenant_id, outcome.target, dataset=outcome.dataset, metric=outcome.metric,
            release=outcome.release, baseline=outcome.baseline,
            instructions=outcome.instructions, score_before=outcome.score_before,
            score_after=outcome.score_after, stopped=outcome.stopped, detail=outcome.detail)

    async def versions(self, tenant_id: str, target: str | None = None) -> list[ProgramVersion]:
        return await self.store.programs.list(tenant_id, target)

    async def version(self, tenant_id: str, ref: str) -> ProgramVersion:
        """A version by id or as TARGET:NUMBER (`agent:3`, `rlm@2`, `agent:v3`)."""
        match = _REF.match(ref.strip())
        if match is None:
            return await self.store.programs.get(tenant_id, ref)
        target, number = match.group(1), int(match.group(2))
        for row in await self.store.programs.list(tenant_id, target):
            if row.number == number:
                return row
        raise NotFound("program version", ref)

    async def promote(self, tenant_id: str, ref: str, by: str) -> Promotion:
        """Promote a version for the tenant; Incompatible when made for another release."""
        version = await self.version(tenant_id, ref)
        current = await self.current_release(version.target)
        if version.release != current:
            raise Incompatible(version, current)
        return await self.store.programs.promote(tenant_id, version.target, version.id, by)

    async def rollback(self, tenant_id: str, target: str, by: str) -> Promotion:
        """Put back what the promotion in force replaced (the baseline, at the first one)."""
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
        return await self.store.programs.rollback(tenant_id, target, by)

    async def promoted_versions(self, tenant_id: str) -> dict[str, ProgramVersion]:
        return await self.store.programs.promoted_versions(tenant_id)

    async def ran(self, tenant_id: str, versions: dict[str, str | None] | None
                  ) -> dict[str, Program]:
        """The programs a turn started with (its row's `programs`), so a resumed turn goes on
        with them."""
        programs: dict[str, Program] = {}
        for target, version_id in (versions or {}).items():
            if version_id is not None:
                version = await self.store.programs.get(tenant_id, version_id)
                programs[target] = _program(version)
        return programs

    async def promoted(self, tenant_id: str) -> dict[str, Program]:
        """What a new turn of the tenant runs, by target; a promoted version this release
        cannot run is left out (the baseline runs) with a warning in the log."""
        programs: dict[str, Program] = {}
        for target, version in (await self.promoted_versions(tenant_id)).items():
            current = await self.current_release(target)
            if version.release != current:
                log.warning("tenant %s: %s", tenant_id, Incompatible(version, current))
                continue
            programs[target] = _program(version)
        return programs


def _program(version: ProgramVersion) -> Program:
    return Program(version.id, version.target,  # type: ignore[arg-type]
                   dict(version.instructions), version.release)


__all__ = ["Conflict", "DatasetError", "Incompatible", "NotFound", "Programs"]
