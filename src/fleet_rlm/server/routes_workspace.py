"""A session's workspace (/work in its sandbox): list, read, write and delete files, wherever
the session service keeps them (a local directory, or the session's Daytona volume)."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from ..workspace import Workspace
from . import errors
from .deps import Service, User
from .guard import MB, body_limit
from .schemas import WorkspaceListing

router = APIRouter(tags=["workspace"], responses=errors.responses(400, 502, 504, 507))
PathParam = Query("", description="Relative to the workspace; no '..', no leading '/'.")
# Files the sandbox wrote are shown, never run as pages of this origin.
UNSAFE_TYPES = ("text/html", "image/svg+xml", "application/xhtml+xml", "text/xml",
                "application/xml", "application/javascript", "text/javascript")


async def _workspace(svc, user, session_id: str, write: bool = False) -> Workspace:
    return await svc.files(user, session_id, write=write)


@router.get("/sessions/{session_id}/workspace", response_model=WorkspaceListing)
async def list_workspace(svc: Service, user: User, session_id: str, path: str = PathParam
                         ) -> WorkspaceListing:
    workspace = await _workspace(svc, user, session_id)
    entries = await svc.workspace_io.run(workspace.list, path)
    return WorkspaceListing(path=path, entries=entries)


@router.get("/sessions/{session_id}/workspace/file", responses={200: {
    "description": "The file's bytes, typed by its name (active types as text/plain)",
    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}})
async def read_file(svc: Service, user: User, session_id: str, path: str = PathParam
                    ) -> StreamingResponse:
    workspace = await _workspace(svc, user, session_id)
    chunks, size = await svc.workspace_io.run(workspace.open_file, path)
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if media_type in UNSAFE_TYPES:
        media_type = "text/plain"
    headers = {"Content-Length": str(size), "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "sandbox; default-src 'none'"}
    return StreamingResponse(svc.workspace_io.stream(chunks), media_type=media_type,
                             headers=headers)


@router.put("/sessions/{session_id}/workspace/file")
@body_limit(lambda s: (s.max_workspace_file_mb * MB, "FLEET_MAX_WORKSPACE_FILE_MB"))
async def write_file(svc: Service, user: User, request: Request, session_id: str,
                     path: str = PathParam) -> dict:
    """The request body becomes the file (created with its directories, or replaced); larger
    than FLEET_MAX_WORKSPACE_FILE_MB → 413."""
    workspace = await _workspace(svc, user, session_id, write=True)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
    written = await svc.workspace_io.run(workspace.write, path, bytes(data))
    return {"path": path, "size": written}


@router.delete("/sessions/{session_id}/workspace/file", status_code=204)
async def delete_file(svc: Service, user: User, session_id: str, path: str = PathParam
                      ) -> Response:
    workspace = await _workspace(svc, user, session_id, write=True)
    await svc.workspace_io.run(workspace.delete, path)
    return Response(status_code=204)
