"""Repositories: a handful of async methods per aggregate, each its own transaction.

Rows come back as detached model instances (attributes loaded, safe to read after the call).
Unknown ids raise NotFound(kind, id).
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..status import ACTIVE_STATUSES, FINISHED_STATUSES, TurnStatus
from .errors import Conflict, NotFound
from .models import (
    DOCUMENT_KINDS,
    LOCAL_TENANT_ID,
    LOCAL_USER_ID,
    MEMORY_LABELS,
    ApiToken,
    Base,
    Document,
    Event,
    MemoryBlock,
    Session,
    Tenant,
    Turn,
    User,
    storable,
    utcnow,
)

if TYPE_CHECKING:
    from .db import Store

M = TypeVar("M", bound=Base)
log = logging.getLogger(__name__)
# The questions a turn asked the user with ask_user, each with its reply (None: unanswered).
Exchanges = list[dict[str, str | None]]


def dialect_insert(db: AsyncSession, model: type[Base]) -> Any:
    """INSERT with the dialect's ON CONFLICT support (SQLite and PostgreSQL spell it alike)."""
    dialect = db.get_bind().dialect.name
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](model)


async def _get(db: AsyncSession, model: type[M], id: str, **options: Any) -> M:
    row = await db.get(model, id, **options)
    if row is None:
        raise NotFound(model.__tablename__.removesuffix("s"), id)
    return row


class _Repo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def _require(self, model: type[Base], id: str) -> None:
        """Raise NotFound unless the row exists (used when a query came back empty)."""
        async with self._store.reading() as db:
            await _get(db, model, id)


class SessionRepo(_Repo):
    async def create(
        self, title: str = "New session", *,
        tenant_id: str = LOCAL_TENANT_ID, user_id: str = LOCAL_USER_ID,
    ) -> Session:
        async with self._store.transaction() as db:
            user = await db.get(User, user_id)
            if user is None or user.tenant_id != tenant_id:
                raise NotFound("user", user_id)
            now = utcnow()
            session = Session(tenant_id=tenant_id, user_id=user_id, title=title,
                              created_at=now, updated_at=now, archived=False)
            db.add(session)
        return session

    async def get(self, session_id: str) -> Session:
        async with self._store.reading() as db:
            return await _get(db, Session, session_id)

    async def create_imported(self, title: str, imported_from: str, turns: Sequence[Mapping[
            str, Any]], *, tenant_id: str = LOCAL_TENANT_ID, user_id: str = LOCAL_USER_ID
                              ) -> Session:
        """A read-only session with its finished turns and their events, in one transaction:
        all of it is stored or none. Each turn: id, user_message, answer, status, usage,
        error, created_at, finished_at and events (dicts, as `EventRepo.append_many`)."""
        async with self._store.transaction(tenant_id) as db:
            user = await db.get(User, user_id)
            if user is None or user.tenant_id != tenant_id:
                raise NotFound("user", user_id)
            now = utcnow()
            session = Session(tenant_id=tenant_id, user_id=user_id, title=title,
                              created_at=now, updated_at=now, archived=False,
                              imported_from=imported_from)
            db.add(session)
            await db.flush()
            for index, turn in enumerate(turns, 1):
                db.add(Turn(id=turn["id"], session_id=session.id, index=index,
                            user_message=storable(turn["user_message"]),
                            answer=storable(turn["answer"]), status=turn["status"],
                            error=storable(turn["error"]), usage=storable(turn["usage"]),
                            created_at=turn["created_at"], finished_at=turn["finished_at"]))
                await db.flush()
                for event in turn["events"]:
                    db.add(Event(turn_id=turn["id"], seq=event["seq"], type=event["type"],
                                 payload=storable(dict(event)), created_at=now))
        return session

    def _filter(self, stmt: sa.Select, tenant_id: str, q: str | None, user_id: str | None,
                include_archived: bool) -> sa.Select:
        stmt = stmt.where(Session.tenant_id == tenant_id)
        if q:
            stmt = stmt.where(Session.title.icontains(q, autoescape=True))
        if user_id is not None:
            stmt = stmt.where(Session.user_id == user_id)
        if not include_archived:
            stmt = stmt.where(Session.archived.is_(False))
        return stmt

    async def list(
        self, tenant_id: str = LOCAL_TENANT_ID, q: str | None = None, *, limit: int = 50,
        offset: int = 0, include_archived: bool = False, user_id: str | None = None,
    ) -> list[Session]:
        """Newest activity first; `q` matches a part of the title, ignoring case."""
        stmt = self._filter(sa.select(Session), tenant_id, q, user_id, include_archived)
        stmt = stmt.order_by(Session.updated_at.desc(), Session.id.desc())
        async with self._store.reading() as db:
            return list(await db.scalars(stmt.limit(limit).offset(offset)))

    async def count(
        self, tenant_id: str = LOCAL_TENANT_ID, q: str | None = None, *,
        include_archived: bool = False, user_id: str | None = None,
    ) -> int:
        stmt = self._filter(sa.select(sa.func.count()).select_from(Session), tenant_id, q,
                            user_id, include_archived)
        async with self._store.reading() as db:
            return await db.scalar(stmt)

    async def turn_counts(self, session_ids: Sequence[str]) -> dict[str, int]:
        """How many turns each session has (a session with none is left out)."""
        if not session_ids:
            return {}
        stmt = (sa.select(Turn.session_id, sa.func.count()).where(Turn.session_id.in_(session_ids))
                .group_by(Turn.session_id))
        async with self._store.reading() as db:
            return {session_id: n for session_id, n in (await db.execute(stmt)).all()}

    async def rename(self, session_id: str, title: str) -> Session:
        async with self._store.transaction() as db:
            session = await _get(db, Session, session_id)
            session.title = title
        return session

    async def archive(self, session_id: str, archived: bool = True) -> Session:
        async with self._store.transaction() as db:
            session = await _get(db, Session, session_id)
            session.archived = archived
        return session

    async def set_models(self, session_id: str, root_model: str | None,
                         sub_model: str | None) -> Session:
        async with self._store.transaction() as db:
            session = await _get(db, Session, session_id)
            session.root_model, session.sub_model = root_model, sub_model
        return session

    async def delete(self, session_id: str) -> None:
        """Delete the session with its turns, events, documents and memory; unreferenced blobs
        go too, and its turns' kept model calls."""
        async with self._store.blob_lock:
            async with self._store.transaction() as db:
                session = await _get(db, Session, session_id)
                shas = set(await db.scalars(
                    sa.select(Document.sha256).where(Document.session_id == session_id)))
                turn_ids = list(await db.scalars(
                    sa.select(Turn.id).where(Turn.session_id == session_id)))
                await db.delete(session)  # the database cascades to the children
            await self._store.documents.collect_blobs(shas)
        await asyncio.to_thread(self._store.calls.remove_turns, turn_ids)


class InFlight(RuntimeError):
    """The session already has a turn in flight (started by this process or another)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id} already has a turn in flight")
        self.session_id = session_id


class TurnRepo(_Repo):
    async def start(self, session_id: str, user_message: str,
                    attachments: Sequence[Mapping[str, str]] = (), *,
                    owner: str | None = None, lease_s: float = 0.0,
                    programs: Mapping[str, str | None] | None = None) -> Turn:
        """A new `running` turn with the session's next index (1, 2, ...), run by `owner`
        whose lease lasts `lease_s`; touches the session. `attachments` are the documents sent
        with the message ({id, name}). InFlight if the session has a turn in flight."""
        from .leases import db_now

        try:
            async with self._store.transaction() as db:
                # The row lock serialises concurrent starts on PostgreSQL; SQLite's BEGIN
                # IMMEDIATE already has. The unique index on turns in flight holds across
                # processes.
                session = await _get(db, Session, session_id, with_for_update=True)
                # The last index and the lease's end on the database's clock, in one query.
                last, lease = (await db.execute(sa.select(
                    sa.func.max(Turn.index),
                    sa.null() if owner is None else db_now(self._store.dialect) + lease_s,
                ).where(Turn.session_id == session_id))).one()
                now = utcnow()
                turn = Turn(session_id=session_id, index=(last or 0) + 1,
                            user_message=user_message,
                            attachments=[dict(a) for a in attachments] or None,
                            status=TurnStatus.RUNNING.value, created_at=now, owner=owner,
                            lease_expires=lease,
                            programs=None if programs is None else dict(programs))
                db.add(turn)
                session.updated_at = now
        except IntegrityError:
            raise InFlight(session_id) from None
        return turn

    async def finish(
        self, turn_id: str, status: str, *, answer: str | None = None,
        usage: Mapping[str, Any] | None = None, error: str | None = None,
        trace_id: str | None = None,
    ) -> Turn:
        if status not in FINISHED_STATUSES:
            raise ValueError(f"a turn finishes as one of {FINISHED_STATUSES}, not {status!r}")
        async with self._store.transaction() as db:
            turn = await _get(db, Turn, turn_id)
            turn.status = TurnStatus(status).value
            turn.answer = storable(answer)
            turn.usage = None if usage is None else storable(dict(usage))
            turn.error = storable(error)
            turn.pending = None
            turn.finished_at = utcnow()
            if trace_id is not None:
                turn.trace_id = trace_id
        return turn

    async def set_pending(self, turn_id: str, pending: Mapping[str, Any] | None) -> Turn:
        """Park a turn on a question to the user (`waiting`), or resume it with None
        (`running`)."""
        async with self._store.transaction() as db:
            turn = await _get(db, Turn, turn_id)
            if turn.status not in ACTIVE_STATUSES:
                raise ValueError(f"turn {turn_id} is {turn.status}: it cannot wait or resume")
            turn.pending = None if pending is None else storable(dict(pending))
            turn.status = (TurnStatus.RUNNING if pending is None else TurnStatus.WAITING).value
            if pending is not None:  # a waiting turn is no process's
                turn.owner = turn.lease_expires = None
        return turn

    async def get(self, turn_id: str) -> Turn:
        async with self._store.reading() as db:
            return await _get(db, Turn, turn_id)

    async def list(self, session_id: str) -> list[Turn]:
        async with self._store.reading() as db:
            turns = list(await db.scalars(
                sa.select(Turn).where(Turn.session_id == session_id).order_by(Turn.index)))
            if not turns:
                await _get(db, Session, session_id)
        return turns

    async def set_tags(self, turn_id: str, tags: Sequence[str]) -> Turn:
        async with self._store.transaction() as db:
            turn = await _get(db, Turn, turn_id)
            turn.tags = storable(list(tags)) or None
        return turn

    async def states(self, turn_ids: Sequence[str], *, tenant: str | None = None
                     ) -> dict[str, tuple[str, str]]:
        """(session id, status) of each of the turns that exists, in one query; `tenant`: on
        PostgreSQL, the tenant the read acts for (then on the followers' connection,
        `pgevents.py`)."""
        if tenant is not None and self._store.pg_events is not None:
            return await self._store.pg_events.states(tenant, list(turn_ids))
        async with self._store.reading() as db:
            if tenant is not None and self._store.dialect == "postgresql":
                await db.execute(sa.select(sa.func.set_config("fleet.tenant_id", tenant, True)))
            rows = await db.execute(sa.select(Turn.id, Turn.session_id, Turn.status)
                                    .where(Turn.id.in_(list(turn_ids))))
            return {turn_id: (session_id, status) for turn_id, session_id, status in rows}

    async def running_for_session(self, session_id: str) -> Turn | None:
        """The session's latest turn still in flight: `running`, or `waiting` on the user."""
        async with self._store.reading() as db:
            return await db.scalar(
                sa.select(Turn)
                .where(Turn.session_id == session_id, Turn.status.in_(ACTIVE_STATUSES))
                .order_by(Turn.index.desc())
                .limit(1)
            )


class EventRepo(_Repo):
    async def append_many(self, turn_id: str, events: Iterable[Mapping[str, Any]]) -> int:
        """Store events (dicts with at least `seq` and `type`; the whole dict is the payload).
        An event whose (turn, seq) is already stored is skipped; returns how many were new."""
        return await self.append_batches([(turn_id, events, None)])

    async def append_batches(
        self, items: Iterable[tuple[str, Iterable[Mapping[str, Any]], Mapping[str, Any] | None]],
        *, tenant: str | None = None, owners: Mapping[str, str] | None = None,
    ) -> int:
        """Store events of several turns in one transaction: (turn id, events, turn update)
        per turn, where a turn update (column values, or None) is applied to a turn still in
        flight with its events. `tenant`: the turns' tenant, for row-level security (else the
        caller's). Text PostgreSQL cannot store is escaped (`storable`). `owners`: turn id ->
        the process writing its events; a turn another process owns now (it closed the turn,
        its lease having run out) gets none of them. Returns how many events were new.

        On PostgreSQL with `tenant` given (the event writer's batches) it is one statement on a
        connection of its own (`pgevents.py`), the notices of the turns' sessions included."""
        if tenant is not None and self._store.pg_events is not None:
            items = [(turn_id, list(events), update) for turn_id, events, update in items]
            written, new = await self._store.pg_events.append(tenant, items, owners)
            unwritten = {turn_id for turn_id, _, _ in items} - written
            lost = {turn_id for turn_id in unwritten if (owners or {}).get(turn_id)}
            if lost:
                log.warning("not writing events of turns another process closed: %s",
                            ", ".join(sorted(lost)))
            if unwritten - lost:
                raise NotFound("turn", ", ".join(sorted(unwritten - lost)))
            return new
        now = utcnow()
        rows, updates = [], []
        for turn_id, events, update in items:
            rows += [{"turn_id": turn_id, "seq": e["seq"], "type": e["type"],
                      "payload": storable(dict(e)), "created_at": now} for e in events]
            if update:
                updates.append((turn_id, storable(dict(update))))
        if not rows and not updates:
            return 0
        try:
            async with self._store.transaction(tenant) as db:
                new = 0
                if owners:
                    # Locked until commit: a claim of one of these turns waits for these events.
                    current = dict((await db.execute(
                        sa.select(Turn.id, Turn.owner).where(Turn.id.in_(list(owners)))
                        .with_for_update())).all())
                    lost = {turn_id for turn_id, owner in owners.items()
                            if current.get(turn_id) != owner}
                    if lost:
                        log.warning("not writing events of turns another process closed: %s",
                                    ", ".join(sorted(lost)))
                        rows = [row for row in rows if row["turn_id"] not in lost]
                        updates = [(t, u) for t, u in updates if t not in lost]
                if rows:
                    stmt = dialect_insert(db, Event).on_conflict_do_nothing(
                        index_elements=["turn_id", "seq"])
                    new = len((await db.execute(stmt.returning(Event.id), rows)).all())
                for turn_id, update in updates:
                    await db.execute(sa.update(Turn).where(
                        Turn.id == turn_id, Turn.status.in_(ACTIVE_STATUSES)).values(**update))
                if rows and self._store.dialect == "postgresql":
                    await _announce(db, rows)
                return new
        except IntegrityError:  # with duplicates skipped, only a turn's foreign key is left
            missing = ", ".join(turn_id for turn_id, _, _ in items)
            raise NotFound("turn", missing) from None

    async def list(self, turn_id: str, after_seq: int = 0, limit: int | None = None
                   ) -> list[Event]:
        """Events with seq > after_seq, in seq order."""
        stmt = (sa.select(Event).where(Event.turn_id == turn_id, Event.seq > after_seq)
                .order_by(Event.seq).limit(limit))
        async with self._store.reading() as db:
            events = list(await db.scalars(stmt))
        if not events:
            await self._require(Turn, turn_id)
        return events

    async def payloads_many(self, wanted: Mapping[str, int], *, tenant: str | None = None
                            ) -> dict[str, builtins.list[dict[str, Any]]]:
        """The stored events (as dicts) of several turns in one query: turn id -> its events
        after the seq `wanted` gives it, in seq order; no rows are built. `tenant`: on
        PostgreSQL, the tenant the read acts for (then one statement on a connection of its own,
        `pgevents.py`)."""
        if tenant is not None and self._store.pg_events is not None:
            return await self._store.pg_events.payloads(tenant, wanted)
        after = sa.or_(*(sa.and_(Event.turn_id == turn_id, Event.seq > seq)
                         for turn_id, seq in wanted.items()))
        found: dict[str, builtins.list[dict[str, Any]]] = {turn_id: [] for turn_id in wanted}
        async with self._store.reading() as db:
            if tenant is not None and self._store.dialect == "postgresql":
                await db.execute(sa.select(sa.func.set_config("fleet.tenant_id", tenant, True)))
            for turn_id, payload in await db.execute(
                    sa.select(Event.turn_id, Event.payload).where(after)
                    .order_by(Event.turn_id, Event.seq)):
                found[turn_id].append(payload)
        return found

    async def find_call(self, turn_id: str, call_id: str) -> dict[str, Any] | None:
        """The turn's lm_call event with this `call_id`, or None."""
        stmt = sa.select(Event.payload).where(
            Event.turn_id == turn_id, Event.type == "lm_call",
            Event.payload["call_id"].as_string() == call_id).limit(1)
        async with self._store.reading() as db:
            return await db.scalar(stmt)

    async def asked(self, turn_ids: Sequence[str]) -> dict[str, Exchanges]:
        """The questions each turn asked the user with ask_user, in order, each with the reply
        it got (None: not answered)."""
        if not turn_ids:
            return {}
        stmt = (sa.select(Event.turn_id, Event.type, Event.payload)
                .where(Event.turn_id.in_(turn_ids), Event.type.in_(("ask_user", "tool_result")))
                .order_by(Event.turn_id, Event.seq))
        async with self._store.reading() as db:
            rows = (await db.execute(stmt)).all()
        asked: dict[str, Exchanges] = {}
        for turn_id, kind, payload in rows:
            exchanges = asked.setdefault(turn_id, [])
            if kind == "ask_user":
                exchanges.append({"question": str(payload.get("question", "")), "reply": None})
            elif payload.get("tool_name") == "ask_user" and exchanges \
                    and exchanges[-1]["reply"] is None:
                exchanges[-1]["reply"] = str(payload.get("output", ""))
        return {turn_id: exchanges for turn_id, exchanges in asked.items() if exchanges}

    async def last_seq(self, turn_id: str) -> int:
        """The highest stored seq of the turn; 0 when none is stored yet."""
        async with self._store.reading() as db:
            last = await db.scalar(
                sa.select(sa.func.max(Event.seq)).where(Event.turn_id == turn_id))
        if last is None:
            await self._require(Turn, turn_id)
        return last or 0


async def _announce(db: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Notify each turn's session channel of the newest seq written (delivered at commit): a
    pointer only, the events are read from the store by whoever follows the turn."""
    newest: dict[str, int] = {}
    for row in rows:
        newest[row["turn_id"]] = max(newest.get(row["turn_id"], 0), row["seq"])
    await db.execute(sa.text(
        "SELECT pg_notify('fleet_s_' || t.session_id, t.id || ':' || x.seq) "
        "FROM unnest(CAST(:ids AS text[]), CAST(:seqs AS int[])) AS x(id, seq) "
        "JOIN turns t ON t.id = x.id"), {"ids": list(newest), "seqs": list(newest.values())})


class DocumentRepo(_Repo):
    async def add(
        self, session_id: str, name: str, kind: str, size_bytes: int, chars: int, sha256: str,
        *, text: str | None = None, encoding: str | None = None,
    ) -> Document:
        """Record a document whose extracted text is the blob `sha256`: pass `text` to store the
        blob here, or put it in `store.blobs` first. A name is unique within a session: the
        same name with the same text is the existing document, attached again; with another
        text, Conflict."""
        if kind not in DOCUMENT_KINDS:
            raise ValueError(f"document kind must be one of {DOCUMENT_KINDS}, not {kind!r}")
        blobs = self._store.blobs
        async with self._store.blob_lock:
            if text is not None:
                await asyncio.to_thread(blobs.put, sha256, text)
            elif not blobs.exists(sha256):
                raise NotFound("blob", sha256)
            try:
                async with self._store.transaction() as db:
                    await _get(db, Session, session_id)
                    document = Document(session_id=session_id, name=name, kind=kind,
                                        size_bytes=size_bytes, chars=chars, sha256=sha256,
                                        encoding=encoding, created_at=utcnow())
                    db.add(document)
            except Exception as exc:
                if isinstance(exc, IntegrityError):
                    existing = await self._same(session_id, name, sha256)
                    if existing is not None:
                        return existing
                await self.collect_blobs({sha256})
                if isinstance(exc, IntegrityError):
                    raise Conflict("document", name) from None
                raise
        return document

    async def _same(self, session_id: str, name: str, sha256: str) -> Document | None:
        """The session's document `name` if its text is `sha256`'s, attached again."""
        async with self._store.transaction() as db:
            document = await db.scalar(sa.select(Document).where(
                Document.session_id == session_id, Document.name == name))
            if document is None or document.sha256 != sha256:
                return None
            document.detached_at = None
        return document

    async def set_attached(self, document_id: str, attached: bool) -> Document:
        """Attach a document to its session's context or detach it (kept, out of view)."""
        async with self._store.transaction() as db:
            document = await _get(db, Document, document_id)
            if attached:
                document.detached_at = None
            elif document.detached_at is None:
                document.detached_at = utcnow()
        return document

    async def get(self, document_id: str) -> Document:
        async with self._store.reading() as db:
            return await _get(db, Document, document_id)

    async def list(self, session_id: str, attached_only: bool = False) -> list[Document]:
        query = sa.select(Document).where(Document.session_id == session_id)
        if attached_only:
            query = query.where(Document.detached_at.is_(None))
        async with self._store.reading() as db:
            documents = list(await db.scalars(query.order_by(Document.created_at,
                                                             Document.name)))
            if not documents:
                await _get(db, Session, session_id)
        return documents

    async def read(self, document_id: str, start: int = 0, length: int | None = None) -> str:
        """Characters of the document's extracted text (see BlobStore.read)."""
        document = await self.get(document_id)
        return await asyncio.to_thread(self._store.blobs.read, document.sha256, start, length)

    async def delete(self, document_id: str) -> None:
        """Delete the document; its blob goes too unless another document shares it."""
        async with self._store.blob_lock:
            async with self._store.transaction() as db:
                document = await _get(db, Document, document_id)
                await db.delete(document)
            await self.collect_blobs({document.sha256})

    async def collect_blobs(self, shas: set[str]) -> int:
        """Remove those of `shas` no document references. The caller holds store.blob_lock."""
        if not shas:
            return 0
        async with self._store.reading() as db:
            referenced = set(await db.scalars(
                sa.select(Document.sha256).where(Document.sha256.in_(shas)).distinct()))
        return sum(self._store.blobs.remove(sha) for sha in shas - referenced)


class MemoryRepo(_Repo):
    async def get_all(self, session_id: str) -> dict[str, str]:
        """label -> value for the labels that have been set."""
        async with self._store.reading() as db:
            rows = (await db.execute(sa.select(MemoryBlock.label, MemoryBlock.value).where(
                MemoryBlock.session_id == session_id).order_by(MemoryBlock.label))).all()
            if not rows:
                await _get(db, Session, session_id)
        return dict(rows)

    async def set(self, session_id: str, label: str, value: str) -> None:
        if label not in MEMORY_LABELS:
            raise ValueError(f"memory label must be one of {MEMORY_LABELS}, not {label!r}")
        try:
            async with self._store.transaction() as db:
                stmt = dialect_insert(db, MemoryBlock).values(
                    session_id=session_id, label=label, value=value, updated_at=utcnow())
                await db.execute(stmt.on_conflict_do_update(
                    index_elements=["session_id", "label"],
                    set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at}))
        except IntegrityError:
            raise NotFound("session", session_id) from None



# -- users, API tokens and usage (token auth; not built by Store, construct with the store) -----

TOKEN_PREFIX = "fleet_"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class UserRepo(_Repo):
    async def add(self, name: str, tenant: str | None = None, *, admin: bool = False) -> User:
        """A user in the tenant named `tenant` (default: a tenant named after the user), the
        tenant created if missing. Conflict if the tenant already has a user of that name."""
        tenant_name = tenant or name
        try:
            async with self._store.transaction() as db:
                tenant_row = await db.scalar(sa.select(Tenant).where(Tenant.name == tenant_name))
                if tenant_row is None:
                    tenant_row = Tenant(name=tenant_name, created_at=utcnow())
                    db.add(tenant_row)
                    await db.flush()
                user = User(tenant_id=tenant_row.id, name=name, admin=admin, created_at=utcnow())
                db.add(user)
        except IntegrityError:
            raise Conflict("user", f"{tenant_name}/{name}") from None
        return user

    async def get(self, user_id: str) -> User:
        async with self._store.reading() as db:
            return await _get(db, User, user_id)

    async def find(self, name_or_id: str) -> User:
        """By id, else by name; a name held by users of several tenants needs the id."""
        async with self._store.reading() as db:
            user = await db.get(User, name_or_id)
            if user is not None:
                return user
            users = list(await db.scalars(sa.select(User).where(User.name == name_or_id)))
        if not users:
            raise NotFound("user", name_or_id)
        if len(users) > 1:
            raise ValueError(f"{len(users)} users are named {name_or_id!r}: use the user id "
                             f"({', '.join(u.id for u in users)})")
        return users[0]

    async def list(self) -> list[tuple[User, str]]:
        """Every user with the name of its tenant."""
        async with self._store.reading() as db:
            rows = await db.execute(sa.select(User, Tenant.name).join(
                Tenant, Tenant.id == User.tenant_id).order_by(Tenant.name, User.name))
            return [(user, tenant) for user, tenant in rows.all()]


class TokenRepo(_Repo):
    async def create(self, user_id: str, name: str = "token") -> tuple[ApiToken, str]:
        """A new token; the secret is returned once and only its hash is stored."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self._store.transaction() as db:
            await _get(db, User, user_id)
            token = ApiToken(user_id=user_id, name=name, token_hash=hash_token(secret),
                             created_at=utcnow())
            db.add(token)
        return token, secret

    async def authenticate(self, secret: str) -> User | None:
        """The user of a live (not revoked) token, or None."""
        digest = hash_token(secret)
        async with self._store.reading() as db:
            token = await db.scalar(sa.select(ApiToken).where(ApiToken.token_hash == digest))
            if token is None or token.revoked_at is not None:
                return None
            if not hmac.compare_digest(token.token_hash, digest):
                return None
            user = await db.get(User, token.user_id)
        now = utcnow()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            async with self._store.transaction() as db:  # a write only about once a minute
                await db.execute(sa.update(ApiToken).where(ApiToken.id == token.id)
                                 .values(last_used_at=now))
        return user

    async def revoke(self, token_id: str) -> ApiToken:
        async with self._store.transaction() as db:
            token = await _get(db, ApiToken, token_id)
            token.revoked_at = token.revoked_at or utcnow()
        return token

    async def list(self, user_id: str | None = None) -> list[ApiToken]:
        stmt = sa.select(ApiToken).order_by(ApiToken.created_at)
        if user_id is not None:
            stmt = stmt.where(ApiToken.user_id == user_id)
        async with self._store.reading() as db:
            return list(await db.scalars(stmt))


class UsageRepo(_Repo):
    async def turns(self, tenant_id: str) -> list[tuple[str, str, Any, dict[str, Any]]]:
        """(session id, session title, turn created_at, usage) of the tenant's turns that
        recorded usage, oldest first."""
        stmt = (sa.select(Session.id, Session.title, Turn.created_at, Turn.usage)
                .join(Turn, Turn.session_id == Session.id)
                .where(Session.tenant_id == tenant_id, Turn.usage.is_not(None))
                .order_by(Turn.created_at))
        async with self._store.reading() as db:
            return [tuple(row) for row in (await db.execute(stmt)).all()]
