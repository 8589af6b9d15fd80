"""The MCP server (`fleet serve-mcp`): the recursive engine and the chat sessions as tools for
other agents, on the official MCP SDK (an extra: `pip install 'fleet-rlm[mcp]'`).

Tools: `rlm_query` (a RecursiveRLM run over text and files), `chat` (a turn of a session through
the SessionService), `list_sessions`, `get_turn`. While a tool runs, every event of its stream is
sent to the client as a progress notification (when the client asked for progress).

Over HTTP (streamable HTTP) every request carries a bearer token, on loopback too: the server's
own (FLEET_MCP_TOKEN, else generated at start and printed), which acts as the local user, or a
user's API token (`fleet tokens create`), which acts as that user. The tools then follow the REST
API's tenant rules (the same lookups): a caller sees and continues only its tenant's sessions
and turns. Over stdio the caller is the local user. `rlm_query(paths=...)` reads only regular
files under the roots (FLEET_MCP_ROOTS; default: none over HTTP, the working directory over
stdio), never through a link leading out of them (`host_files`).
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations at runtime, and
# `Context` is only imported inside build_server (the extra is optional).

import asyncio
import functools
import hmac
import json
import logging
import os
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from .config import Settings
from .events import Event

log = logging.getLogger(__name__)

Transport = Literal["stdio", "http"]
QUIET_EVENTS = {"answer_delta", "budget"}  # too many, too small to be worth a notification
DETAIL_FIELD = {"turn_started": "question", "agent_step": "tool_name", "tool_result": "tool_name",
                "rlm_started": "model", "rlm_iteration": "code", "code_output": "stdout",
                "rlm_finished": "status", "ask_user": "question", "turn_finished": "status",
                "error": "message", "cancelled": "reason"}
INSTRUCTIONS = """fleet-rlm answers questions over text far longer than a context window with a
recursive language model: the text lives in a sandboxed Python REPL where the model reads it with
code, asks sub-models about pieces and spawns child RLMs.
- rlm_query: one question over `context` text and/or files (`paths`); returns the answer.
- chat: a message to a fleet-rlm agent session (documents, memory, delegation); omit session_id
  to start a session. If the answer is a question to you (status "waiting"), call chat again on
  the same session with your reply.
- list_sessions, get_turn: read past sessions and turns (a turn as JSON or a Markdown transcript).
"""


class McpConfigError(ValueError):
    """The server was asked to start in a way that is not safe or not possible."""


PRINCIPAL = "fleet.principal"  # HTTP scope key: who the request's token belongs to


def import_mcp() -> Any:
    try:
        from mcp.server import mcpserver
    except ModuleNotFoundError:
        raise ImportError("the MCP server needs the mcp extra: pip install 'fleet-rlm[mcp]'"
                          ) from None
    return mcpserver


def with_server_token(settings: Settings) -> Settings:
    """The settings with the HTTP server's own token, a new one when FLEET_MCP_TOKEN is unset."""
    if settings.mcp_token:
        return settings
    return settings.model_copy(update={"mcp_token": secrets.token_urlsafe(32)})


def roots_for(settings: Settings, transport: Transport) -> list[Path]:
    """The directories `rlm_query` may read files under (McpConfigError for a bad one)."""
    from .host_files import resolve_roots

    if settings.mcp_roots is not None:
        roots: list[Any] = list(settings.mcp_roots)
    else:
        roots = [os.getcwd()] if transport == "stdio" else []
    try:
        return resolve_roots(roots)
    except ValueError as exc:
        raise McpConfigError(f"FLEET_MCP_ROOTS: {exc}") from None


def describe(event: Event) -> str:
    """One line for a progress notification."""
    if event.type == "lm_call":
        detail = (f"{event.role} {event.model} {event.prompt_tokens}+{event.completion_tokens} "
                  "tokens")
    else:
        detail = str(getattr(event, DETAIL_FIELD.get(event.type, ""), "") or "").strip()
        detail = detail.splitlines()[0][:160] if detail else ""
    return f"{event.type} (depth {event.depth}) {detail}".rstrip()


async def _report(ctx: Any, event: Event) -> None:
    if event.type not in QUIET_EVENTS:
        await ctx.report_progress(float(event.seq), None, describe(event))


def build_server(settings: Settings, service: Any, roots: list[Path]) -> Any:
    """The MCP server on an opened SessionService; `rlm_query` reads files under `roots`."""
    mcpserver = import_mcp()
    from mcp.server.mcpserver import Context

    from . import __version__
    from .engine.rlm import RecursiveRLM
    from .events import EventStream
    from .extraction import ExtractionLimits
    from .host_files import read_under_roots

    # The session service's callers and tenant rules, so every door keeps the same ones.
    from .sessions import LOCAL, Busy, LimitRaised, NotFound, Principal, tenant_scope
    from .tracing import record_trace
    server = mcpserver.MCPServer("fleet-rlm", version=__version__, instructions=INSTRUCTIONS)

    def caller(ctx: Any) -> Principal:
        """The token's user over HTTP (set by McpAuth on every request); the local user over
        stdio."""
        request = ctx.request_context.request
        return LOCAL if request is None else request.scope[PRINCIPAL]

    def tool(fn: Callable) -> Callable:
        """Register `fn` (its first argument the caller), run in the caller's tenant; the
        caller's mistakes (an unknown id, a busy session, a bad file or limit) reach the client
        with their message, where the SDK would hide it as a crash."""

        @functools.wraps(fn)
        async def run(ctx: Context, *args: Any, **kwargs: Any) -> Any:
            user = caller(ctx)
            try:
                with tenant_scope(user.tenant_id):
                    return await fn(ctx, *args, **kwargs)
            except (NotFound, Busy, ValueError) as exc:
                raise mcpserver.exceptions.ToolError(str(exc)) from None

        return server.tool()(run)

    @tool
    async def rlm_query(ctx: Context, question: str, context: str | None = None,
                        paths: list[str] | None = None, max_calls: int | None = None,
                        max_usd: float | None = None) -> dict[str, Any]:
        """Answer `question` with a recursive RLM over `context` (text) and the files in `paths`
        (text, Markdown, PDF, JSON, CSV, HTML; read on the server). One source is a string in the
        REPL, several a dict of name to text. `max_calls` / `max_usd` cap the whole tree's model
        calls and cost. Returns the answer, the status (ok, extract, budget, cancelled, error)
        and the usage."""
        # The caller's tenant's limits, where lower than the server's, bound the query too.
        ceiling = service.with_limits(None, tenant=await service.tenant_limits(caller(ctx)))
        for name, asked in (("max_calls", max_calls), ("max_usd", max_usd)):
            limit = getattr(ceiling, name)
            if asked is not None and asked > limit:
                whose = "server" if limit == getattr(settings, name) else "tenant"
                raise LimitRaised(name, asked, limit, whose)
        sources = [("context", context)] if context is not None else []
        limits = ExtractionLimits.of(settings)
        for path in paths or []:
            name, data = await asyncio.to_thread(read_under_roots, path, roots, limits.max_bytes)
            document = await service.extractor.extract(
                caller(ctx).tenant_id, name, data, limits, settings.extract_concurrency)
            sources.append((document.name, document.text))
        text: Any = sources[0][1] if len(sources) == 1 else dict(sources)
        program = (await service.promoted(caller(ctx))).get("rlm")
        engine = RecursiveRLM("context, question -> answer", settings=ceiling,
                              max_calls=max_calls, max_usd=max_usd, program=program)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        stream = EventStream(uuid.uuid4().hex[:12],
                             [lambda e: loop.call_soon_threadsafe(queue.put_nowait, e)])
        run, root = engine.start(stream)

        def work() -> Any:
            try:
                return root(context=text if sources else "", question=question)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        async def relay() -> None:
            while (event := await queue.get()) is not None:
                await _report(ctx, event)

        try:
            result, _ = await asyncio.gather(asyncio.to_thread(work), relay())
        except asyncio.CancelledError:
            run.cancel.cancel("cancelled by the MCP client")
            raise
        trace_id = await asyncio.to_thread(
            record_trace, settings, stream.events, name="rlm_query",
            inputs={"question": question}, tags={"fleet.kind": "mcp.rlm_query"})
        return {"answer": result.answer, "status": result.status, "error": result.error,
                "iterations": result.iterations, "usage": result.usage.model_dump(mode="json"),
                "trace_id": trace_id}

    @tool
    async def chat(ctx: Context, message: str, session_id: str | None = None) -> dict[str, Any]:
        """Send `message` to a fleet-rlm agent session; without `session_id` a new session is
        created. When the previous turn of the session asked a question (status "waiting"),
        `message` is the reply and that turn goes on. Returns the session and turn ids, the
        status (ok, waiting, budget, cancelled, error), the answer or the agent's question, and
        the usage."""
        user = caller(ctx)
        if session_id is None:
            session_id = (await service.create_session(message.strip()[:60] or "MCP chat",
                                                       principal=user)).id
        posted = await service.post(user, session_id, message, answering=True)
        try:  # a client too slow for the live stream catches up from the store
            async for event in service.follow(posted.turn_id, posted.after_seq):
                await _report(ctx, event)
            result = await posted.done
        except asyncio.CancelledError:
            service.cancel(posted.turn_id)
            raise
        return {"session_id": session_id, "turn_id": posted.turn_id, "status": result.status,
                "answer": result.answer, "question": result.question, "error": result.error,
                "usage": result.usage.model_dump(mode="json") if result.usage else None}

    @tool
    async def list_sessions(ctx: Context, query: str | None = None, limit: int = 50
                            ) -> list[dict[str, Any]]:
        """The sessions, most recently active first; `query` matches part of the title."""
        sessions = await service.list_sessions(caller(ctx), query,
                                               limit=max(1, min(limit, 500)))
        return [{"id": s.id, "title": s.title, "created_at": s.created_at.isoformat(),
                 "updated_at": s.updated_at.isoformat()} for s in sessions]

    @tool
    async def get_turn(ctx: Context, turn_id: str,
                       format: Literal["json", "markdown"] = "json") -> str:
        """One turn: as JSON (question, answer, status, usage and every event) or as a Markdown
        transcript (the agent's steps, each RLM node with its code and output)."""
        return await service.export_turn(caller(ctx), turn_id, format)

    return server


class McpAuth:
    """ASGI middleware: every HTTP request carries `Authorization: Bearer <token>`, the server's
    own (the local user) or a user's live API token (that user); the caller goes into the scope
    for the tools."""

    def __init__(self, app: Callable, settings: Settings, service: Any) -> None:
        from .sessions import LOCAL

        self.app, self.service, self.local = app, service, LOCAL
        self.expected = f"Bearer {settings.mcp_token}".encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            principal = await self._principal(dict(scope["headers"]).get(b"authorization", b""))
            if principal is None:
                body = json.dumps({"error": "missing, wrong or revoked bearer token"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
            scope = {**scope, PRINCIPAL: principal}
        await self.app(scope, receive, send)

    async def _principal(self, header: bytes) -> Any:
        if hmac.compare_digest(header, self.expected):
            return self.local
        scheme, _, secret = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        return await self.service.authenticate(secret.strip())


def serve(settings: Settings, transport: Transport = "stdio", host: str = "127.0.0.1",
          port: int = 8765) -> None:
    """Run the MCP server until stdin closes (stdio) or the process is stopped (http)."""
    roots = roots_for(settings, transport)
    import_mcp()
    asyncio.run(_serve(settings, transport, host, port, roots))


async def _serve(settings: Settings, transport: Transport, host: str, port: int,
                 roots: list[Path]) -> None:
    from .redaction import remember
    from .sessions import SessionService, install_tenant_guard

    remember(settings.api_key, settings.daytona_api_key, settings.mcp_token)
    service = SessionService(settings)
    install_tenant_guard()
    await service.open()
    try:
        server = build_server(settings, service, roots)
        if transport == "stdio":
            await server.run_stdio_async()
        else:
            import uvicorn

            app = McpAuth(server.streamable_http_app(host=host), settings, service)
            config = uvicorn.Config(app, host=host, port=port, log_level="warning")
            await uvicorn.Server(config).serve()
    finally:
        await service.close()
