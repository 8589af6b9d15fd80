"""`fleet chat`: a terminal chat on the SessionService.

The service's asyncio loop owns the main thread. The prompt is read in a daemon thread so the loop
keeps delivering events and signals while it waits; Ctrl-C is a loop signal handler: it cancels
the running turn, or (at the prompt, or a second time) leaves. A turn's live tree is drawn on
standard error until its answer starts streaming to standard output. A turn another process runs
in the session (the web app, say) is drawn the same way when the session is opened or a message
meets it (Busy), and Ctrl-C stops it in that process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..budget import Usage
from ..config import Settings
from ..events import Event
from ..sessions import (
    ALL_TENANTS,
    EVERY_TENANT,
    LIMIT_KEYS,
    Busy,
    Conflict,
    NotFound,
    Posted,
    SessionService,
)
from .render import TreeRenderer

PROMPT = "you> "
REPLY_PROMPT = "answer> "
HISTORY_TURNS = 10
LISTED_SESSIONS = 20
TITLE_CHARS = 60
HELP = """\
/docs add PATH...   load documents into this session (text, Markdown, PDF, JSON, CSV, HTML)
/docs               list this session's documents
/sessions           recent sessions with their ids
/open ID            switch to another session
/new                start a new session
/budget [KEY VALUE] the limits of each turn and what the last one used; set a limit
                    (keys: {keys})
/exit               leave (also Ctrl-D); Ctrl-C cancels a running turn"""


class LineReader:
    """Standard input, a line at a time, read in a daemon thread: the loop runs meanwhile, and a
    read abandoned at exit holds nothing. A read whose caller was cancelled serves the next one."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: asyncio.Future | None = None

    async def __call__(self, prompt: str) -> str | None:
        """The next line without its newline; None at end of input."""
        sys.stdout.write(prompt)
        sys.stdout.flush()
        if self._pending is None:
            self._pending = self._loop.create_future()
            threading.Thread(target=self._read, args=(self._pending,), name="chat-input",
                             daemon=True).start()
        line = await asyncio.shield(self._pending)
        self._pending = None
        return line

    def _read(self, future: asyncio.Future) -> None:
        try:
            data = sys.stdin.buffer.readline()
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting loop
            self._loop.call_soon_threadsafe(future.set_exception, exc)
        else:  # bytes that are not text must not end the chat
            line = data.decode(sys.stdin.encoding or "utf-8", errors="replace")
            self._loop.call_soon_threadsafe(future.set_result,
                                            line.removesuffix("\n") if data else None)


class Chat:
    def __init__(self, service: SessionService, out: Console | None = None,
                 err: Console | None = None) -> None:
        self.service = service
        self.user = EVERY_TENANT  # the terminal user holds the database's credentials
        self.out = out or Console(highlight=False)
        self.err = err or Console(stderr=True, highlight=False)
        self.session_id: str | None = None  # created on first use, so /new leaves no empty ones
        self.waiting: str | None = None  # a turn paused on a question to the user
        self.choices: list[str] = []  # the options it offered: answered by number too
        self.limits: dict[str, float] = {}
        # The last turn's usage; a turn resumed after ask_user already counts its first part.
        self.last_usage: list[Usage] = []
        self._turn: str | None = None  # the turn running now
        self._cancelling = self._streaming = False
        self._elsewhere = False  # the running turn is another process's
        self._stopping: asyncio.Task | None = None
        self._main: asyncio.Task | None = None

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, session_id: str | None) -> int:
        loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        if session_id is not None:
            try:
                await self.open(session_id)
            except NotFound:
                self.err.print(f"[red]error:[/red] no session {escape(session_id)}; "
                               "`/sessions` in a chat lists them")
                return 1
        read = LineReader(loop)
        loop.add_signal_handler(signal.SIGINT, self._on_interrupt)
        try:
            while True:
                line = await read(REPLY_PROMPT if self.waiting else PROMPT)
                if line is None:  # Ctrl-D
                    self.out.print()
                    return 0
                line = line.strip()
                if not line:
                    continue
                if line.startswith("/"):
                    if await self.command(line) == "exit":
                        return 0
                else:
                    await self.message(line)
        except asyncio.CancelledError:  # Ctrl-C at the prompt
            self.out.print()
            return 130
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    def _on_interrupt(self) -> None:
        if self._turn is None:
            assert self._main is not None
            self._main.cancel()
        elif not self._cancelling:
            self._cancelling = True
            if self._elsewhere:  # the process that runs it stops it
                self._stopping = asyncio.get_running_loop().create_task(
                    self.service.stop(self._turn, principal=self.user))
            else:
                self.service.cancel(self._turn)
            self.err.print(("\n" if self._streaming else "")
                           + "[yellow]cancelling… (Ctrl-C again to quit)[/yellow]")
        else:  # the wind-down is taking too long for the user: leave now
            self.err.print("[magenta]interrupted[/magenta]")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)

    # -- turns -------------------------------------------------------------------------------
    async def message(self, text: str) -> None:
        try:
            if self.waiting:
                turn_id, self.waiting = self.waiting, None
                if text.strip().isdigit() and 1 <= int(text) <= len(self.choices):
                    text = self.choices[int(text) - 1]
                assert self.session_id is not None
                posted = await self.service.post(self.user, self.session_id, text,
                                                 answering=turn_id)
            else:
                session_id = await self.session(title=text)
                posted = await self.service.post(self.user, session_id, text,
                                                 limits=self.limits)
                self.last_usage = []
        except (Busy, ValueError, NotFound) as exc:
            self.err.print(f"[red]error:[/red] {escape(str(exc))}")
            if isinstance(exc, Busy) and self.session_id is not None:
                await self._follow_active()
            return
        await self.follow(posted)

    async def _follow_active(self) -> None:
        """Follow the session's running turn if another process runs it."""
        assert self.session_id is not None
        active = await self.service.active_turn(self.user, self.session_id)
        if (active is not None and active["status"] == "running"
                and active["turn_id"] not in self.service.live):
            await self.follow_elsewhere(active["turn_id"])

    async def _draw(self, turn_id: str, after_seq: int) -> Event | None:
        """Draw a running turn until it stops: the tree, then the answer as it streams.
        Returns its last event."""
        renderer = TreeRenderer(self.err)
        self._turn, self._cancelling, self._streaming = turn_id, False, False
        last = None
        with contextlib.ExitStack() as display:
            display.enter_context(renderer.live())
            async for event in self.service.follow(turn_id, after_seq):
                last = event
                renderer(event)
                if event.type == "ask_user":
                    self.choices = list(event.choices or [])
                if event.type == "answer_delta":
                    if not self._streaming:
                        display.close()  # the tree's last frame stays above
                        self._streaming = True
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
        if self._streaming:
            sys.stdout.write("\n")
        return last

    async def follow_elsewhere(self, turn_id: str) -> None:
        """Draw a turn another process (the web app, say) runs in this session until it stops;
        Ctrl-C stops it there."""
        self.err.print("[dim]a turn runs in this session elsewhere; following it (Ctrl-C "
                       "stops it)[/dim]")
        self._elsewhere = True
        try:
            last = await self._draw(turn_id, 0)
        finally:
            self._turn, self._elsewhere = None, False
        status = getattr(last, "status", None) if last is not None else None
        if status == "waiting":
            self.waiting = turn_id
            turn = await self.service.turn(self.user, turn_id)
            self.out.print(f"[bold cyan]?[/] {escape((turn.pending or {}).get('question', ''))}")
        self.err.print(f"[dim]{status or 'stopped'}[/dim]")

    async def follow(self, posted: Posted) -> None:
        """Draw a running turn until it stops: the tree, then the answer as it streams."""
        try:
            await self._draw(posted.turn_id, posted.after_seq)
            try:
                result = await posted.done
            except Exception as exc:  # noqa: BLE001 - the turn failed; the chat goes on
                self.err.print(f"[red]error:[/red] {escape(f'{type(exc).__name__}: {exc}')}")
                return
        finally:
            self._turn = None
        if result.usage is not None:
            self.last_usage = [result.usage]
        match result.status:
            case "waiting":
                self.waiting = posted.turn_id
                self.out.print(f"[bold cyan]?[/] {escape(result.question or '')}")
                for number, choice in enumerate(self.choices, 1):
                    self.out.print(f"  [cyan]{number}[/] {escape(choice)}")
            case "cancelled":
                self.err.print("[magenta]cancelled[/magenta]"
                               + (" (the partial answer is above)" if self._streaming else ""))
            case "budget":
                self.err.print(f"[magenta]stopped:[/magenta] {escape(str(result.error))}")
            case "error":
                self.err.print(f"[red]error:[/red] {escape(str(result.error))}")
        self.err.print(f"[dim]{result.status} · {usage_text(self.last_usage)}[/dim]")

    # -- sessions ----------------------------------------------------------------------------
    async def session(self, title: str) -> str:
        """The current session, created now if there is none yet."""
        if self.session_id is None:
            clipped = " ".join(title.split())
            if len(clipped) > TITLE_CHARS:
                clipped = clipped[: TITLE_CHARS - 1] + "…"
            self.session_id = (await self.service.create_session(clipped,
                                                                 principal=self.user)).id
            self.err.print(f"[dim]session {self.session_id}[/dim]")
        return self.session_id

    async def open(self, session_id: str) -> None:
        """Make `session_id` current and print its recent history (NotFound if there is none)."""
        session = await self.service.session(self.user, session_id)
        turns = await self.service.turns(self.user, session_id)
        self.session_id, self.waiting, self.last_usage = session.id, None, []
        self.out.print(f"[bold]{escape(session.title)}[/] [dim]{session.id} · "
                       f"{len(turns)} turns[/dim]")
        if len(turns) > HISTORY_TURNS:
            self.out.print(f"[dim]… {len(turns) - HISTORY_TURNS} earlier turns[/dim]")
        shown = turns[-HISTORY_TURNS:]
        asked = await self.service.asked(shown)
        for turn in shown:
            self.out.print(f"[bold]{PROMPT}[/]{escape(turn.user_message)}")
            for exchange in asked.get(turn.id, []):
                if exchange["reply"] is not None:
                    self.out.print(f"[bold cyan]?[/] {escape(str(exchange['question']))}\n"
                                   f"[bold]{PROMPT}[/]{escape(exchange['reply'])}")
            if turn.status == "waiting":
                self.waiting = turn.id
                question = (turn.pending or {}).get("question", "")
                self.out.print(f"[bold cyan]?[/] {escape(question)} [dim](waiting for your "
                               "answer)[/dim]")
            elif turn.answer:
                self.out.print(escape(turn.answer))
            else:
                why = f": {turn.error}" if turn.error else ""
                self.out.print(f"[dim]({turn.status}{escape(why)})[/dim]")
        await self._follow_active()

    # -- slash commands ----------------------------------------------------------------------
    async def command(self, line: str) -> str | None:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.err.print(f"[red]error:[/red] {exc}")
            return None
        match words:
            case ["/exit" | "/quit"]:
                return "exit"
            case ["/help"]:
                self.out.print(escape(HELP.format(keys=", ".join(sorted(LIMIT_KEYS)))))
            case ["/docs"]:
                await self.list_documents()
            case ["/docs", "add", *paths] if paths:
                for path in paths:
                    await self.add_document(path)
            case ["/sessions"]:
                await self.list_sessions()
            case ["/open", session_id]:
                try:
                    await self.open(session_id)
                except NotFound:
                    self.err.print(f"[red]error:[/red] no session {escape(session_id)}")
            case ["/new"]:
                self.session_id, self.waiting, self.last_usage = None, None, []
                self.err.print("[dim]new session: it starts with your next message or "
                               "document[/dim]")
            case ["/budget"]:
                self.show_budget()
            case ["/budget", key, value]:
                self.set_limit(key, value)
            case _:
                self.err.print(f"[red]error:[/red] not a command: {escape(line)}; /help lists "
                               "them")
        return None

    async def add_document(self, path: str) -> None:
        from ..documents import DocumentError

        file = Path(path).expanduser()
        try:
            data = await asyncio.to_thread(file.read_bytes)
        except OSError as exc:
            self.err.print(f"[red]error:[/red] cannot read {escape(path)}: "
                           f"{escape(exc.strerror or str(exc))}")
            return
        try:
            session_id = await self.session(title=file.name)
            doc = await self.service.add_document(session_id, file.name, data,
                                                  principal=self.user)
        except (DocumentError, Conflict) as exc:
            self.err.print(f"[red]error:[/red] {escape(str(exc))}")
            return
        converted = f", converted from {doc.encoding}" if doc.encoding else ""
        self.out.print(f"added {escape(doc.name)} ({doc.kind}, {doc.chars:,} chars{converted})")

    async def list_documents(self) -> None:
        docs = (await self.service.documents(self.user, self.session_id) if self.session_id
                else [])
        if not docs:
            self.out.print("[dim]no documents yet: /docs add PATH[/dim]")
        for doc in docs:
            detached = "" if doc.attached else " · detached (not shown to the agent)"
            self.out.print(f"{escape(doc.name)}  [dim]{doc.kind} · {doc.chars:,} chars · "
                           f"{doc.size_bytes:,} bytes{detached}[/dim]")

    async def list_sessions(self) -> None:
        sessions = await self.service.list_sessions(self.user, limit=LISTED_SESSIONS)
        if not sessions:
            self.out.print("[dim]no sessions yet[/dim]")
        for session in sessions:
            mark = "*" if session.id == self.session_id else " "
            self.out.print(f"{mark} {session.id}  {escape(session.title)}  "
                           f"[dim]{session.updated_at:%Y-%m-%d %H:%M}[/dim]")

    def show_budget(self) -> None:
        s = self.service.with_limits(self.limits)
        changed = ", ".join(f"{k}={v}" for k, v in self.limits.items())
        self.out.print(f"each turn: {s.max_calls} calls · {s.max_tokens:,} tokens · "
                       f"${s.max_usd:g} · {s.max_wall_s:g}s · depth {s.max_depth} · "
                       f"{s.max_iterations} iterations per RLM node"
                       + (f" [dim](set here: {changed})[/dim]" if changed else ""))
        self.out.print(f"last turn: {usage_text(self.last_usage)}" if self.last_usage
                       else "last turn: [dim]none yet[/dim]")

    def set_limit(self, key: str, value: str) -> None:
        from pydantic import ValidationError

        from ..budget import renamed_limits

        try:
            renamed = renamed_limits({key: value}, "/budget")  # a limit's old name too
            key = next(iter(renamed))
            limits = {**self.limits, **renamed}
            settings = self.service.with_limits(limits)
        except ValidationError as exc:
            self.err.print(f"[red]error:[/red] {key}: {escape(exc.errors()[0]['msg'])}")
            return
        except ValueError as exc:
            self.err.print(f"[red]error:[/red] {escape(str(exc))}")
            return
        self.limits = {k: getattr(settings, k) for k in limits}
        self.out.print(f"{key} = {self.limits[key]} for the next turns")


def usage_text(usages: list[Usage]) -> str:
    """Calls, tokens, cost and time of a turn (its segments summed)."""
    calls = sum(u.calls for u in usages)
    tokens = sum(u.tokens for u in usages)
    usd = sum(u.usd for u in usages)
    unpriced = sum(u.usd_unknown_calls for u in usages)
    if unpriced and not usd:
        cost = "cost unknown"
    else:
        cost = f"${usd:.4f}" + (f" + {unpriced} unpriced calls" if unpriced else "")
    elapsed = sum(u.elapsed_s for u in usages)
    return f"{calls} calls · {tokens:,} tokens · {cost} · {elapsed:.1f}s"


def run_chat(settings: Settings, session_id: str | None = None) -> int:
    """Run the chat until the user leaves; returns the exit status."""

    async def main() -> int:
        # The terminal user has the database's credentials: row-level security shows all.
        service = SessionService(settings, tenant=ALL_TENANTS)
        await service.open()
        try:
            return await Chat(service).run(session_id)
        finally:
            await service.close()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:  # before the chat's own handler was installed
        return 130
