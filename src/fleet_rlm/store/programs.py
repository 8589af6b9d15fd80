"""Feedback on turns, datasets, program versions and promotions: one tenant's rows each."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .errors import Conflict, NotFound
from .models import (
    Dataset,
    Feedback,
    ProgramVersion,
    Promotion,
    Session,
    Turn,
    storable,
    utcnow,
)
from .repos import _get, _Repo


class FeedbackRepo(_Repo):
    async def add(self, tenant_id: str, turn_id: str, user_name: str, thumbs_up: bool,
                  comment: str | None = None, corrected_answer: str | None = None) -> Feedback:
        async with self._store.transaction() as db:
            await _get(db, Turn, turn_id)
            row = Feedback(tenant_id=tenant_id, turn_id=turn_id, user_name=user_name,
                           thumbs_up=thumbs_up, comment=storable(comment),
                           corrected_answer=storable(corrected_answer), created_at=utcnow())
            db.add(row)
        return row

    async def with_turns(self, tenant_id: str) -> list[tuple[Feedback, Turn]]:
        """The tenant's feedback, oldest first, each with its turn."""
        stmt = (sa.select(Feedback, Turn).join(Turn, Turn.id == Feedback.turn_id)
                .join(Session, Session.id == Turn.session_id)
                .where(Feedback.tenant_id == tenant_id, Session.tenant_id == tenant_id)
                .order_by(Feedback.created_at, Feedback.id))
        async with self._store.reading() as db:
            return [(f, t) for f, t in (await db.execute(stmt)).all()]


class DatasetRepo(_Repo):
    async def create(self, tenant_id: str, name: str, source: str,
                     examples: Sequence[Mapping[str, Any]], benchmark: str | None = None
                     ) -> Dataset:
        """Conflict when the tenant has a dataset of that name."""
        try:
            async with self._store.transaction() as db:
                row = Dataset(tenant_id=tenant_id, name=name, source=source, benchmark=benchmark,
                              examples=storable([dict(e) for e in examples]),
                              created_at=utcnow())
                db.add(row)
        except IntegrityError:
            raise Conflict("dataset", name) from None
        return row

    async def list(self, tenant_id: str) -> list[Dataset]:
        async with self._store.reading() as db:
            return list(await db.scalars(sa.select(Dataset).where(Dataset.tenant_id == tenant_id)
                                         .order_by(Dataset.created_at, Dataset.name)))

    async def get(self, tenant_id: str, name: str) -> Dataset:
        async with self._store.reading() as db:
            row = await db.scalar(sa.select(Dataset).where(Dataset.tenant_id == tenant_id,
                                                           Dataset.name == name))
        if row is None:
            raise NotFound("dataset", name)
        return row


class ProgramRepo(_Repo):
    async def add(self, tenant_id: str, target: str, **fields: Any) -> ProgramVersion:
        """A new version of the target, numbered after the tenant's last one."""
        async with self._store.transaction() as db:
            last = await db.scalar(sa.select(sa.func.max(ProgramVersion.number)).where(
                ProgramVersion.tenant_id == tenant_id, ProgramVersion.target == target))
            row = ProgramVersion(tenant_id=tenant_id, target=target, number=(last or 0) + 1,
                                 created_at=utcnow(), **storable(fields))
            db.add(row)
        return row

    async def list(self, tenant_id: str, target: str | None = None) -> list[ProgramVersion]:
        stmt = sa.select(ProgramVersion).where(ProgramVersion.tenant_id == tenant_id)
        if target is not None:
            stmt = stmt.where(ProgramVersion.target == target)
        async with self._store.reading() as db:
            return list(await db.scalars(stmt.order_by(ProgramVersion.target,
                                                       ProgramVersion.number)))

    async def get(self, tenant_id: str, version_id: str) -> ProgramVersion:
        async with self._store.reading() as db:
            row = await db.get(ProgramVersion, version_id)
        if row is None or row.tenant_id != tenant_id:
            raise NotFound("program version", version_id)
        return row

    async def promoted_versions(self, tenant_id: str) -> dict[str, ProgramVersion]:
        """The version in force for each target that has one (a target left out runs its
        baseline), in one query: what every new turn reads."""
        latest = (sa.select(sa.func.max(Promotion.id)).where(Promotion.tenant_id == tenant_id)
                  .group_by(Promotion.target))
        stmt = (sa.select(Promotion.target, ProgramVersion)
                .join(ProgramVersion, ProgramVersion.id == Promotion.version_id)
                .where(Promotion.id.in_(latest)))
        async with self._store.reading() as db:
            return {target: version for target, version in (await db.execute(stmt)).all()}

    async def promote(self, tenant_id: str, target: str, version_id: str | None, by: str
                      ) -> Promotion:
        """Put `version_id` (None: the baseline) in force for the target."""
        async with self._store.transaction() as db:
            current = await db.scalar(
                sa.select(Promotion).where(Promotion.tenant_id == tenant_id,
                                           Promotion.target == target)
                .order_by(Promotion.id.desc()).limit(1).with_for_update())
            row = Promotion(tenant_id=tenant_id, target=target, version_id=version_id,
                            replaces=None if current is None else current.id, by=by,
                            created_at=utcnow())
            db.add(row)
        return row

    async def rollback(self, tenant_id: str, target: str, by: str) -> Promotion:
        """Put back what the promotion in force replaced; NotFound when nothing was promoted."""
        async with self._store.transaction() as db:
            current = await db.scalar(
                sa.select(Promotion).where(Promotion.tenant_id == tenant_id,
                                           Promotion.target == target)
                .order_by(Promotion.id.desc()).limit(1).with_for_update())
            if current is None:
                raise NotFound("promotion", target)
            earlier = None if current.replaces is None else await db.get(Promotion,
                                                                          current.replaces)
            row = Promotion(tenant_id=tenant_id, target=target,
                            version_id=None if earlier is None else earlier.version_id,
                            replaces=None if earlier is None else earlier.replaces, by=by,
                            created_at=utcnow())
            db.add(row)
        return row
