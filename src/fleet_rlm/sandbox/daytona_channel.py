"""The driver's stdin and stdout over one Daytona session command.

The driver needs a byte stream each way for as long as the sandbox lives. The SDK
offers four ways to run a process:

* `process.exec` / `code_run`: one process per call, nothing kept between calls. Not a REPL.
* A PTY session: one WebSocket both ways, but a terminal in between (echo, CR/LF rewriting, a
  4 KiB line limit in canonical mode, ^C/^D interpreted) until it's switched to raw mode, and
  stdout and stderr merged into one stream, so a stray write to fd 2 would corrupt the protocol.
* A session command started with `run_async=True`: the daemon feeds its stdin from a FIFO that
  `send_session_command_input` writes (one HTTP POST per message; echo into the log turned off
  with `suppress_input_echo`), and `get_session_command_logs_async` pushes its output over a
  WebSocket (`follow=true`), stdout and stderr apart. No terminal, so bytes arrive as written,
  and the exit code can still be read after the process dies.
* A server inside the sandbox, reached through a preview URL: an inbound port, which a
  network-blocked sandbox shouldn't have.

This module uses the session command. Each host→driver message costs one POST (one round trip
to the toolbox proxy). Driver→host messages are pushed over the open WebSocket, with no
polling. An `execute` is one POST plus its reply on the stream, and each host callback
(`llm_query`, `rlm_query`) adds one POST for its result. Against the local stand-in of the API
in the tests, a round trip costs ~2 ms for an `execute` and ~5 ms for an `execute` with one
callback. Against a real region, add one network round trip per POST. That is small next to
the model call that wrote the code. The daemon relays output line by line through a shell
loop, which suits a line protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .daytona_admin import retrying as _retrying
from .daytona_admin import sdk as _sdk

log = logging.getLogger(__name__)

# Consecutive reconnects of a driver's output stream that brought nothing new before giving up.
MAX_RECONNECTS = 3


class _Input:
    """The driver's stdin for DriverSession: each flush is one send_session_command_input."""

    def __init__(self, send: Callable[[str], None]) -> None:
        self._send, self._pending = send, bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        return len(data)

    def flush(self) -> None:
        if not self._pending:
            return
        text = self._pending.decode("utf-8")
        self._pending.clear()
        try:
            _retrying(lambda: self._send(text))
        except _sdk().DaytonaError as exc:  # DriverSession reads an OSError as "process gone"
            raise BrokenPipeError(f"cannot send to the driver: {exc}") from exc


class SessionChannel:
    """The driver's stdin and stdout over one Daytona session command."""

    def __init__(self, process: Any, session_id: str, command_id: str,
                 closing: Callable[[], bool]) -> None:
        self._process, self.session_id, self.command_id = process, session_id, command_id
        self._closing = closing
        read_end, write_end = os.pipe()
        self.stdout = os.fdopen(read_end, "rb")
        self._sink = os.fdopen(write_end, "wb")
        self.stdin = _Input(lambda text: process.send_session_command_input(
            session_id, command_id, text))
        self.stderr_tail = ""
        self.ended = False
        self._delivered = 0  # stdout characters passed on; a reconnect replays from the start
        threading.Thread(target=self._pump, daemon=True,
                         name=f"daytona-driver-{session_id}").start()

    def _pump(self) -> None:
        sdk = _sdk()
        quiet = 0
        try:
            while not self._closing():
                before = self._delivered
                received = 0

                def on_stdout(text: str) -> None:
                    nonlocal received
                    start, received = received, received + len(text)
                    fresh = text[max(0, self._delivered - start):]
                    if fresh:
                        self._sink.write(fresh.encode("utf-8"))
                        self._sink.flush()
                        self._delivered += len(fresh)

                try:
                    asyncio.run(self._process.get_session_command_logs_async(
                        self.session_id, self.command_id, on_stdout, self._on_stderr))
                except (sdk.DaytonaError, OSError) as exc:
                    log.debug("driver output stream of %s ended: %s", self.session_id, exc)
                quiet = 0 if self._delivered > before else quiet + 1
                if self._closing() or quiet > MAX_RECONNECTS or not self._running():
                    return
                log.info("driver output stream of %s dropped; reconnecting", self.session_id)
                time.sleep(0.2 * quiet)
        finally:
            with contextlib.suppress(OSError):
                self._sink.close()

    def _on_stderr(self, text: str) -> None:
        self.stderr_tail = (self.stderr_tail + text)[-2000:]

    def _running(self) -> bool:
        try:
            command = self._process.get_session_command(self.session_id, self.command_id)
        except _sdk().DaytonaError:
            return False
        return command.exit_code is None
