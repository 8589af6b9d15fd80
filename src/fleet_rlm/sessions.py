"""Sessions as the CLI, the server and the MCP server use them: documents, turns run in worker
threads, their events recorded in the store and fanned out live, ask_user pause/resume, cancel,
and each session's persistent python sandbox with its workspace.

This is a consumer of the engine: it writes the store from the event stream; the engine never
sees the store (it gets a `SessionContext`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pydantic

from .attachments import note as attachment_note
from .budget import CallCost, CancelToken, Limits, Usage, renamed_limits
from .config import Settings
from .engine.agent import DocumentInfo
from .engine.turn import Exchange, Turn, TurnResult
from .events import Event, EventStream, NodeRef, parse_event
from .extraction import ExtractionLimits, Extractor
from .redaction import redact, remember
from .sandbox import Sandbox, SandboxError, create_sandbox
from .status import FINISHED_STATUSES, TurnStatus
from .store import NotFound, Store
from .store.db import INTERRUPTED
from .store.faults import until_available
from .store.models import Document, utcnow
from .workspace import LocalWorkspace, Workspace, WorkspaceError, WorkspaceIO

log = logging.getLogger(__name__)

WORKSPACE_DIRS = ("memory", "artifacts", "buffers", "meta")
LOST_VARIABLES = "meta/lost.json"  # written by SAVE_STATE
SUBSCRIBER_QUEUE = 2_000
SETTLE_S = 60.0  # longest wait for a finished turn to save its sandbox and record its outcome
WORKSPACE_IO_WORKERS = 4  # threads for workspace file operations over the API
STALLED_WAIT_S = 2.0  # that wait while the database is away
LIMIT_KEYS = {"max_calls", "max_tokens", "max_usd", "max_wall_s", "max_depth", "max_iterations"}

# Run inside the session's sandbox after each turn / when it starts: picklable globals survive a
# restart of the process; the others are listed as lost. Only a namespace that RESTORE_STATE
# prepared is saved, so a sandbox restarted without its state never overwrites the good save
# with an empty one; and the save is written whole or not at all.
SAVE_STATE = """
import pickle as _p, types as _t, json as _j, os as _o
if '_fleet_restored' not in globals():
    raise RuntimeError('this sandbox did not restore the saved state; not saving over it')
_keep, _lost = {}, []
for _k, _v in list(globals().items()):
    if _k.startswith('_') or isinstance(_v, _t.ModuleType) or callable(_v) and _k.isupper():
        continue
    try:
        _p.dumps(_v); _keep[_k] = _v
    except Exception:
        _lost.append(_k)
for _name, _write in (('namespace.pkl', lambda _f: _p.dump(_keep, _f)),
                      ('lost.json', lambda _f: _f.write(_j.dumps(sorted(_lost)).encode()))):
    with open(f'/work/meta/.{_name}.new', 'wb') as _f:
        _write(_f)
    _o.replace(f'/work/meta/.{_name}.new', f'/work/meta/{_name}')
"""
RESTORE_STATE = """
import pickle as _p, os as _o
if _o.path.exists('/work/meta/namespace.pkl'):
    with open('/work/meta/namespace.pkl', 'rb') as _f:
        globals().update(_p.load(_f))
_fleet_restored = True
"""


@functools.cache
def _limit_overrides(settings_type: type[Settings]) -> type[pydantic.BaseModel]:
    """A model of just the budget limits of `settings_type`, with their types and bounds."""
    fields = settings_type.model_fields
    return pydantic.create_model(f"{settings_type.__name__}Limits",
                                 **{key: (fields[key].annotation, fields[key])
                                    for key in sorted(LIMIT_KEYS)})


class LimitRaised(ValueError):
    """A message (or a tenant's admin) asked for more than the server, or the tenant, allows:
    limits may only go down. `whose` limit it was: "server" or "tenant"."""

    def __init__(self, field: str, asked: float, limit: float, whose: str = "server") -> None:
        super().__init__(f"{field}: {asked} is above the {whose}'s limit of {limit}; a message "
                         f"may only lower limits (an admin raises the {whose}'s in the settings)")
        self.field, self.asked, self.limit, self.whose = field, asked, limit, whose


class Busy(RuntimeError):
    """The session already has a turn in flight (running, or waiting on the user)."""


class Overflow(RuntimeError):
    """A subscriber fell behind: resume from its last seq."""

    def __init__(self, last_seq: int) -> None:
        super().__init__(f"too slow: resume from seq {last_seq}")
        self.last_seq = last_seq


@dataclass
class LiveTurn:
    """A turn executing now in this process."""

    turn_id: str
    session_id: str
    cancel: CancelToken
    done: asyncio.Future
    subscribers: list[asyncio.Queue] = field(default_factory=list)
    last_seq: int = 0
    recorder: Any = None
    finished: str | None = None  # the status turn_finished announced, once delivered


class TurnOutcome:
    """The recorder's `outcome`: a finished turn's status, answer, usage and error, stored on the
    turn's row in the transaction that stores its turn_finished event."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.written: dict[str, Any] | None = None

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any] | None:
        update = None
        for record in batch:
            if record["type"] == "error":
                self.error = f"{record['error_type']}: {record['message']}"
            elif record["type"] == "cancelled":
                self.error = record["reason"]
            elif record["type"] == "turn_finished" and record["status"] in FINISHED_STATUSES:
                status = record["status"]
                update = {"status": status, "answer": record["answer"],
                          "usage": record["usage"], "pending": None, "finished_at": utcnow(),
                          "error": None if status == "ok" else self.error}
                self.written = update
        return update


class StoreSession:
    """The engine's SessionContext on the store; called from the turn's worker thread."""

    def __init__(self, service: SessionService, session_id: str) -> None:
        self.service, self.session_id = service, session_id

    def _wait(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.service.loop).result()

    def _docs(self) -> list[Document]:
        return self._wait(self.service.store.documents.list(self.session_id))

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


class SessionService:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store.from_settings(settings)
        self.live: dict[str, LiveTurn] = {}  # turn id -> live turn
        self._sandboxes: dict[str, Sandbox] = {}
        self._quota_mounts: set[Path] = set()  # workspace images this service mounted
        self._used: dict[str, float] = {}  # session id -> when its sandbox was last used
        self._reaper: asyncio.Task | None = None
        self.extractor = Extractor()
        # One lock per session id while its sandbox is made (session_sandbox).
        self._sandbox_locks: dict[str, threading.Lock] = {}
        self._summaries: dict[str, str] = {}
        # Checking that a session is free and starting its turn happen as one step.
        self._starting = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop
        self.workspace_io = WorkspaceIO(WORKSPACE_IO_WORKERS, settings.workspace_io_timeout_s)

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.store.open()
        await self.store.prepare()
        if self._first_process():
            recovered = await self.store.recover_crashed()
            for turn_id in recovered:
                await self._close_failed(turn_id, "Interrupted", INTERRUPTED,
                                         status=TurnStatus.INTERRUPTED)
            if recovered:
                log.warning("%d turn(s) left running by a crash are marked interrupted",
                            len(recovered))
            from .sandbox.containment import sweep_stale_roots

            if swept := await asyncio.to_thread(sweep_stale_roots):
                log.warning("removed %d sandbox directories left by a crashed process", len(swept))
            from .sandbox.disk import unmount_under

            # Alone on this data dir: a mounted workspace image is a crashed service's.
            workspaces = self.settings.data_dir / "workspaces"
            if unmounted := await asyncio.to_thread(unmount_under, workspaces):
                log.warning("unmounted %d workspaces left mounted by a crashed process",
                            len(unmounted))
        if self.settings.sandbox in ("local", "gvisor"):
            from .sandbox.containment import warn_missing_defences

            await asyncio.to_thread(warn_missing_defences)
        self.user = await self.store.ensure_local_user()
        self._reaper = self.loop.create_task(self._reap_idle())
        if self.settings.mlflow_tracking_uri:  # a missing extra shows now, not after a turn
            from .tracing import import_mlflow

            import_mlflow()

    def _first_process(self) -> bool:
        """True unless another live process (say `fleet web` beside `fleet chat`) has this data
        dir open: only then are `running` turns really orphans of a crash."""
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
        for sandbox in self._sandboxes.values():
            sandbox.close()
        self._sandboxes.clear()
        from .sandbox.disk import unmount_workspace

        for root in self._quota_mounts:
            unmount_workspace(root)
        self.workspace_io.close()
        await self.store.close()
        self._lock_file.close()

    # -- sessions and documents --------------------------------------------------------------
    async def create_session(self, title: str = "New session") -> Any:
        return await self.store.sessions.create(title, tenant_id=self.user.tenant_id,
                                                user_id=self.user.id)

    async def add_document(self, session_id: str, name: str, data: bytes | BinaryIO
                           ) -> Document:
        """Extract text in a bounded process (DocumentError on bad input or a cap hit; a few
        at a time per tenant) and store it once by content hash."""
        session = await self.store.sessions.get(session_id)
        doc = await self.extractor.extract(session.tenant_id, name, data,
                                           ExtractionLimits.of(self.settings),
                                           self.settings.extract_concurrency)
        # The blob is the extracted text, so its key is that text's hash, not the upload's: the
        # same bytes as page.html and page.txt are two texts.
        sha = await asyncio.to_thread(lambda: hashlib.sha256(doc.text.encode()).hexdigest())
        return await self.store.documents.add(session_id, doc.name, doc.kind, doc.size_bytes,
                                              doc.chars, sha, text=doc.text)

    def workspace(self, session_id: str) -> Path:
        """The session's directory on this machine, laid out: its workspace on the local
        backends; on Daytona only the layout its volume gets."""
        root = self.settings.data_dir / "workspaces" / session_id
        if self.settings.sandbox in ("local", "gvisor"):  # its disk quota: an image mounted here
            from .sandbox.containment import quota_workspace

            if quota_workspace(self.settings, root):
                self._quota_mounts.add(root)
        for name in WORKSPACE_DIRS:
            (root / name).mkdir(parents=True, exist_ok=True)
        return root

    def session_workspace(self, session_id: str) -> Workspace:
        """The session's files as its sandbox sees them at /work, wherever the backend keeps
        them: the local directory, or (Daytona) the session's volume through its sandbox."""
        if self.settings.sandbox == "daytona":
            from .sandbox.daytona_workspace import DaytonaWorkspace

            return DaytonaWorkspace(lambda: self.session_sandbox(session_id))
        return LocalWorkspace(self.workspace(session_id),
                              max_file_bytes=self.settings.max_workspace_file_mb << 20)

    def session_sandbox(self, session_id: str) -> Sandbox:
        """The session's own python sandbox, alive across turns, restored after a restart.
        Made once even when a turn and the workspace routes ask for it at the same time."""
        self._used[session_id] = time.monotonic()
        sandbox = self._sandboxes.get(session_id)
        if sandbox is not None:
            return sandbox
        with self._sandbox_locks.setdefault(session_id, threading.Lock()):
            sandbox = self._sandboxes.get(session_id)
            if sandbox is None:
                # A Daytona sandbox replaced between turns (stopped, deleted) restores by itself.
                sandbox = create_sandbox(self.settings, work_dir=self.workspace(session_id),
                                         labels={"session": session_id}, restore=RESTORE_STATE)
                restored = sandbox.execute(RESTORE_STATE, timeout=60)
                if not restored.ok:
                    log.warning("could not restore session %s variables: %s", session_id,
                                restored.error_message)
                self._sandboxes[session_id] = sandbox
        return sandbox

    def _save_state(self, session_id: str, sandbox: Sandbox | None = None) -> None:
        sandbox = sandbox or self._sandboxes.get(session_id)
        if sandbox is not None:
            result = sandbox.execute(SAVE_STATE, timeout=60)
            if not result.ok:
                log.warning("could not save session %s variables: %s", session_id,
                            result.error_message)

    async def _reap_idle(self) -> None:
        """Save and close the sandboxes of sessions idle for FLEET_SANDBOX_IDLE_S (no turn in
        flight, no use); the next use starts a new one, restored from the save."""
        idle_s = self.settings.sandbox_idle_s
        while True:
            await asyncio.sleep(min(idle_s / 2, 60.0))
            busy = {live.session_id for live in self.live.values()}
            now = time.monotonic()
            for session_id in [s for s in self._sandboxes if s not in busy
                               and now - self._used.get(s, now) >= idle_s]:
                # Taken from the map here, on the loop, so no turn can pick it up any more.
                sandbox = self._sandboxes.pop(session_id)
                try:
                    await asyncio.to_thread(self._retire, session_id, sandbox)
                except Exception:  # noqa: BLE001 - the next session may still be reaped
                    log.exception("could not close the idle sandbox of session %s", session_id)

    def _retire(self, session_id: str, sandbox: Sandbox) -> None:
        # Under the session's lock: a new sandbox for it waits until this one is saved.
        with self._sandbox_locks.setdefault(session_id, threading.Lock()):
            try:
                self._save_state(session_id, sandbox)
            finally:
                sandbox.close()
        log.info("closed the idle sandbox of session %s (saved; restored on next use)",
                 session_id)

    def lost_variables(self, session_id: str) -> list[str]:
        """The variables the last turn left that could not be saved (a lambda, an open file):
        a new sandbox starts without them. Blocking (on Daytona it reads through the sandbox)."""
        try:
            chunks, _ = self.session_workspace(session_id).open_file(LOST_VARIABLES)
        except WorkspaceError as exc:
            if exc.reason != "not_found":
                raise
            return []
        return json.loads(b"".join(chunks))

    async def delete_session(self, session_id: str) -> None:
        """The session and everything of it: its records, its sandbox, its workspace (the
        directory here and, on Daytona, its volume)."""
        await self.stored(session_id, complete=True)
        if await self.store.turns.running_for_session(session_id):
            raise Busy(f"session {session_id} has a turn in flight; cancel it first")
        sandbox = self._sandboxes.pop(session_id, None)
        if sandbox is not None:
            await asyncio.to_thread(sandbox.close)
        self._sandbox_locks.pop(session_id, None)
        await self.store.sessions.delete(session_id)
        root = self.settings.data_dir / "workspaces" / session_id
        from .sandbox.disk import remove_workspace

        self._quota_mounts.discard(root)
        await asyncio.to_thread(remove_workspace, root)
        if self.settings.sandbox == "daytona":
            from .sandbox.daytona_admin import delete_session_volume

            try:
                await asyncio.to_thread(delete_session_volume, self.settings, session_id)
            except SandboxError as exc:  # the session is gone: gc finds its volume later
                log.warning("%s; `fleet daytona gc` deletes it later", exc)

    # -- turns -------------------------------------------------------------------------------
    async def send(self, session_id: str, message: str,
                   limits: dict[str, Any] | None = None,
                   attachments: Sequence[str] = ()) -> LiveTurn:
        """Start a turn. One turn at a time per session: a second message gets Busy.
        `attachments`: ids of the session's documents sent with the message; the agent reads
        their names after the text, the turn records them apart from it."""
        session = await self.store.sessions.get(session_id)
        limits = renamed_limits(limits, "limits") if limits else limits  # stored by one name
        # bad overrides fail before a turn is recorded
        self.with_limits(limits, tenant=await self.store.tenant_limits.get(session.tenant_id))
        if not message.strip():
            raise ValueError("the message is empty")
        attached = []
        for document_id in dict.fromkeys(attachments):
            document = await self.store.documents.get(document_id)
            if document.session_id != session_id:
                raise NotFound("document", document_id)
            attached.append({"id": document.id, "name": document.name})
        message += attachment_note([a["name"] for a in attached])
        await self.stored(session_id, complete=True)
        async with self._starting:
            if await self.store.turns.running_for_session(session_id):
                raise Busy(f"session {session_id} already has a turn in flight")
            turn = await self.store.turns.start(session_id, message, attached)
            return await self._launch(turn.id, session_id, message, limits, None, None, 0)

    async def reply(self, turn_id: str, text: str) -> LiveTurn:
        """Answer a turn waiting on ask_user; it resumes where it paused (also after a restart)."""
        live = self.live.get(turn_id)
        if live is not None:
            await self.stored(live.session_id, complete=True)
        async with self._starting:
            turn = await self.store.turns.get(turn_id)
            if turn.status != "waiting" or not turn.pending:
                raise ValueError(f"turn {turn_id} is {turn.status}, not waiting for an answer")
            if turn_id in self.live:
                raise Busy(f"turn {turn_id} is already resuming")
            pending = turn.pending
            await self.store.turns.set_pending(turn_id, None)
            start_seq = await self.store.events.last_seq(turn_id)
            return await self._launch(turn_id, turn.session_id, turn.user_message,
                                      pending.get("limits"), pending, text, start_seq)

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

    def cancel(self, turn_id: str) -> bool:
        """Stop a turn running in this process (see `stop` for a waiting one too)."""
        live = self.live.get(turn_id)
        if live is None:
            return False
        live.cancel.cancel("cancelled by the user")
        return True

    async def stop(self, turn_id: str) -> bool:
        """Cancel a running turn, or dismiss one waiting on the user's answer."""
        if self.cancel(turn_id):
            return True
        turn = await self.store.turns.get(turn_id)
        if turn.status != TurnStatus.WAITING:
            return False
        reason = "dismissed by the user"
        # The record ends like any cancelled turn, so replays and exports tell the truth.
        usage = Usage.model_validate(turn.pending["usage"])
        await self._end_record(turn_id, await self.store.events.list(turn_id), "cancelled",
                               usage, partial_answer=None, reason=reason)
        await self.store.turns.finish(turn_id, TurnStatus.CANCELLED,
                                      usage=usage.model_dump(mode="json"), error=reason)
        return True

    async def _close_failed(self, turn_id: str, error_type: str, message: str,
                            after_seq: int = 0, status: TurnStatus = TurnStatus.ERROR
                            ) -> dict[str, Any]:
        """End the record of a turn that stopped without a stored turn_finished (a crash cut it
        short, its events could not all be recorded) as any failed turn ends: an error, then
        turn_finished with `status` (error, or interrupted) after `after_seq`, its usage added
        up from the model calls it recorded. Returns the usage its record ends with."""
        stored = await self.store.events.list(turn_id)
        records = [r.payload for r in stored]
        if records and records[-1]["type"] == "turn_finished":
            return records[-1]["usage"]
        calls = [CallCost(r["model"], r["prompt_tokens"], r["completion_tokens"], r["cost_usd"])
                 for r in records if r["type"] == "lm_call"]
        snapshots = [r["usage"] for r in records if "usage" in r]
        limits = (Limits.model_validate(snapshots[-1]["limits"]) if snapshots
                  else Limits.from_settings(self.settings))
        elapsed = records[-1]["ts"] - records[0]["ts"] if records else 0.0
        usage = Usage.of_calls(calls, elapsed, limits)
        await self._end_record(turn_id, stored, "error", usage, after_seq=after_seq,
                               status=status, error_type=error_type, message=message,
                               detail=None)
        return usage.model_dump(mode="json")

    async def _end_record(self, turn_id: str, stored: list, kind: str, usage: Usage, *,
                          after_seq: int = 0, status: str | None = None, **fields: Any) -> None:
        """Append the closing events of a turn no engine runs any more: `kind` ("cancelled" or
        "error") with `fields`, then turn_finished (its status `kind`, or `status`), on the node
        of its first event; their seqs follow the last stored one, or `after_seq` if higher
        (events seen live, not stored)."""
        records = [r.payload for r in stored]
        node = (NodeRef(records[0]["node_id"], records[0]["parent_id"], records[0]["depth"])
                if records else NodeRef.root())
        stream = EventStream(turn_id, start_seq=max(records[-1]["seq"] if records else 0,
                                                    after_seq))
        stream.emit(kind, node, **fields)
        stream.emit("turn_finished", node, status=status or kind, answer=None, usage=usage)
        await self.store.events.append_many(turn_id, [e.model_dump(mode="json")
                                                      for e in stream.events])

    async def _launch(self, turn_id: str, session_id: str, message: str,
                      limits: dict[str, Any] | None, resume: dict | None, reply: str | None,
                      start_seq: int) -> LiveTurn:
        from .store.recorder import EventRecorder

        tenant = (await self.store.sessions.get(session_id)).tenant_id
        # send() refused any raise; a resumed turn meets the limits as they are now
        settings = self.with_limits(limits, clamp=True,
                                    tenant=await self.store.tenant_limits.get(tenant))
        remember(settings.api_key, settings.daytona_api_key)  # redacted from what is stored
        history = [Exchange(t.user_message, t.answer or "")
                   for t in await self.store.turns.list(session_id)
                   if t.status == TurnStatus.OK and t.id != turn_id]
        live = LiveTurn(turn_id, session_id, CancelToken(), self.loop.create_future(),
                        last_seq=start_seq)
        outcome = TurnOutcome()
        # Events the store cannot take (the database away too long, its disk full) end the turn.
        recorder = live.recorder = EventRecorder(
            self.store, turn_id, tenant=tenant, loop=self.loop, outcome=outcome,
            max_buffered=self.settings.max_unwritten_events,
            on_fault=lambda lost: live.cancel.cancel(lost.reason))
        stream = EventStream(turn_id, [recorder, lambda e: self._fan_out(live, e)],
                             start_seq=start_seq)
        turn = Turn(settings, StoreSession(self, session_id), stream, message, history,
                    summary=self._summaries.get(session_id), cancel=live.cancel)
        self.live[turn_id] = live

        def run() -> TurnResult:
            result = turn.run(resume=resume, reply=reply)
            self._save_state(session_id)
            self._used[session_id] = time.monotonic()
            return result

        async def finish() -> None:
            # Writes wait out an unavailable database: a turn that ends in an outage is closed
            # when the database is back, never left `running`.
            try:
                result = await asyncio.to_thread(run)
                await recorder.close()
                if result.summary:
                    self._summaries[session_id] = result.summary
                usage = result.usage.model_dump(mode="json") if result.usage else None
                if result.status == "waiting":
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
            except Exception as exc:  # noqa: BLE001 - the turn fails, the service goes on
                log.exception("turn %s failed", turn_id)
                error_type, message = type(exc).__name__, redact(str(exc))

                async def close() -> None:
                    usage = await self._close_failed(turn_id, error_type, message,
                                                     after_seq=recorder.last_seq)
                    await self.store.turns.finish(turn_id, TurnStatus.ERROR, usage=usage,
                                                  error=f"{error_type}: {message}")

                with contextlib.suppress(Exception):  # deleted meanwhile: nothing to close
                    await until_available(close, f"closing turn {turn_id}")
                live.done.set_exception(exc)
            finally:
                self.live.pop(turn_id, None)
                for queue in live.subscribers:
                    queue.put_nowait(None)

        self.loop.create_task(finish())
        return live

    # -- MLflow: a finished turn becomes one trace, built from its recorded events -----------
    async def _trace(self, turn_id: str, session_id: str) -> str | None:
        if not self.settings.mlflow_tracking_uri:
            return None
        from .tracing import record_trace

        stored = await until_available(lambda: self.store.events.list(turn_id),
                                       f"reading turn {turn_id} to trace it")
        events = [parse_event(r.payload) for r in stored]
        return await asyncio.to_thread(
            record_trace, self.settings, events, name="turn",
            tags={"fleet.turn_id": turn_id, "fleet.session_id": session_id})

    def _fan_out(self, live: LiveTurn, event: Event) -> None:
        self.loop.call_soon_threadsafe(self._deliver, live, event)

    @staticmethod
    def _deliver(live: LiveTurn, event: Event) -> None:
        live.last_seq = event.seq
        if event.type == "turn_finished":
            live.finished = event.status
        for queue in list(live.subscribers):
            if queue.full():  # a slow client never slows the turn: it resumes from the store
                live.subscribers.remove(queue)
                oldest_unread = queue.get_nowait()
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(Overflow(oldest_unread.seq - 1))
            else:
                queue.put_nowait(event)

    def events(self, turn_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Every event of a turn after `after_seq`: the store's record, then live ones until the
        turn stops. Never re-runs anything. Raises Overflow if the consumer falls behind.

        The subscription starts with this call, not with the first iteration: called just
        after `send`, it gets every event live, with no read of the store."""
        live = self.live.get(turn_id)
        queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_QUEUE)
        if live is not None:
            live.subscribers.append(queue)
        return self._events(turn_id, after_seq, live, queue)

    async def _events(self, turn_id: str, after_seq: int, live: LiveTurn | None,
                      queue: asyncio.Queue) -> AsyncIterator[Event]:
        try:
            seen = after_seq
            # Events up to live.last_seq were delivered before we subscribed: they are in the
            # store (once flushed); everything after comes through the queue. A subscriber that
            # is already up to date skips the store, which matters when many sessions write.
            backlog = live is None or after_seq < live.last_seq
            if live is not None and backlog:
                await live.recorder.flush()
            for record in (await self.store.events.list(turn_id, after_seq=after_seq)
                           if backlog else []):
                event = parse_event(record.payload)
                seen = event.seq
                yield event
            if live is None:
                return
            while (item := await queue.get()) is not None:
                if isinstance(item, Overflow):
                    raise item
                if item.seq > seen:
                    seen = item.seq
                    yield item
        finally:
            if live is not None and queue in live.subscribers:
                live.subscribers.remove(queue)
