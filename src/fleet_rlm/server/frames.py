"""The session WebSocket's frames, as models: what a client sends (`ClientFrame`) and what the
server sends besides the events (`ControlFrame`). The web app's TypeScript types are generated
from `frames_json_schema()` (frontend/scripts/gen-types.mjs), as its event types are from
`fleet_rlm.events`.

An event of kind `error` (a turn failed) and a `socket_error` frame (a frame could not be served,
or this socket fell behind) differ by their `type`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from ..status import ActiveStatus
from .deps import MAX_INT

__all__ = [
    "CLIENT_FRAMES",
    "FRAME_TYPES",
    "ActiveTurn",
    "AnswerFrame",
    "CancelFrame",
    "ClientFrame",
    "ControlFrame",
    "MessageFrame",
    "ResumeFrame",
    "SessionFrame",
    "SocketError",
    "SocketErrorCode",
    "frames_json_schema",
    "socket_error",
]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | int | None = Field(None, description="Echoed in error frames about this frame.")


class MessageFrame(_Frame):
    """Start a turn (`busy` if one is in flight)."""

    type: Literal["message"]
    text: str = Field(min_length=1)
    attachments: list[str] = Field(
        [], description="Ids of the session's documents sent with the message.")
    document_ids: list[str] = Field(
        [], description="Deprecated name of `attachments`, still accepted.",
        json_schema_extra={"deprecated": True})
    limits: dict[str, Any] | None = Field(
        None, description="Lower limits for this turn (a message may only lower them), by the "
        "names of the settings: max_calls, max_tokens, max_usd, max_wall_s, max_depth, "
        "max_iterations (max_lm_calls, the old name of max_calls, is still accepted).")

    @model_validator(mode="after")
    def _one_list(self) -> MessageFrame:
        """`document_ids` (the old name) joins `attachments`."""
        if self.document_ids:
            self.attachments = list(dict.fromkeys([*self.attachments, *self.document_ids]))
            self.document_ids = []
        return self


class AnswerFrame(_Frame):
    """Answer the turn's ask_user; it goes on."""

    type: Literal["answer"]
    turn_id: str
    text: str = Field(min_length=1)


class CancelFrame(_Frame):
    """Cancel the turn in flight (default: the session's), or dismiss one waiting."""

    type: Literal["cancel"]
    turn_id: str | None = None


class ResumeFrame(_Frame):
    """Send the turn's events after last_seq, then live ones."""

    type: Literal["resume"]
    turn_id: str
    last_seq: int = Field(0, ge=0, le=MAX_INT)


ClientFrame = Annotated[MessageFrame | AnswerFrame | CancelFrame | ResumeFrame,
                        Field(discriminator="type")]
CLIENT_FRAMES: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
FRAME_TYPES = ("message", "answer", "cancel", "resume")


class ActiveTurn(BaseModel):
    turn_id: str
    status: ActiveStatus = Field(description="running, or waiting (on the user's answer).")
    last_seq: int = Field(description="The turn's last event so far.")
    question: str | None = Field(description="What a waiting turn asks the user.")


class SessionFrame(BaseModel):
    """Sent on connect, and when a turn waiting on the user is closed."""

    type: Literal["session"]
    session_id: str
    active_turn: ActiveTurn | None = Field(
        description="The turn in flight, which a (re)connecting client resumes.")


SocketErrorCode = Literal["bad_json", "bad_frame", "unknown_type", "busy", "read_only", "invalid",
                          "not_found", "not_running", "overflow", "unavailable", "internal"]


class SocketError(BaseModel):
    """A frame that could not be served, or a turn this socket stopped following (`overflow`,
    `internal`: resume from `resume_from`). The socket stays open. Fields other than `code` and
    `message` are present only where they apply."""

    type: Literal["socket_error"]
    code: SocketErrorCode
    message: str
    id: str | int | None = Field(None, description="The `id` of the frame this is about.")
    turn_id: str | None = None
    resume_from: int | None = Field(None, description="overflow, internal: the seq to resume "
                                    "after.")
    retry_after: float | None = Field(None, description="unavailable: seconds to wait.")
    field: str | None = Field(None, description="invalid limits: the limit asked above its "
                              "ceiling.")
    server_limit: float | None = None
    tenant_limit: float | None = None


ControlFrame = Annotated[SessionFrame | SocketError, Field(discriminator="type")]


def socket_error(code: SocketErrorCode, message: str, **extra: Any) -> dict[str, Any]:
    """A `socket_error` frame as sent: the fields that apply, no nulls."""
    return SocketError(type="socket_error", code=code, message=message,
                       **extra).model_dump(mode="json", exclude_none=True)


def frames_json_schema() -> dict[str, Any]:
    """JSON Schema of both directions: `$defs` holds every frame model; the root is a union of
    ClientFrame and ControlFrame (their names, too, are in `$defs`)."""
    client = TypeAdapter(ClientFrame).json_schema(ref_template="#/$defs/{model}")
    control = TypeAdapter(ControlFrame).json_schema(ref_template="#/$defs/{model}")
    defs = {**client.pop("$defs"), **control.pop("$defs")}
    for schema in (client, control):
        schema.pop("discriminator", None)
    defs["ClientFrame"] = client
    defs["ControlFrame"] = control
    return {"$defs": defs, "anyOf": [{"$ref": "#/$defs/ClientFrame"},
                                     {"$ref": "#/$defs/ControlFrame"}]}
