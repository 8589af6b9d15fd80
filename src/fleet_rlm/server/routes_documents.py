"""Documents: upload (multipart), list, read a preview or a slice, detach or attach again,
delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Response, UploadFile

from . import errors
from .deps import Service, User
from .guard import MB, body_limit
from .schemas import DocumentDetail, DocumentOut, DocumentPatch

router = APIRouter(tags=["documents"], responses=errors.responses(415))
PREVIEW_CHARS = 2_000


@router.post("/sessions/{session_id}/documents", response_model=DocumentOut, status_code=201)
@body_limit(lambda s: (s.max_upload_mb * MB, "FLEET_MAX_UPLOAD_MB"))
async def upload_document(svc: Service, user: User, session_id: str,
                          file: Annotated[UploadFile, File()]) -> DocumentOut:
    """Text, Markdown, PDF, JSON, CSV or HTML; too large → 413, binary or unsupported → 415,
    unreadable or past an extraction cap (CPU, memory, text) → 422, a name already used in the
    session for another text → 409 (the same file again is the existing document, attached).
    Text not in UTF-8 is detected and converted (`encoding` names it). The upload streams to a
    temporary file and from there to the extraction process: the server never holds it whole."""
    document = await svc.add_document(session_id, file.filename or "", file.file,
                                      principal=user)
    return DocumentOut.of(document)


@router.get("/sessions/{session_id}/documents", response_model=list[DocumentOut])
async def list_documents(svc: Service, user: User, session_id: str) -> list[DocumentOut]:
    return [DocumentOut.of(d) for d in await svc.documents(user, session_id)]


@router.get("/documents/{document_id}", response_model=DocumentDetail)
async def get_document(svc: Service, user: User, document_id: str,
                       start: int = Query(0, ge=0, description="First character."),
                       length: int | None = Query(None, ge=0, le=10_000_000,
                                                  description="Characters; default a preview.")
                       ) -> DocumentDetail:
    document, text = await svc.read_document(user, document_id, start,
                                             PREVIEW_CHARS if length is None else length)
    return DocumentDetail(**DocumentOut.of(document).model_dump(), start=start, text=text)


@router.patch("/documents/{document_id}", response_model=DocumentOut)
async def patch_document(svc: Service, user: User, document_id: str,
                         change: DocumentPatch) -> DocumentOut:
    """Detach a document from its session (kept, out of the agent's view) or attach it again."""
    return DocumentOut.of(await svc.attach_document(user, document_id, change.attached))


@router.delete("/documents/{document_id}", status_code=204)
async def delete_document(svc: Service, user: User, document_id: str) -> Response:
    await svc.delete_document(user, document_id)
    return Response(status_code=204)
