"""The REST API's request and response bodies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..attachments import typed_text
from ..budget import renamed_limits
from ..config import SandboxBackend
from ..sessions import DocumentRow, SessionRow, TurnRow
from ..status import TurnStatus
from ..workspace import WorkspaceEntry


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionOut(BaseModel):
    id: str
    title: str
    user_id: str
    archived: bool
    created_at: datetime
    updated_at: datetime
    imported_from: str | None = Field(None, description="The log the session was imported "
                                      "from (`fleet import rlm-log`); None for its own.")
    read_only: bool = Field(False, description="Imported: it can be read, not continued.")
    root_model: str | None = Field(description="The session's own root model; null: the "
                                   "server's")
    sub_model: str | None = Field(description="The session's own sub model; null: the server's")
    turns: int | None = Field(None, description="How many turns it has (in the session list).")

    @classmethod
    def of(cls, s: SessionRow, turns: int | None = None) -> SessionOut:
        return cls(id=s.id, title=s.title, user_id=s.user_id, archived=s.archived,
                   created_at=s.created_at, updated_at=s.updated_at,
                   imported_from=s.imported_from, read_only=s.imported_from is not None,
                   root_model=s.root_model, sub_model=s.sub_model, turns=turns)


class SessionList(BaseModel):
    items: list[SessionOut]
    total: int
    limit: int
    offset: int


class SessionCreate(_In):
    title: str = Field("New session", min_length=1, max_length=500)


ModelName = Field(None, max_length=200, pattern=r"^[\w.\-]+/[\w.\-:/@]+$",
                  description="provider/model as LiteLLM names it")


class SessionPatch(_In):
    title: str | None = Field(None, min_length=1, max_length=500)
    archived: bool | None = None
    # Given together: the session's own models from its next turn on; null: the server's.
    root_model: str | None = ModelName
    sub_model: str | None = ModelName


class SessionModels(_In):
    root_model: str | None = ModelName
    sub_model: str | None = ModelName


class Attachment(BaseModel):
    id: str
    name: str


class Asked(BaseModel):
    question: str
    reply: str | None = Field(description="The user's reply; null while it waits.")


class TurnOut(BaseModel):
    id: str
    session_id: str
    index: int
    user_message: str = Field(description="The message as the agent read it: `text`, then a "
                              "note naming the attachments.")
    text: str = Field(description="The message as typed.")
    attachments: list[Attachment] = Field(description="The documents sent with the message.")
    answer: str | None
    status: TurnStatus = Field(description="The status its turn_finished event says, once it "
                               "ended; interrupted: the server stopped while it ran.")
    error: str | None
    usage: dict[str, Any] | None
    question: str | None = Field(None, description="What the turn asks the user (waiting).")
    asked: list[Asked] = Field(default_factory=list, description="Every question the turn "
                               "asked the user, in order, with the reply it got.")
    trace_id: str | None = Field(None, description="The turn's MLflow trace, when it was traced.")
    tags: list[str] = Field(default_factory=list, description="Labels given to the turn.")
    programs: dict[str, str | None] = Field(
        {}, description="The program version each target ran (agent, rlm); none: the baseline.")
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, t: TurnRow, asked: Sequence[Mapping[str, str | None]] = ()) -> TurnOut:
        attachments = [Attachment.model_validate(a) for a in t.attachments or ()]
        return cls(id=t.id, session_id=t.session_id, index=t.index, user_message=t.user_message,
                   text=typed_text(t.user_message, [a.name for a in attachments]),
                   attachments=attachments, answer=t.answer, status=TurnStatus(t.status),
                   error=t.error,
                   usage=t.usage,
                   question=(t.pending or {}).get("question"),
                   asked=[Asked.model_validate(a) for a in asked], trace_id=t.trace_id,
                   tags=list(t.tags or ()), programs=t.programs or {},
                   created_at=t.created_at, finished_at=t.finished_at)


class EventList(BaseModel):
    turn_id: str
    events: list[dict[str, Any]] = Field(description="Events as on the WebSocket, in seq order.")
    last_seq: int = Field(description="The last seq returned (after_seq when none).")


class DocumentOut(BaseModel):
    id: str
    session_id: str
    name: str
    kind: str
    size_bytes: int
    chars: int
    sha256: str
    created_at: datetime
    attached: bool = Field(description="In the agent's view; a detached document is kept "
                           "for the user but neither listed to the agent nor read.")
    encoding: str | None = Field(None, description="The encoding the text was detected in and "
                                 "converted from, when the upload was not UTF-8.")

    @classmethod
    def of(cls, d: DocumentRow) -> DocumentOut:
        return cls(id=d.id, session_id=d.session_id, name=d.name, kind=d.kind,
                   size_bytes=d.size_bytes, chars=d.chars, sha256=d.sha256,
                   created_at=d.created_at, attached=d.attached, encoding=d.encoding)


class DocumentPatch(BaseModel):
    attached: bool = Field(description="false detaches the document, true attaches it again.")


class DocumentDetail(DocumentOut):
    start: int
    text: str = Field(description="A preview, or the slice asked for with start/length.")


class WorkspaceListing(BaseModel):
    path: str
    entries: list[WorkspaceEntry]


class Limits(_In):
    """Budget limits, one name each (`max_lm_calls`, max_calls's old name, is still taken)."""

    max_calls: int | None = Field(None, gt=0, description="Most model calls in a turn's tree.")
    max_tokens: int | None = Field(None, gt=0)
    max_usd: float | None = Field(None, gt=0)
    max_wall_s: float | None = Field(None, gt=0)
    max_depth: int | None = Field(None, ge=0)
    max_iterations: int | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return renamed_limits(data, "limits") if isinstance(data, dict) else data


class SettingsOut(BaseModel):
    root_model: str
    sub_model: str | None
    api_base: str | None
    sandbox: SandboxBackend
    limits: dict[str, float | int]
    api_key_set: bool
    daytona_api_key_set: bool
    auth: str
    model_ready: bool = Field(description="An API key or api_base is set, or the root model's "
                              "provider key (e.g. OPENAI_API_KEY) is in the server's environment.")
    provider_keys: list[str] = Field(description="The environment variables that hold a key "
                                     "for the root model's provider (any one will do).")


class SettingsPatch(_In):
    """Only the fields given change; null clears an optional one. Keys are write-only."""

    root_model: str | None = Field(None, min_length=1)
    sub_model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    daytona_api_key: str | None = None
    sandbox: SandboxBackend | None = None
    limits: Limits | None = None


class HealthCheck(BaseModel):
    name: str = Field(description="What is checked, stable: runtime, cgroups, disk_quota, "
                      "seccomp, open_files, isolation, daytona_sdk, daytona_api, "
                      "daytona_target, daytona_snapshot, backend.")
    status: Literal["ok", "warn", "fail"] = Field(
        description="ok: in force; warn: a fallback or a note; fail: broken.")
    detail: str = Field(description="What holds, or what is wrong and what to do.")


class CheckResult(BaseModel):
    ok: bool
    problem: str | None = Field(None, description="unreachable, auth, unknown_model, sandbox, "
                                "error; null when ok.")
    message: str
    detail: str | None = None
    duration_s: float
    checks: list[HealthCheck] = Field(
        default_factory=list, description="The sandbox check: the backend's health checks, the "
        "facts `fleet doctor` prints. Empty for the model check.")


class UsageRow(BaseModel):
    key: str = Field(description="The session id, or the day (YYYY-MM-DD, UTC).")
    title: str | None = None
    turns: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    usd: float = 0.0
    usd_unknown_calls: int = Field(0, description="Calls of models without a known price: "
                                   "`usd` leaves them out (a lower bound, or unknown if all).")


class UsageReport(BaseModel):
    group: Literal["session", "day"]
    items: list[UsageRow]
    total: UsageRow


class TenantLimitsOut(BaseModel):
    tenant: Limits = Field(description="The tenant's own limits; null: the server's.")
    server: Limits = Field(description="The server's limits (its settings).")
    effective: Limits = Field(description="What a turn of the tenant runs with at most: the "
                              "lower of the two; a message may only lower it further.")
