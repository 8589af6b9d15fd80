"""The session service: the one door the server, `fleet chat` and the MCP server go through.

Sessions and their documents, turns run in worker threads with their events recorded in the store
and fanned out live, ask_user pause/resume, cancel, and each session's persistent python sandbox
with its workspace. Its API for the entry points:

- `post(principal, session_id, text, ...)` starts a turn, or answers the one waiting on ask_user;
- `follow(turn_id, after_seq)` iterates a turn's events (the stored backlog, then live ones, with
  gaps and overflows made good from the store);
- reads (`session`, `turns`, `turn`, `turn_events`, `documents`, ...) first wait for what a
  finished turn is still writing, so a read made in answer to turn_finished sees the turn closed;
- tenancy: every method that takes a `Principal` shows it only its tenant's rows, and treats
  another tenant's as missing (NotFound).

This is a consumer of the engine: it writes the store from the event stream; the engine never
sees the store (it gets a `SessionContext`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import fcntl
import functools
import gc
import hashlib
import logging
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pydantic

from ..attachments import note as attachment_note
from ..budget import CancelToken, Usage, renamed_limits
from ..config import Settings
from ..engine.agent import DocumentInfo
from ..engine.programs import Program
from ..engine.turn import Exchange, Turn, TurnResult
from ..events import Event, EventStream, parse_event
from ..extraction import ExtractionLimits, Extractor
from ..redaction import redact, remember
from ..sandbox import Sandbox, backend
from ..status import ACTIVE_STATUSES, TurnStatus
from ..store import LOCAL_TENANT_ID, NotFound, Store
from ..store import Session as SessionRow
from ..store import Turn as TurnRow
from ..store.db import ALL_TENANTS
from ..store.faults import until_available
from ..store.models import Document
from ..store.repos import InFlight
from ..workspace import Workspace, WorkspaceIO
from . import exports, inspector
from . import live as live_turns
from .live import LiveTurn, Overflow, SessionLocks, deliver, subscribe
from .optimising import OptimisationRun, OptimisationRuns
from .programs import Programs
from .records import TurnOutcome, close_failed, end_record
from .relay import Watch
from .replicas import Replicas
from .sandboxes import SandboxPool
from .tenancy import Principal

if TYPE_CHECKING:
    from ..export import ExportFormat

log = logging.getLogger(__name__)

SETTLE_S = 60.0  # longest wait for a finished turn to save its sandbox and record its outcome
WORKSPACE_IO_WORKERS = 4  # threads for workspace file operations over the API
# Threads for the turns running at once in this process (mostly waiting on a model). The loop's
# default executor has cores + 4: on two cores, the seventh concurrent turn would wait for one of
# the first six to end before it even started.
TURN_THREADS = 512
STALLED_WAIT_S = 2.0  # that wait while the database is away
LIMIT_KEYS = {"max_calls", "max_tokens", "max_usd", "max_wall_s", "max_depth", "max_iterations"}


@functools.cache
def _limit_overrides(settings_type: type[Settings]) -> type[pydantic.BaseModel]:
    """A model of just the budget limits of `settings_type`, with their types and bounds."""
    fields = settings_type.model_fields
    definitions: dict[str, Any] = {key: (fields[key].annotation, fields[key])
                                   for key in sorted(LIMIT_KEYS)}
    return pydantic.create_model(f"{settings_type.__name__}Limits", **definitions)


class LimitRaised(ValueError):
    """A message (or a tenant's admin) asked for more than the server, or the tenant, allows:
    limits may only go down. `whose` limit it was: "server" or "tenant"."""

    def __init__(self, field: str, asked: float, limit: float, whose: str = "server") -> None:
        super().__init__(f"{field}: {asked} is above the {whose}'s limit of {limit}; a message "
                         f"may only lower limits (an admin raises the {whose}'s in the settings)")
        self.field, self.asked, self.limit, self.whose = field, asked, limit, whose


class Busy(RuntimeError):
    """The session already has a turn in flight (running, or waiting on the user)."""


class ReadOnly(ValueError):
    """The session was imported from a log: it can be read, not continued."""

    def __init__(self, session_id: str, imported_from: str) -> None:
        super().__init__(f"session {session_id} was imported from {imported_from} and is "
                         "read-only: start a new session to ask more")
        self.session_id, self.imported_from = session_id, imported_from


@dataclass(frozen=True)
class Posted:
    """What `post` started: the turn, the seq to follow it from, and its result to come."""

    turn_id: str
    session_id: str
    after_seq: int  # follow(turn_id, after_seq): the events this message caused
    answered: bool  # True: the text answered the turn's question and the turn went on
    done: asyncio.Future  # the TurnResult once the turn stops (or pauses on ask_user again)


class StoreSession:
    """The engine's SessionContext on the store; called from the turn's worker thread."""

    def __init__(self, service: SessionService, session_id: str) -> None:
        self.service, self.session_id = service, session_id

    def _wait(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.service.loop).result()

    def _docs(self) -> list[Document]:  # a detached document is out of the agent's view
        return self._wait(self.service.store.documents.list(self.session_id,
                                                            attached_only=True))

    def documents(self) -> list[DocumentInfo]:
        return [DocumentInfo(d.name, d.kind, d.chars) for d in self._docs()]

    def document_text(self, name: str) -> str:
        for doc in self._docs():
            if doc.name == name:
                return self.service.store.blobs.read(doc.sha256)
        raise KeyError(f"no document named {name!r}; have: {[d.name for d in self._docs()]}")

    def memory(self) -> dict[str, str]:
        return self._wait(self.service.store.memory.get_all(self.session_id))

    def set_memory(self, label: str, value: str) -> None:
        self._wait(self.service.store.memory.set(self.session_id, label, value))

    def sandbox(self) -> Sandbox:
        return self.service.session_sandbox(self.session_id)


@functools.cache
def _freeze_start_up_heap() -> None:
    """What start-up built (dspy, litellm, the app: millions of objects) lives as long as the
    process. Left to the collector, each full collection walks all of it, a pause of up to a
    second of the event loop that any burst of allocations sets off (a storm of other processes'
    notices, fifty sockets at once); frozen, it is never walked. Once per process: later
    garbage is the collector's as usual."""
    gc.freeze()


class SessionService:
    def __init__(self, settings: Settings, store: Store | None = None, *,
                 tenant: str | None = None) -> None:
        """`tenant`: on PostgreSQL, the tenant every transaction acts for when no request sets
        one (ALL_TENANTS for the terminal user, who holds the database's credentials)."""
        self.settings = settings
        self.store = store or Store.from_settings(settings, tenant=tenant)
        self.live: dict[str, LiveTurn] = {}  # turn id -> live turn
        self.sandboxes = SandboxPool(settings)
        self._reaper: asyncio.Task | None = None
        self.extractor = Extractor()
        self._summaries: dict[str, str] = {}
        # Checking that a session is free and starting its turn happen as one step, per
        # session: other sessions' turns start meanwhile.
        self._starting = SessionLocks()
        self.loop: asyncio.AbstractEventLoop
        self.workspace_io = WorkspaceIO(WORKSPACE_IO_WORKERS, settings.workspace_io_timeout_s)
        self._turn_threads = ThreadPoolExecutor(TURN_THREADS, thread_name_prefix="turn")
        self.replicas = Replicas(self)  # leases, takeover, commands, other processes' events
        self.programs = Programs(self.store, settings)  # feedback, datasets, versions
        self.optimising = OptimisationRuns(self.programs)  # runs started from the web app

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.store.open()
        await self.store.prepare()
        # Turns of a process that is gone are closed by whichever process notices (leases);
        # local sandbox leftovers only when no other process has this data dir open.
        await self.replicas.open()
        if self._first_process():
            from ..sandbox.containment import sweep_stale_roots

            if swept := await asyncio.to_thread(sweep_stale_roots):
                log.warning("removed %d sandbox directories left by a crashed process", len(swept))
            from ..sandbox.disk import unmount_under

            # Alone on this data dir: a mounted workspace image is a crashed service's.
            workspaces = self.settings.data_dir / "workspaces"
            if unmounted := await asyncio.to_thread(unmount_under, workspaces):
                log.warning("unmounted %d workspaces left mounted by a crashed process",
                            len(unmounted))
        await asyncio.to_thread(backend(self.settings.sandbox).start_up)
        self.user = await self.store.ensure_local_user()
        self._reaper = self.loop.create_task(self.sandboxes.reap_idle(
            lambda: {live.session_id for live in self.live.values()}))
        if self.settings.mlflow_tracking_uri:  # a missing extra shows now, not after a turn
            from ..tracing import import_mlflow

            import_mlflow()
        if self.settings.otel_exporter_otlp_endpoint:
            from ..otel import import_otel

            import_otel()
        _freeze_start_up_heap()

    def _first_process(self) -> bool:
        """True unless another live process (say `fleet web` beside `fleet chat`) has this data
        dir open: only then are sandbox directories and mounted workspaces orphans of a
        crash."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.settings.data_dir / "service.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(self._lock_file, fcntl.LOCK_SH)  # held while open: others see us
        return alone

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for live in list(self.live.values()):
            live.cancel.cancel("the workspace is shutting down")
        for live in list(self.live.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(live.done), 10)
        await self.replicas.close()
        self._turn_threads.shutdown(wait=False)
        self.sandboxes.close()
        self.workspace_io.close()
        if self.settings.otel_exporter_otlp_endpoint:
            from ..otel import shutdown

            await asyncio.to_thread(shutdown)
        await self.store.close()
        self._lock_file.close()


    # -- tenancy ---------------------------------------------------------------------------
    async def authenticate(self, secret: str) -> Principal | None:
        """The user whose live API token `secret` is, or None (unknown or revoked)."""
        from ..store.repos import TokenRepo

        user = await TokenRepo(self.store).authenticate(secret)
        return None if user is None else Principal(user.id, user.tenant_id, user.name,
                                                   user.admin)

    async def ping(self) -> None:
        """Raise unless the database answers a query."""
        import sqlalchemy as sa

        async with self.store.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    @staticmethod
    def _home(principal: Principal) -> str:
        """The tenant a principal's sessions are listed and made in."""
        return LOCAL_TENANT_ID if principal.tenant_id == ALL_TENANTS else principal.tenant_id

    # -- sessions and documents --------------------------------------------------------------
    async def create_session(self, title: str = "New session", *,
                             principal: Principal | None = None) -> SessionRow:
        """A new session of the principal (default: the local user)."""
        if principal is None or principal.tenant_id == ALL_TENANTS:
            return await self.store.sessions.create(title, tenant_id=self.user.tenant_id,
                                                    user_id=self.user.id)
        return await self.store.sessions.create(title, tenant_id=principal.tenant_id,
                                                user_id=principal.user_id)

    async def session(self, principal: Principal, session_id: str) -> SessionRow:
        """The session, NotFound if it is unknown or another tenant's."""
        session = await self.store.sessions.get(session_id)
        if not principal.sees(session.tenant_id):
            raise NotFound("session", session_id)
        return session

    async def list_sessions(self, principal: Principal, q: str | None = None, *,
                            limit: int = 50, offset: int = 0,
                            include_archived: bool = False) -> list[SessionRow]:
        """The principal's tenant's sessions, newest activity first; `q`: part of the title."""
        return await self.store.sessions.list(self._home(principal), q, limit=limit,
                                              offset=offset, include_archived=include_archived)

    async def turn_counts(self, sessions: Sequence[SessionRow]) -> dict[str, int]:
        """How many turns each of `sessions` (rows this caller read) has."""
        return await self.store.sessions.turn_counts([s.id for s in sessions])

    async def count_sessions(self, principal: Principal, q: str | None = None, *,
                             include_archived: bool = False) -> int:
        return await self.store.sessions.count(self._home(principal), q,
                                               include_archived=include_archived)

    async def update_session(self, principal: Principal, session_id: str, *,
                             title: str | None = None, archived: bool | None = None,
                             models: tuple[str | None, str | None] | None = None
                             ) -> SessionRow:
        """`models`: the session's own (root, sub) model, None for the server's; its next turns
        run with them."""
        session = await self.session(principal, session_id)
        if models is not None:
            if session.imported_from is not None:  # it runs no turns
                raise ReadOnly(session_id, session.imported_from)
            session = await self.store.sessions.set_models(session_id, *models)
        if title is not None:
            session = await self.store.sessions.rename(session_id, title)
        if archived is not None:
            session = await self.store.sessions.archive(session_id, archived)
        return session

    async def turns(self, principal: Principal, session_id: str) -> list[TurnRow]:
        """The session's turns, those that have just finished as closed."""
        await self.session(principal, session_id)
        await self.stored(session_id)
        return await self.store.turns.list(session_id)

    async def asked(self, turns: Sequence[TurnRow]) -> dict[str, list[dict[str, str | None]]]:
        """The ask_user questions of `turns` (rows this caller read) with their replies, for
        the transcript: turn id -> [{question, reply}]."""
        return await self.store.events.asked([t.id for t in turns])

    async def turn(self, principal: Principal, turn_id: str, *, complete: bool = False
                   ) -> TurnRow:
        """The turn as stored once its outcome is (with `complete`: once it has stopped
        altogether, its trace recorded); NotFound if unknown or another tenant's, at once (not
        after the wait, whose length would tell that the turn exists)."""
        turn = await self.store.turns.get(turn_id)
        try:
            await self.session(principal, turn.session_id)
        except NotFound:
            raise NotFound("turn", turn_id) from None
        await self.stored(turn_id=turn_id, complete=complete)
        return await self.store.turns.get(turn_id)

    async def turn_events(self, principal: Principal, turn_id: str, after_seq: int = 0,
                          limit: int | None = None) -> list[dict[str, Any]]:
        """The turn's stored events after `after_seq`, what it has emitted so far included."""
        await self.turn(principal, turn_id)
        return await live_turns.stored_events(self.store, self.live.get(turn_id), turn_id,
                                              after_seq, limit)

    async def active_turn(self, principal: Principal, session_id: str) -> dict[str, Any] | None:
        """The session's turn in flight (running, or waiting on the user), if any: its id,
        status, the seq its events stand at and its question."""
        await self.session(principal, session_id)
        await self.stored(session_id)
        turn = await self.store.turns.running_for_session(session_id)
        if turn is None:
            return None
        live = self.live.get(turn.id)
        last_seq = live.last_seq if live else await self.store.events.last_seq(turn.id)
        return {"turn_id": turn.id, "status": turn.status, "last_seq": last_seq,
                "question": (turn.pending or {}).get("question")}

    async def documents(self, principal: Principal, session_id: str) -> list[Document]:
        await self.session(principal, session_id)
        return await self.store.documents.list(session_id)

    async def document(self, principal: Principal, document_id: str) -> Document:
        """The document, NotFound if unknown or of another tenant's session."""
        document = await self.store.documents.get(document_id)
        try:
            await self.session(principal, document.session_id)
        except NotFound:
            raise NotFound("document", document_id) from None
        return document

    async def read_document(self, principal: Principal, document_id: str, start: int = 0,
                            length: int | None = None) -> tuple[Document, str]:
        document = await self.document(principal, document_id)
        return document, await self.store.documents.read(document_id, start, length)

    async def attach_document(self, principal: Principal, document_id: str,
                              attached: bool = True) -> Document:
        """Attach a document to its session's context, or detach it: kept and listed for the
        user, out of the agent's view (neither listed to it nor read) until attached again."""
        await self.document(principal, document_id)
        return await self.store.documents.set_attached(document_id, attached)

    async def delete_document(self, principal: Principal, document_id: str) -> None:
        await self.document(principal, document_id)
        await self.store.documents.delete(document_id)

    async def files(self, principal: Principal, session_id: str, *, write: bool = False
                    ) -> Workspace:
        """The session's workspace (what its sandbox sees at /work); with `write`, ReadOnly
        for an imported session."""
        session = await self.session(principal, session_id)
        if write and session.imported_from is not None:
            raise ReadOnly(session_id, session.imported_from)
        return self.session_workspace(session_id)

    async def export_session(self, principal: Principal, session_id: str,
                             format: ExportFormat = "json") -> tuple[SessionRow, str]:
        """The session and its export (JSON or Markdown), finished turns as closed."""
        session = await self.session(principal, session_id)
        await self.stored(session_id)
        return session, await exports.export_session(self.store, session_id, format)

    async def export_turn(self, principal: Principal, turn_id: str,
                          format: ExportFormat = "json") -> str:
        await self.turn(principal, turn_id)
        return await exports.export_turn(self.store, turn_id, format)

    async def usage(self, principal: Principal) -> list[tuple[str, str, Any, dict[str, Any]]]:
        """(session id, title, created_at, usage) of the tenant's turns that recorded usage,
        oldest first; turns that have just finished count."""
        from ..store.repos import UsageRepo

        await self.stored()
        return await UsageRepo(self.store).turns(self._home(principal))

    # -- the trace inspector (inspector.py) -------------------------------------------------
    async def call(self, principal: Principal, turn_id: str, call_id: str
                   ) -> inspector.LmCallDetail:
        """One model call of the turn, its request and reply; NotFound if either is unknown
        or the turn is another tenant's."""
        await self.turn(principal, turn_id)
        live = self.live.get(turn_id)
        if live is not None:  # a running turn's call may not be written yet
            await live.recorder.flush()
        return await inspector.call_detail(self.store, turn_id, call_id)

    async def search_turns(self, principal: Principal, query: inspector.TurnQuery, *,
                           limit: int = 50, cursor: str | None = None
                           ) -> inspector.TurnSearchPage:
        """The principal's tenant's turns matching `query` (its tenant_id is replaced)."""
        await self.stored()
        query = dataclasses.replace(query, tenant_id=self._home(principal))
        return await inspector.search_turns(self.store, query, limit=limit, cursor=cursor)

    async def set_tags(self, principal: Principal, turn_id: str, tags: list[str]
                       ) -> TurnRow:
        await self.turn(principal, turn_id)
        return await self.store.turns.set_tags(turn_id, tags)

    async def model_usage(self, principal: Principal, *, turn_id: str | None = None,
                          session_id: str | None = None, since: Any = None, until: Any = None
                          ) -> inspector.ModelUsageReport:
        """Calls, tokens and cost per model and role in one scope: a turn, a session, or the
        tenant's turns started in [since, until)."""
        if turn_id is not None:
            await self.turn(principal, turn_id)
        elif session_id is not None:
            await self.session(principal, session_id)
            await self.stored(session_id)
        else:
            await self.stored()
        return await inspector.model_usage(self.store, self._home(principal), turn_id=turn_id,
                                           session_id=session_id, since=since, until=until)

    async def import_rlm_log(self, principal: Principal, name: str, data: bytes,
                             title: str | None = None) -> SessionRow:
        """A trajectory log of the RLM reference implementation as a read-only session of
        the principal (RlmLogError, nothing stored, on a log this reader does not take)."""
        from .imports import import_rlm_log

        user_id = self.user.id if principal.tenant_id == ALL_TENANTS else principal.user_id
        return await import_rlm_log(self.store, name, data, title=title,
                                    tenant_id=self._home(principal), user_id=user_id)

    # -- optimised programs (programs.py) -----------------------------------------------------
    async def promoted(self, principal: Principal) -> dict[str, Program]:
        """The program versions the principal's tenant promoted, by target: what its runs
        outside a session (MCP's rlm_query) run, as its turns do."""
        return await self.programs.promoted(self._home(principal))

    async def datasets(self, principal: Principal) -> list[Any]:
        """The principal's tenant's datasets."""
        return await self.programs.datasets(self._home(principal))

    async def program_versions(self, principal: Principal) -> tuple[list[Any], dict[str, Any]]:
        """The tenant's program versions, and the promoted one of each target."""
        tenant = self._home(principal)
        return (await self.programs.versions(tenant),
                await self.programs.promoted_versions(tenant))

    async def optimise(self, principal: Principal, target: str, dataset: str, *,
                       metric: str | None = None, max_metric_calls: int | None = None,
                       limits: dict[str, Any] | None = None) -> OptimisationRun:
        """Start an optimisation run for the principal's tenant (the caller checks it is an
        admin), its whole budget at most one turn's (`limits` only lower it)."""
        tenant = self._home(principal)
        settings = self.with_limits(limits, tenant=await self.store.tenant_limits.get(tenant))
        return await self.optimising.start(settings, tenant, target, dataset,
                                           metric_name=metric,
                                           max_metric_calls=max_metric_calls)

    def optimisation_runs(self, principal: Principal) -> list[OptimisationRun]:
        return self.optimising.of(self._home(principal))

    async def promote(self, principal: Principal, version: str) -> None:
        """Promote a version for the principal's tenant (the caller checks it is an admin);
        NotFound for another tenant's, Incompatible for another release's."""
        await self.programs.promote(self._home(principal), version, by=principal.name)

    async def rollback(self, principal: Principal, target: str) -> None:
        await self.programs.rollback(self._home(principal), target, by=principal.name)

    async def add_feedback(self, principal: Principal, turn_id: str, thumbs_up: bool,
                           comment: str | None = None, corrected_answer: str | None = None
                           ) -> TurnRow:
        """Record a person's thumbs up or down on a finished turn (ValueError while it runs or
        waits); the feedback datasets are made of these. Returns the turn."""
        turn = await self.turn(principal, turn_id, complete=True)
        if turn.status in (TurnStatus.RUNNING, TurnStatus.WAITING):
            raise ValueError(f"turn {turn_id} is {turn.status}: feedback is on finished turns")
        session = await self.store.sessions.get(turn.session_id)
        await self.programs.add_feedback(session.tenant_id, turn_id, principal.name, thumbs_up,
                                         comment, corrected_answer)
        return turn

    async def tenant_limits(self, principal: Principal) -> dict[str, Any]:
        """The limits the principal's tenant's admin set (only those set)."""
        return await self.store.tenant_limits.get(self._home(principal))

    async def set_tenant_limits(self, principal: Principal, limits: dict[str, Any]) -> None:
        """Replace the tenant's own limits (the caller checks the principal is its admin);
        LimitRaised above the server's, ValidationError on a bad value."""
        self.with_limits(limits)
        await self.store.tenant_limits.set(self._home(principal), limits)

    async def add_document(self, session_id: str, name: str, data: bytes | BinaryIO, *,
                           principal: Principal | None = None) -> Document:
        """Extract text in a bounded process (DocumentError on bad input or a cap hit; a few
        at a time per tenant) and store it once by content hash."""
        session = await (self.session(principal, session_id) if principal is not None
                         else self.store.sessions.get(session_id))
        if session.imported_from is not None:
            raise ReadOnly(session_id, session.imported_from)
        doc = await self.extractor.extract(session.tenant_id, name, data,
                                           ExtractionLimits.of(self.settings),
                                           self.settings.extract_concurrency)
        # The blob is the extracted text, so its key is that text's hash, not the upload's: the
        # same bytes as page.html and page.txt are two texts.
        sha = await asyncio.to_thread(lambda: hashlib.sha256(doc.text.encode()).hexdigest())
        return await self.store.documents.add(session_id, doc.name, doc.kind, doc.size_bytes,
                                              doc.chars, sha, text=doc.text,
                                              encoding=doc.encoding)

    # -- each session's sandbox and workspace (SandboxPool) ---------------------------------
    def workspace(self, session_id: str) -> Path:
        return self.sandboxes.workspace(session_id)

    def session_workspace(self, session_id: str) -> Workspace:
        return self.sandboxes.session_workspace(session_id)

    def session_sandbox(self, session_id: str) -> Sandbox:
        return self.sandboxes.sandbox(session_id)

    def _save_state(self, session_id: str, sandbox: Sandbox | None = None) -> None:
        self.sandboxes.save_state(session_id, sandbox)

    def lost_variables(self, session_id: str) -> list[str]:
        return self.sandboxes.lost_variables(session_id)

    async def delete_session(self, session_id: str, *, principal: Principal | None = None
                             ) -> None:
        """The session and everything of it: its records, its sandbox, its workspace (the
        directory here and, on Daytona, its volume). Busy while a turn is in flight."""
        if principal is not None:
            await self.session(principal, session_id)
        await self.stored(session_id, complete=True)
        if await self.store.turns.running_for_session(session_id):
            raise Busy(f"session {session_id} has a turn in flight; cancel it first")
        await self.store.sessions.delete(session_id)
        await self.sandboxes.remove(session_id)

    # -- the turn protocol of the entry points ----------------------------------------------
    async def post(self, principal: Principal, session_id: str, text: str, *,
                   limits: dict[str, Any] | None = None, document_ids: Sequence[str] = (),
                   answering: str | bool = False) -> Posted:
        """A message to the session. `answering` False: it starts a turn (Busy if one is in
        flight, a waiting one too). A turn id: it answers that turn's ask_user question and the
        turn goes on. True: it answers the session's waiting turn if there is one, else it
        starts a turn. Bad `limits` (LimitRaised, ValidationError) fail before anything is
        recorded; `document_ids` (the session's) go with the message as its attachments."""
        async with self.store.reads():  # the session and its tenant's limits: one read
            session = await self.session(principal, session_id)
            tenant_limits = await self.store.tenant_limits.get(session.tenant_id)
        if answering is True:
            await self.stored(session_id, complete=True)
            waiting = await self.store.turns.running_for_session(session_id)
            answering = waiting.id if waiting is not None and waiting.status == "waiting" \
                else False
        if isinstance(answering, str) and answering:
            turn = await self.turn(principal, answering)
            if turn.session_id != session_id:
                raise NotFound("turn", answering)
            await self.stored(session_id, complete=True)  # its question and events are stored
            after = await self.store.events.last_seq(answering)
            live = await self.reply(answering, text)
            return Posted(answering, session_id, after, True, live.done)
        for document_id in document_ids:  # the principal's; send checks they are the session's
            await self.document(principal, document_id)
        live = await self.send(session_id, text, limits, document_ids, session=session,
                               tenant_limits=tenant_limits)
        return Posted(live.turn_id, session_id, 0, False, live.done)

    def follow(self, turn_id: str, after_seq: int = 0, *, principal: Principal | None = None,
               session_id: str | None = None) -> AsyncGenerator[Event, None]:
        """Every event of the turn after `after_seq`, once each and in order: the stored ones,
        then live ones until the turn stops (a finished turn: just the stored ones), whichever
        process runs it. A reader that falls behind the live stream catches up from the store;
        a missing live event is read from the store. Never re-runs anything. With `principal`,
        NotFound unless the turn is of its tenant; with `session_id`, unless it is of that
        session.

        The subscription starts with this call, not with the first iteration: called just
        after `post`, it gets every event live, with no read of the store. A turn another
        process runs is read from the store as the notices of its new events arrive."""
        live = self.live.get(turn_id)
        queue = subscribe(live)
        return self._follow(principal, session_id, turn_id, after_seq, live, queue)

    async def _follow(self, principal: Principal | None, session_id: str | None, turn_id: str,
                      after_seq: int, live: LiveTurn | None, queue: asyncio.Queue
                      ) -> AsyncGenerator[Event, None]:
        of_session: str | None = live.session_id if live else None
        status: str | None = TurnStatus.RUNNING if live else None
        try:
            if live is not None:  # a live turn here needs no read: it knows its tenant
                if principal is not None and not principal.sees(live.tenant_id or ""):
                    raise NotFound("turn", turn_id)
            elif principal is not None:
                turn = await self.turn(principal, turn_id)
                of_session, status = turn.session_id, turn.status
            else:  # turns run elsewhere are looked up together
                of_session, status = await self.replicas.reads.turn(turn_id)
            if session_id not in (None, of_session):
                raise NotFound("turn", turn_id)
        except BaseException:
            if live is not None and queue in live.subscribers:
                live.subscribers.remove(queue)
            raise
        if live is None and status == TurnStatus.RUNNING and turn_id not in self.live:
            assert of_session is not None
            stream = live_turns.tail(self.store, self.replicas.reads, self.replicas.relay,
                                     turn_id, of_session, after_seq)
        else:
            stream = live_turns.follow(self.store, self.live, turn_id, after_seq, live, queue)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                yield event

    async def watch(self, session_id: str) -> Watch:
        """Notices (turn id, newest seq) of the session's turns, whichever process runs them,
        until `unwatch`: how a reader learns of a turn it did not start. The caller has checked
        the session is its principal's; a notice is a pointer to follow, never an event."""
        return await self.replicas.relay.watch(session_id)

    def unwatch(self, watch: Watch) -> None:
        self.replicas.relay.unwatch(watch)

    # -- turns: the steps post and follow are made of ------------------------------------
    async def send(self, session_id: str, message: str,
                   limits: dict[str, Any] | None = None,
                   attachments: Sequence[str] = (), *,
                   session: SessionRow | None = None,
                   tenant_limits: dict[str, Any] | None = None) -> LiveTurn:
        """Start a turn. One turn at a time per session: a second message gets Busy.
        `attachments`: ids of the session's documents sent with the message; the agent reads
        their names after the text, the turn records them apart from it. `session` and
        `tenant_limits`: its row and its tenant's limits, when the caller has just read them."""
        if session is None:
            session = await self.store.sessions.get(session_id)
        if session.imported_from is not None:
            raise ReadOnly(session_id, session.imported_from)
        limits = renamed_limits(limits, "limits") if limits else limits  # stored by one name
        # bad overrides fail before a turn is recorded
        if tenant_limits is None:
            tenant_limits = await self.store.tenant_limits.get(session.tenant_id)
        self.with_limits(limits, tenant=tenant_limits)
        if not message.strip():
            raise ValueError("the message is empty")
        attached = []
        for document_id in dict.fromkeys(attachments):
            document = await self.store.documents.get(document_id)
            if document.session_id != session_id:
                raise NotFound("document", document_id)
            if not document.attached:  # sent with a message: in the agent's view again
                await self.store.documents.set_attached(document_id, True)
            attached.append({"id": document.id, "name": document.name})
        message += attachment_note([a["name"] for a in attached])
        await self.stored(session_id, complete=True)
        async with self._starting.hold(session_id):
            async with self.store.reads():
                earlier = await self.store.turns.list(session_id)
                if any(t.status in ACTIVE_STATUSES for t in earlier):
                    raise Busy(f"session {session_id} already has a turn in flight")
                programs = await self.programs.promoted(session.tenant_id)
            try:  # another process may have started one meanwhile
                turn = await self.store.turns.start(
                    session_id, message, attached, owner=self.replicas.owner,
                    lease_s=self.settings.turn_lease_s,
                    programs={t: p.version_id for t, p in programs.items()})
            except InFlight as exc:
                raise Busy(str(exc)) from None
            return self._launch(turn.id, session, message, limits, None, None, 0, programs,
                                tenant_limits=tenant_limits, earlier=earlier)

    async def reply(self, turn_id: str, text: str) -> LiveTurn:
        """Answer a turn waiting on ask_user; it resumes where it paused (also after a restart)."""
        live = self.live.get(turn_id)
        if live is not None:
            await self.stored(live.session_id, complete=True)
        session_id = (await self.store.turns.get(turn_id)).session_id
        async with self._starting.hold(session_id):
            turn = await self.store.turns.get(turn_id)
            if turn.status != TurnStatus.WAITING or not turn.pending:
                raise ValueError(f"turn {turn_id} is {turn.status}, not waiting for an answer")
            if turn_id in self.live:
                raise Busy(f"turn {turn_id} is already resuming")
            # Any process may resume it; the first to take it does.
            pending = await self.store.leases.take_waiting(turn_id, self.replicas.owner,
                                                           self.settings.turn_lease_s)
            if pending is None:
                raise Busy(f"turn {turn_id} was answered or dismissed meanwhile")
            start_seq = await self.store.events.last_seq(turn_id)
            session = await self.store.sessions.get(turn.session_id)
            programs = await self.programs.ran(session.tenant_id, turn.programs)
            return self._launch(turn_id, session, turn.user_message, pending.get("limits"),
                                pending, text, start_seq, programs,
                                tenant_limits=await self.store.tenant_limits.get(
                                    session.tenant_id),
                                earlier=await self.store.turns.list(session.id))

    async def stored(self, session_id: str | None = None, turn_id: str | None = None, *,
                     complete: bool = False) -> None:
        """Return once the outcome of each live turn (of the session, or this turn) that has
        announced turn_finished is in the store: its status and answer, or its question to the
        user. turn_finished reaches clients without waiting for its write; a read made in
        answer to it goes through this, so it sees the turn closed.

        With `complete`, wait until such turns have stopped altogether (saved their sandbox's
        variables, recorded their trace): the session's next message or answer does, rather
        than get Busy."""
        for live in list(self.live.values()):
            if not live.finished or session_id not in (None, live.session_id) \
                    or turn_id not in (None, live.turn_id):
                continue
            # While the database is away, a read waits briefly (it may be back: the writer
            # tries at once), then answers for itself (503, or what is stored so far).
            limit = STALLED_WAIT_S if live.recorder.stalled else SETTLE_S
            live.recorder.retry_now()
            with contextlib.suppress(Exception):
                if complete or live.finished == "waiting" or live.recorder.incomplete:
                    # stored once the turn stops (one that lost events closes its record then)
                    await asyncio.wait_for(asyncio.shield(live.done), limit)
                else:  # the recorder stores the outcome with the event
                    await asyncio.wait_for(live.recorder.flush(), limit)

    def with_limits(self, limits: dict[str, Any] | None, *, clamp: bool = False,
                    tenant: dict[str, Any] | None = None) -> Settings:
        """The settings a turn runs with: the server's limits, lowered by the tenant's own
        (`tenant`, as its admin set them), then by a message's overrides, validated. Overrides
        only lower that ceiling: one above raises LimitRaised, or with `clamp` (a paused turn
        resumed after the limits went down) gives way to the ceiling. A limit's deprecated
        name (`max_lm_calls`) is taken for its name, with a warning."""
        limits = renamed_limits(limits, "limits") if limits else limits
        unknown = set(limits or {}) - LIMIT_KEYS
        if unknown:
            raise ValueError(f"unknown limits {sorted(unknown)}; allowed: {sorted(LIMIT_KEYS)}")
        ceiling = {name: (getattr(self.settings, name), "server") for name in LIMIT_KEYS}
        for name, value in (tenant or {}).items():
            if name in ceiling and value < ceiling[name][0]:
                ceiling[name] = (value, "tenant")
        lowered = {name: limit for name, (limit, whose) in ceiling.items() if whose == "tenant"}
        if limits:
            # Only the overrides are validated: building Settings again would read the
            # environment and .env, milliseconds of the event loop's time on every message.
            checked = _limit_overrides(type(self.settings)).model_validate(limits)
            for name, value in checked.model_dump(exclude_unset=True).items():
                limit, whose = ceiling[name]
                if value > limit and not clamp:
                    raise LimitRaised(name, value, limit, whose)
                lowered[name] = min(value, limit)
        return self.settings.model_copy(update=lowered) if lowered else self.settings

    def cancel(self, turn_id: str, reason: str | None = None) -> bool:
        """Stop a turn running in this process (see `stop` for one anywhere, and a waiting
        one); False when it is not running here, also when it has announced its end and is
        only finishing its records (a cancel arriving then must be told, not swallowed)."""
        live = self.live.get(turn_id)
        if live is None or live.finished is not None:
            return False
        live.cancel.cancel(reason or "cancelled by the user")
        return True

    async def stop(self, turn_id: str, *, principal: Principal | None = None) -> bool:
        """Cancel a running turn, whichever process runs it, or dismiss one waiting on the
        user's answer. With `principal`, NotFound unless the turn is of its tenant. False if
        the turn is not in flight; OwnerUnreachable if the process running it does not answer."""
        if principal is not None:
            await self.turn(principal, turn_id)
        if self.cancel(turn_id):
            return True
        await self.stored(turn_id=turn_id)  # a turn that just paused: its question is stored
        status, owner = await self.store.leases.owner_of(turn_id)
        if status == TurnStatus.RUNNING:
            if owner is None or owner == self.replicas.owner:
                return False  # it is being closed
            return await self.replicas.cancel(turn_id, owner, "cancelled by the user")
        if status != TurnStatus.WAITING:
            return False
        pending = await self.store.leases.take_waiting(turn_id, self.replicas.owner,
                                                       self.settings.turn_lease_s)
        if pending is None:  # answered or dismissed by another process meanwhile
            return False
        reason = "dismissed by the user"
        # The record ends like any cancelled turn, so replays and exports tell the truth.
        usage = Usage.model_validate(pending["usage"])
        await end_record(self.store, turn_id, await self.store.events.list(turn_id),
                         "cancelled", usage, partial_answer=None, reason=reason)
        await self.store.turns.finish(turn_id, TurnStatus.CANCELLED,
                                      usage=usage.model_dump(mode="json"), error=reason)
        return True

    def _launch(self, turn_id: str, session: SessionRow, message: str,
                limits: dict[str, Any] | None, resume: dict | None, reply: str | None,
                start_seq: int, programs: dict[str, Program], *,
                tenant_limits: dict[str, Any], earlier: Sequence[TurnRow]) -> LiveTurn:
        """Run the turn in a worker thread. `tenant_limits` and `earlier` (the session's turns,
        its history) were read by the caller, under the session's lock."""
        from ..store.recorder import EventRecorder

        session_id, tenant = session.id, session.tenant_id
        # send() refused any raise; a resumed turn meets the limits as they are now
        settings = self.with_limits(limits, clamp=True, tenant=tenant_limits
                                    ).with_models(session.root_model, session.sub_model)
        remember(settings.api_key, settings.daytona_api_key)  # redacted from what is stored
        history = [Exchange(t.user_message, t.answer or "") for t in earlier
                   if t.status == TurnStatus.OK and t.id != turn_id]
        live = LiveTurn(turn_id, session_id, CancelToken(), self.loop.create_future(),
                        tenant_id=tenant, last_seq=start_seq)
        outcome = TurnOutcome()
        # Events the store cannot take (the database away too long, its disk full) end the turn.
        recorder = live.recorder = EventRecorder(
            self.store, turn_id, tenant=tenant, loop=self.loop, outcome=outcome,
            max_buffered=self.settings.max_unwritten_events,
            on_fault=lambda lost: live.cancel.cancel(lost.reason), owner=self.replicas.owner)
        stream = EventStream(turn_id, [recorder, lambda e: self._fan_out(live, e)],
                             start_seq=start_seq)
        turn = Turn(settings, StoreSession(self, session_id), stream, message, history,
                    summary=self._summaries.get(session_id), cancel=live.cancel,
                    capture=self.store.calls if settings.capture_calls else None,
                    programs=programs)
        self.live[turn_id] = live

        def run() -> TurnResult:
            result = turn.run(resume=resume, reply=reply)
            self._save_state(session_id)
            self.sandboxes.touch(session_id)
            return result

        async def finish() -> None:
            # Writes wait out an unavailable database: a turn that ends in an outage is closed
            # when the database is back, never left `running`.
            try:
                result = await self.loop.run_in_executor(
                    self._turn_threads, contextvars.copy_context().run, run)
                await recorder.close()
                if result.summary:
                    self._summaries[session_id] = result.summary
                usage = result.usage.model_dump(mode="json") if result.usage else None
                if recorder.disowned:  # another process closed its record: nothing to write
                    log.warning("turn %s stopped after %s", turn_id, recorder.disowned)
                elif result.status == "waiting":
                    await until_available(lambda: self.store.turns.set_pending(
                        turn_id, {**(result.pending or {}), "question": result.question,
                                  "limits": limits}), f"parking turn {turn_id}")
                else:
                    # The recorder stored the outcome with turn_finished; this adds the trace
                    # and the exact error.
                    trace_id = await self._trace(turn_id, session_id)
                    written = outcome.written
                    error = redact(result.error) if result.error else None
                    if (trace_id or written is None or written["error"] != error
                            or written["status"] != result.status):
                        await until_available(lambda: self.store.turns.finish(
                            turn_id, result.status, answer=result.answer,
                            usage=usage, error=error, trace_id=trace_id),
                            f"finishing turn {turn_id}")
                live.done.set_result(result)
            except Exception as exc:  # the turn fails, the service goes on
                log.exception("turn %s failed", turn_id)
                error_type, message = type(exc).__name__, redact(str(exc))

                async def close() -> None:
                    usage = await close_failed(self.store, self.settings, turn_id, error_type,
                                               message, after_seq=recorder.last_seq)
                    await self.store.turns.finish(turn_id, TurnStatus.ERROR, usage=usage,
                                                  error=f"{error_type}: {message}")

                if not recorder.disowned:
                    with contextlib.suppress(Exception):  # deleted meanwhile: nothing to close
                        await until_available(close, f"closing turn {turn_id}")
                live.done.set_exception(exc)
            finally:
                self.live.pop(turn_id, None)
                live_turns.end(live)

        self.loop.create_task(finish())
        return live

    # -- tracing: a finished turn becomes one MLflow trace and one OTLP trace ---------------
    async def _trace(self, turn_id: str, session_id: str) -> str | None:
        """Export the turn, built from its recorded events; returns the MLflow trace id."""
        if not (self.settings.mlflow_tracking_uri or self.settings.otel_exporter_otlp_endpoint):
            return None
        stored = await until_available(lambda: self.store.events.list(turn_id),
                                       f"reading turn {turn_id} to trace it")
        events = [parse_event(r.payload) for r in stored]
        if self.settings.otel_exporter_otlp_endpoint:
            from ..otel import record_export

            await asyncio.to_thread(
                record_export, self.settings, events,
                attributes={"fleet.turn_id": turn_id, "fleet.session_id": session_id},
                record=lambda call_id: self.store.calls.read(turn_id, call_id))
        if not self.settings.mlflow_tracking_uri:
            return None
        from ..tracing import record_trace

        return await asyncio.to_thread(
            record_trace, self.settings, events, name="turn",
            tags={"fleet.turn_id": turn_id, "fleet.session_id": session_id})

    def _fan_out(self, live: LiveTurn, event: Event) -> None:
        self.loop.call_soon_threadsafe(deliver, live, event)

    _deliver = staticmethod(deliver)

    def events(self, turn_id: str, after_seq: int = 0) -> AsyncGenerator[Event, None]:
        """Every event of a turn after `after_seq`: the store's record, then live ones until the
        turn stops. Raises Overflow if the consumer falls behind (`follow` recovers instead)."""
        live = self.live.get(turn_id)
        return live_turns.events(self.store, turn_id, after_seq, live, subscribe(live))


__all__ = ["LIMIT_KEYS", "Busy", "LimitRaised", "LiveTurn", "Overflow", "Posted", "ReadOnly",
           "SessionService", "StoreSession"]
