"""One JSON shape for every error: {"error": code, "message": text}, plus `detail` for bad
input. Store errors map to HTTP statuses here, so routes just let them propagate; a database
that is away (down, locked, its disk full) is 503 `unavailable` with Retry-After."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..documents import DocumentError
from ..rlm_log import RlmLogError
from ..sessions import Busy, Conflict, NotFound, ReadOnly, disk_full, unavailable
from ..workspace import WorkspaceError

# DocumentError.reason -> HTTP status; the rest are 422.
DOCUMENT_STATUS = {"too_large": 413, "binary": 415, "unsupported": 415}
# WorkspaceError.reason -> HTTP status; the rest (a path that does not fit) are 400.
WORKSPACE_STATUS = {"not_found": 404, "forbidden": 403, "protected": 403, "conflict": 409,
                    "unavailable": 502, "too_large": 413, "timeout": 504,
                    "no_space": 507}
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 408: "timeout", 409: "conflict", 413: "too_large",
              415: "unsupported_media_type", 422: "invalid"}
RETRY_AFTER_S = 5  # what a client is told to wait while the database is unavailable


class FieldProblem(BaseModel):
    field: str = Field(description="the input's dotted name (`request` for the whole of it)")
    message: str


class ErrorBody(BaseModel):
    """What every error answer of the API carries (401, 403, 404, 409, 413, 415, 422, 503, ...):
    a code, a message, and fields that depend on the error."""

    model_config = ConfigDict(extra="allow")  # a few errors add data of their own

    error: str = Field(description="a code for programs: `not_found`, `invalid`, `busy`, ...")
    message: str = Field(description="what went wrong, for people")
    detail: list[FieldProblem] | None = Field(None, description="422: each invalid input")
    kind: str | None = Field(None, description="404 of a store row: what was missing")
    id: str | None = Field(None, description="404 of a store row: the id asked for")
    field: str | None = Field(None, description="a limit over the server's: its name")
    server_limit: float | int | None = Field(None, description="...and the server's value")
    retry_after: int | None = Field(None, description="503: seconds to wait (Retry-After)")


_DESCRIPTIONS = {400: "Bad request", 401: "No or a wrong token", 403: "Not allowed",
                 404: "Not found", 408: "The body stalled", 409: "Conflict or busy",
                 413: "Body too large", 415: "Unsupported file", 422: "Invalid input",
                 502: "The sandbox's workspace did not answer", 503: "The database is away",
                 504: "The workspace timed out", 507: "The workspace is full"}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` declaring the error body for these statuses."""
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
            for status in statuses}


# Every operation: the statuses any route may answer (auth, ids, input, a body too large or
# stalled, a row changed meanwhile, the database away), and the same body for any other error
# status (`default`), so clients generated from the document parse every error. Routers add
# their own (documents 415, workspace 400/502/504/507).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **responses(401, 403, 404, 408, 409, 413, 422, 503),
    "default": {"model": ErrorBody, "description": "Any other error"},
}


def unavailable_message(exc: BaseException) -> str:
    what = "its disk is full" if disk_full(exc) else type(exc).__name__
    return f"the database is unavailable just now ({what}); try again shortly"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


def _response(status: int, code: str, message: str, headers: dict | None = None,
              **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def _field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def response_of(exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _response(exc.status, exc.code, exc.message, headers, **exc.extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return response_of(exc)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _response(404, "not_found", str(exc), kind=exc.kind, id=exc.id)

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _response(409, "conflict", str(exc))

    @app.exception_handler(Busy)
    async def busy(_: Request, exc: Busy) -> JSONResponse:
        return _response(409, "busy", str(exc))

    @app.exception_handler(RlmLogError)
    async def invalid_log(_: Request, exc: RlmLogError) -> JSONResponse:
        return _response(422, "invalid_log", str(exc), line=exc.line, expected=exc.expected)

    @app.exception_handler(ReadOnly)
    async def read_only(_: Request, exc: ReadOnly) -> JSONResponse:
        return _response(409, "read_only", str(exc), imported_from=exc.imported_from)

    async def database_away(_: Request, exc: Exception) -> JSONResponse:
        if not unavailable(exc):
            raise exc
        return _response(503, "unavailable", unavailable_message(exc),
                         {"Retry-After": str(RETRY_AFTER_S)}, retry_after=RETRY_AFTER_S)

    app.add_exception_handler(PoolTimeout, database_away)
    app.add_exception_handler(OSError, database_away)  # refused connections, a full disk

    @app.exception_handler(DBAPIError)
    async def unstorable(request: Request, exc: DBAPIError) -> JSONResponse:
        if unavailable(exc):
            return await database_away(request, exc)
        # SQLSTATE class 22 (data exception): input the database cannot hold, such as a NUL
        # character in text on PostgreSQL. Anything else stays a server error.
        if not str(getattr(exc.orig, "sqlstate", None) or "").startswith("22"):
            raise exc
        reason = str(exc.orig).rpartition(">: ")[2]
        return _response(422, "invalid", f"the database cannot take this input: {reason}")

    @app.exception_handler(DocumentError)
    async def document_error(_: Request, exc: DocumentError) -> JSONResponse:
        return _response(DOCUMENT_STATUS.get(exc.reason, 422), exc.reason, exc.message)

    @app.exception_handler(WorkspaceError)
    async def workspace_error(_: Request, exc: WorkspaceError) -> JSONResponse:
        return _response(WORKSPACE_STATUS.get(exc.reason, 400), exc.reason, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors)
        detail = [{"field": _field(e["loc"]), "message": e["msg"]} for e in errors]
        return _response(422, "invalid", message or "invalid request", detail=detail)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the exception after this answer; the client gets the one error body.
        return _response(500, "internal", f"the server failed ({type(exc).__name__}); the "
                         "error is in its log")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        return _response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))
