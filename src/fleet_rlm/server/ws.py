"""The session WebSocket: /api/v1/sessions/{id}/ws.

Client frames (JSON text, by `type`; an optional `id` is echoed in error frames):
  message {text, attachments?, limits?}    start a turn (error `busy` if one is in flight);
                                           `document_ids` is the old name of `attachments`
  answer  {turn_id, text}                  answer the turn's ask_user; it goes on
  cancel  {turn_id?}                       cancel the turn in flight (default: the session's)
  resume  {turn_id, last_seq}              send the turn's events after last_seq, then live ones
Server frames: every event as `event.model_dump(mode="json")` (they carry `seq`); `session`
{session_id, active_turn} on connect and when a waiting turn is closed; `socket_error`
{code, message} (not the `error` event of a failed turn) for a frame that could not be served
(the socket stays open), including `overflow` with `resume_from` when this client fell behind,
and `unavailable` with `retry_after` while the database is away. Close codes: 4401
unauthenticated (also when the socket's token is revoked: checked before each frame and every
TOKEN_RECHECK_S), 4403 refused, 4404 no such session, 1013 the database is away (try again
later). The frames are models in `frames.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError

from ..sessions import Busy, LimitRaised, NotFound, OwnerUnreachable, ReadOnly, unavailable
from .auth import Principal, authenticate, still_authenticated
from .errors import RETRY_AFTER_S, ApiError, unavailable_message
from .frames import (
    CLIENT_FRAMES,
    FRAME_TYPES,
    AnswerFrame,
    CancelFrame,
    ClientFrame,
    MessageFrame,
    ResumeFrame,
    SocketErrorCode,
    socket_error,
)
from .hub import Client, Hub

router = APIRouter(tags=["websocket"])
TOKEN_RECHECK_S = 2.0  # a revoked token's open sockets close within this long
REVOKED = "the token was revoked"


class FrameError(Exception):
    def __init__(self, code: SocketErrorCode, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


def parse_frame(text: str) -> ClientFrame:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FrameError("bad_json", f"the frame is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FrameError("bad_frame", "a frame is a JSON object with a `type`")
    echo = {"id": data["id"]} if isinstance(data.get("id"), str | int) else {}
    if data.get("type") not in FRAME_TYPES:
        raise FrameError("unknown_type", f"unknown frame type {data.get('type')!r}; "
                         f"expected one of {', '.join(FRAME_TYPES)}", **echo)
    try:
        return CLIENT_FRAMES.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'frame'}: {e['msg']}"
                             for e in exc.errors())
        raise FrameError("bad_frame", f"bad {data['type']} frame: {problems}", **echo) from None


class Connection:
    """What one socket's frames do."""

    def __init__(self, hub: Hub, client: Client, user: Principal) -> None:
        self.hub, self.client, self.user = hub, client, user
        self.svc, self.session_id = hub.svc, client.session_id

    async def handle(self, text: str) -> None:
        frame_id = None
        try:
            frame = parse_frame(text)
            frame_id = frame.id
            await getattr(self, f"on_{frame.type}")(frame)
        except FrameError as exc:
            self._error(exc.code, exc.message, frame_id, **exc.extra)
        except Busy as exc:
            self._error("busy", str(exc), frame_id)
        except ReadOnly as exc:
            self._error("read_only", str(exc), frame_id)
        except NotFound as exc:
            self._error("not_found", str(exc), frame_id)
        except OwnerUnreachable as exc:  # another process runs the turn and did not answer
            self._error("unavailable", str(exc), frame_id, retry_after=RETRY_AFTER_S)
        except ValueError as exc:  # bad limits, an empty message, a turn not waiting
            self._error("invalid", str(exc), frame_id)
        except Exception as exc:
            if not unavailable(exc):
                raise
            self._error("unavailable", unavailable_message(exc), frame_id,
                        retry_after=RETRY_AFTER_S)

    def _error(self, code: SocketErrorCode, message: str, frame_id: Any, **extra: Any) -> None:
        if frame_id is not None:
            extra["id"] = frame_id
        self.client.push(socket_error(code, message, **extra))

    async def _turn(self, turn_id: str):
        turn = await self.svc.turn(self.user, turn_id)
        if turn.session_id != self.session_id:
            raise NotFound("turn", turn_id)
        return turn

    async def on_message(self, frame: MessageFrame) -> None:
        try:  # the limits are checked before the documents are looked up
            await self.hub.post(self.user, self.session_id, frame.text, limits=frame.limits,
                                document_ids=frame.attachments)
        except ValidationError as exc:  # said per field
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors())
            raise FrameError("invalid", f"bad limits: {problems}") from None
        except LimitRaised as exc:
            raise FrameError("invalid", f"bad limits: {exc}", field=exc.field,
                             **{f"{exc.whose}_limit": exc.limit}) from None

    async def on_answer(self, frame: AnswerFrame) -> None:
        await self._turn(frame.turn_id)
        await self.hub.post(self.user, self.session_id, frame.text, answering=frame.turn_id)

    async def on_cancel(self, frame: CancelFrame) -> None:
        if frame.turn_id is not None:
            turn_id = (await self._turn(frame.turn_id)).id
        else:
            active = await self.svc.active_turn(self.user, self.session_id)
            if active is None:
                raise FrameError("not_running", "no turn is in flight in this session")
            turn_id = active["turn_id"]
        if not await self.hub.cancel(self.user, self.session_id, turn_id):
            raise FrameError("not_running", f"turn {turn_id} is not in flight", turn_id=turn_id)

    async def on_resume(self, frame: ResumeFrame) -> None:
        await self._turn(frame.turn_id)
        self.client.follow(frame.turn_id, frame.last_seq)


async def _admit(ws: WebSocket, session_id: str) -> Principal | None:
    try:
        user = await authenticate(ws, websocket=True)
        await ws.app.state.svc.session(user, session_id)
        return user
    except ApiError as exc:
        code = 4401 if exc.status == 401 else 4403
        await ws.close(code=code, reason=exc.message[:120])
    except NotFound as exc:
        await ws.close(code=4404, reason=str(exc)[:120])
    except Exception as exc:
        if not unavailable(exc):
            raise
        await ws.close(code=1013, reason=unavailable_message(exc)[:120])  # try again later
    return None


@router.websocket("/sessions/{session_id}/ws")
async def session_socket(ws: WebSocket, session_id: str) -> None:
    await ws.accept()  # before the checks, so the close code reaches browsers too
    user = await _admit(ws, session_id)
    if user is None:
        return
    hub: Hub = ws.app.state.hub
    client = Client(hub.svc, ws, session_id)
    connection = Connection(hub, client, user)
    state = await hub.state(user, session_id)  # before joining: see Client.waived
    if state.get("active_turn"):
        client.waived.add(state["active_turn"]["turn_id"])
    hub.join(client)
    writer = asyncio.create_task(client.write_loop())
    watcher = asyncio.create_task(_watch_token(ws))
    try:
        client.push(state)
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if not await still_authenticated(ws):
                await ws.close(code=4401, reason=REVOKED)
                break
            if message.get("text") is not None:
                await connection.handle(message["text"])
            else:
                client.push(socket_error("bad_frame", "send JSON in text frames, not binary"))
    finally:
        hub.leave(client)
        for task in (writer, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _watch_token(ws: WebSocket) -> None:
    """Close the socket once its token stops authenticating (revoked, say), even while its
    client sends nothing."""
    if ws.app.state.svc.settings.auth != "token":
        return  # the local modes' credentials live as long as the server
    while True:
        await asyncio.sleep(TOKEN_RECHECK_S)
        if not await still_authenticated(ws):
            with contextlib.suppress(Exception):
                await ws.close(code=4401, reason=REVOKED)
            return
