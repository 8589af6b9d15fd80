"""The MCP server (`fleet serve-mcp`): the recursive engine and the chat sessions as tools for
other agents, on the official MCP SDK (an extra: `pip install 'fleet-rlm[mcp]'`).

Tools: `rlm_query` (a RecursiveRLM run over text and files), `chat` (a turn of a session through
the SessionService), `list_sessions`, `get_turn`. While a tool runs, every event of its stream is
sent to the client as a progress notification (when the client asked for progress).

Over HTTP (streamable HTTP) the server wants `Authorization: Bearer <FLEET_MCP_TOKEN>`; without a
token it only binds to a loopback address.
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations at runtime, and
# `Context` is only imported inside build_server (the extra is optional).

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
import uuid
from collections.abc import Callable
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


def import_mcp() -> Any:
    try:
        from mcp.server import mcpserver
    except ModuleNotFoundError:
        raise ImportError("the MCP server needs the mcp extra: pip install 'fleet-rlm[mcp]'"
                          ) from None
    return mcpserver


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def check_bind(settings: Settings, transport: Transport, host: str) -> None:
    if transport == "http" and not settings.mcp_token and not is_loopback(host):
        raise McpConfigError(
            f"refusing to serve MCP on {host} without a token: anyone who can reach it could "
            "run code and spend your model budget. Set FLEET_MCP_TOKEN (clients then send "
            "'Authorization: Bearer <token>'), or bind to 127.0.0.1.")


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


def build_server(settings: Settings, service: Any) -> Any:
    """The MCP server on an opened SessionService."""
    mcpserver = import_mcp()
    from . import __version__
    from .documents import load_path
    from .engine.rlm import RecursiveRLM
    from .events import EventStream
    from .export import export_turn
    from .sessions import Busy, Overflow
    from .store import NotFound
    from .tracing import record_trace

    Context = mcpserver.Context
    server = mcpserver.MCPServer("fleet-rlm", version=__version__, instructions=INSTRUCTIONS)

    def tool(fn: Callable) -> Callable:
        """Register `fn`; the caller's mistakes (an unknown id, a busy session, a bad file or
        limit) reach the client with their message, where the SDK would hide it as a crash."""

        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
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
        sources = [("context", context)] if context is not None else []
        limit = settings.max_document_mb * 1024 * 1024
        for path in paths or []:
            document = await asyncio.to_thread(load_path, path, limit)
            sources.append((document.name, document.text))
        text: Any = sources[0][1] if len(sources) == 1 else dict(sources)
        engine = RecursiveRLM("context, question -> answer", settings=settings,
                              max_calls=max_calls, max_usd=max_usd)
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
        if session_id is None:
            session_id = (await service.create_session(message.strip()[:60] or "MCP chat")).id
        waiting = await service.store.turns.running_for_session(session_id)
        if waiting is not None and waiting.status == "waiting":
            seen = await service.store.events.last_seq(waiting.id)
            live = await service.reply(waiting.id, message)
        else:
            seen = 0
            live = await service.send(session_id, message)
        try:
            while True:  # a client too slow for the live stream catches up from the store
                try:
                    async for event in service.events(live.turn_id, after_seq=seen):
                        seen = event.seq
                        await _report(ctx, event)
                    break
                except Overflow:
                    continue
            result = await live.done
        except asyncio.CancelledError:
            service.cancel(live.turn_id)
            raise
        return {"session_id": session_id, "turn_id": live.turn_id, "status": result.status,
                "answer": result.answer, "question": result.question, "error": result.error,
                "usage": result.usage.model_dump(mode="json") if result.usage else None}

    @tool
    async def list_sessions(query: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The sessions, most recently active first; `query` matches part of the title."""
        sessions = await service.store.sessions.list(q=query, limit=limit)
        return [{"id": s.id, "title": s.title, "created_at": s.created_at.isoformat(),
                 "updated_at": s.updated_at.isoformat()} for s in sessions]

    @tool
    async def get_turn(turn_id: str, format: Literal["json", "markdown"] = "json") -> str:
        """One turn: as JSON (question, answer, status, usage and every event) or as a Markdown
        transcript (the agent's steps, each RLM node with its code and output)."""
        return await export_turn(service.store, turn_id, format)

    return server


class BearerAuth:
    """ASGI middleware: HTTP requests must carry `Authorization: Bearer <token>`."""

    def __init__(self, app: Callable, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "missing or wrong bearer token"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def serve(settings: Settings, transport: Transport = "stdio", host: str = "127.0.0.1",
          port: int = 8765) -> None:
    """Run the MCP server until stdin closes (stdio) or the process is stopped (http)."""
    check_bind(settings, transport, host)
    import_mcp()
    asyncio.run(_serve(settings, transport, host, port))


async def _serve(settings: Settings, transport: Transport, host: str, port: int) -> None:
    from .sessions import SessionService

    service = SessionService(settings)
    await service.open()
    try:
        server = build_server(settings, service)
        if transport == "stdio":
            await server.run_stdio_async()
        else:
            import uvicorn

            app: Any = server.streamable_http_app(host=host)
            if settings.mcp_token:
                app = BearerAuth(app, settings.mcp_token)
            config = uvicorn.Config(app, host=host, port=port, log_level="warning")
            await uvicorn.Server(config).serve()
    finally:
        await service.close()
