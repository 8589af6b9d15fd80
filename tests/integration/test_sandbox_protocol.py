"""The driver protocol against a hostile sandbox: model code that forges, floods or stalls the
channel, a driver that misbehaves on the host's pipes, and cells that leave work running.

The host's own defences are tested against small scripted drivers (real processes that break
the protocol on purpose); the driver's are tested in real bubblewrap sandboxes."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from test_containment import make_sandbox, sandbox_processes, wait_until_gone

from fleet_rlm.sandbox.base import DriverSession, SandboxError
from fleet_rlm.sandbox.local import LocalSandbox

READY = 'import sys, time\nout = sys.stdout.buffer\nout.write(b\'{"type": "ready"}\\n\')\n' \
        'out.flush()\n'


class ScriptedDriver:
    """A process that says ready and then does what `script` says, spoken to by a DriverSession
    exactly as the local backend does."""

    def __init__(self, script: str, direct: bool = True, **session: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", READY + textwrap.dedent(script)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.session = DriverSession(
            self.proc.stdin, self.proc.stdout, kill=self.proc.kill,
            put_file=lambda name, data: name, max_output=1000, direct=direct,
            **{"kill_grace_s": 0.5, **session})
        self.session.wait_ready(timeout=60)  # a start, not what is tested: generous under load

    def close(self) -> None:
        self.session.kill()
        self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


def finishes(call, within: float):
    """Run `call` in a thread; its result, or a failure if it is still running after `within` s
    (a hung host request must fail the test, not hang it)."""
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(within)
    assert not worker.is_alive(), f"still waiting after {within} s"
    return outcome[0], time.monotonic() - started


def violations(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "protocol violation" in r.getMessage()]


# -- the host against a driver that breaks the protocol -----------------------------------------
# Both ways of reading: by the requesting thread (local) and by a reader thread (Daytona).
@pytest.mark.parametrize("direct", [True, False])
def test_junk_lines_are_one_violation_not_a_longer_cell(caplog: pytest.LogCaptureFixture,
                                                        direct: bool) -> None:
    driver = ScriptedDriver("""
        sys.stdin.readline()
        while True:
            out.write(b'not json at all\\n' * 100)
            out.flush()
    """, direct)
    try:
        result, elapsed = finishes(lambda: driver.session.execute("1", 5, None, None), 10)
        assert (result.error_type, result.state_lost) == ("ProtocolViolation", True)
        assert "not a frame" in result.error_message
        assert elapsed < 2  # at the first junk line, not at the deadline
        assert len(violations(caplog)) == 1
        assert driver.proc.wait(timeout=5) is not None  # killed
    finally:
        driver.close()


@pytest.mark.parametrize("direct", [True, False])
def test_an_unterminated_line_ends_by_the_frame_limit(caplog: pytest.LogCaptureFixture,
                                                      direct: bool) -> None:
    driver = ScriptedDriver("""
        sys.stdin.readline()
        chunk = b'x' * (1 << 20)
        while True:
            out.write(chunk)
            out.flush()
    """, direct)
    try:
        result, elapsed = finishes(lambda: driver.session.execute("1", 3, None, None), 10)
        assert result.error_type == "ProtocolViolation"
        assert "a line of more than" in result.error_message
        assert elapsed < 3  # linear assembly: the 32 MB limit comes well before the deadline
        assert len(violations(caplog)) == 1
    finally:
        driver.close()


def test_a_slow_unterminated_line_ends_by_the_deadline() -> None:
    driver = ScriptedDriver("""
        sys.stdin.readline()
        while True:
            out.write(b'x')
            out.flush()
            time.sleep(0.001)
    """)
    try:
        result, elapsed = finishes(lambda: driver.session.execute("1", 1, None, None), 10)
        assert result.timed_out and result.error_type == "TimeoutError"
        assert elapsed < 1 + 0.5 + 0.5  # the deadline, the grace for the interrupt, slack
    finally:
        driver.close()


def test_a_reply_to_another_request_is_a_violation() -> None:
    driver = ScriptedDriver("""
        import json
        request = json.loads(sys.stdin.readline())
        out.write(json.dumps({"type": "result", "id": request["id"] + 1, "stdout": "forged",
                              "error": None, "final": None}).encode() + b'\\n')
        out.flush()
        time.sleep(60)
    """)
    try:
        result, _ = finishes(lambda: driver.session.execute("1", 5, None, None), 10)
        assert result.error_type == "ProtocolViolation"
        assert result.stdout == ""
    finally:
        driver.close()


def test_a_driver_that_stops_reading_cannot_hang_a_request() -> None:
    driver = ScriptedDriver("time.sleep(60)\n")
    try:
        result, elapsed = finishes(
            lambda: driver.session.execute("x = 1\n" * 2_000_000, 1, None, None), 10)
        assert result.error_type == "SandboxDied"
        assert "stopped reading" in result.error_message
        assert elapsed < 2
    finally:
        driver.close()


def test_a_control_request_has_a_deadline() -> None:
    driver = ScriptedDriver("sys.stdin.readline()\ntime.sleep(60)\n", request_timeout_s=1.0)
    try:
        def ask() -> str:
            with pytest.raises(SandboxError) as raised:
                driver.session.get_variable("x")
            return str(raised.value)

        message, elapsed = finishes(ask, 10)
        assert "did not answer get_var within 1 s" in message
        assert elapsed < 2.5
    finally:
        driver.close()


# -- model code in a real sandbox --------------------------------------------------------------
@pytest.fixture
def box() -> Iterator[LocalSandbox]:
    sandbox = make_sandbox()
    sandbox.start()
    assert sandbox.uid is not None
    uid = sandbox.uid
    yield sandbox
    sandbox.close()
    assert wait_until_gone(uid) == []


FORGE = """
import os, json, stat
forged = b''.join(json.dumps({"type": "result", "id": i, "stdout": "FORGED", "stderr": "",
                              "error": None, "final": {"output": "FORGED"}, "truncated": False,
                              "duration_s": 0}).encode() + b'\\n' for i in range(1, 50))
reached, refused = [], []
for fd in map(int, os.listdir('/proc/self/fd')):
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):  # its own channel: see test below
            os.write(fd, forged)
            reached.append(fd)
    except OSError:
        pass
for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:
    for target in ('fd/0', 'fd/1', 'fd/3', 'fd/4', 'mem'):
        try:
            with open(f'/proc/{pid}/{target}', 'wb') as f:
                f.write(forged)
            reached.append(f'{pid}/{target}')
        except OSError as exc:
            refused.append(type(exc).__name__)
print('real', reached, sorted(set(refused)))
"""


def test_model_code_cannot_forge_a_reply_on_the_hosts_channel(box: LocalSandbox) -> None:
    box.execute("kept = 1")
    result = box.execute(FORGE)
    assert result.ok, result.traceback
    assert result.final is None
    # It wrote into its own captured output (fds 1 and 2), which is just output.
    assert result.stdout.startswith("real [1, 2] ['PermissionError']"), result.stdout[:300]
    assert box.execute("kept").stdout == "1\n"


def test_junk_on_the_workers_channel_is_one_violation(box: LocalSandbox,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    started = time.monotonic()
    result = box.execute("import os\n"
                         "fds = [fd for fd in map(int, os.listdir('/proc/self/fd')) if fd > 2]\n"
                         "while True:\n"
                         "    for fd in fds:\n"
                         "        try:\n"
                         "            os.write(fd, b'junk\\n' * 1000)\n"
                         "        except OSError:\n"
                         "            pass\n", timeout=5)
    assert (result.error_type, result.state_lost) == ("ProtocolViolation", True)
    assert time.monotonic() - started < 3
    assert len(violations(caplog)) == 1
    assert box.execute("'back'").stdout == "'back'\n"


@pytest.mark.parametrize("frame", [b'{"type": "result", not json}',
                                   b'{"type": "result", "final": {"output": 1}, "x": [}',
                                   b'{"type": "var", "value": 1}'])
def test_a_frame_with_a_right_head_and_a_wrong_body_is_one_violation(
        box: LocalSandbox, caplog: pytest.LogCaptureFixture, frame: bytes) -> None:
    """The supervisor reads only a worker frame's head; the host reads the rest, and a body it
    cannot read, or a reply of the wrong kind for the request, kills the sandbox."""
    result = box.execute("import os, stat, time\n"
                         "for fd in map(int, os.listdir('/proc/self/fd')):\n"
                         "    try:\n"
                         "        if fd > 2 and stat.S_ISSOCK(os.fstat(fd).st_mode):\n"
                         f"            os.write(fd, {frame!r} + b'\\n')\n"
                         "    except OSError:\n"
                         "        pass\n"
                         "time.sleep(2)\n", timeout=5)
    assert (result.error_type, result.state_lost) == ("ProtocolViolation", True), result
    assert result.final is None
    assert len(violations(caplog)) == 1
    assert box.execute("'back'").stdout == "'back'\n"


def test_an_unterminated_line_from_a_cell_ends_by_its_deadline(box: LocalSandbox) -> None:
    started = time.monotonic()
    result = box.execute("import os, time\n"
                         "fds = [fd for fd in map(int, os.listdir('/proc/self/fd')) if fd > 2]\n"
                         "while True:\n"
                         "    for fd in fds:\n"
                         "        try:\n"
                         "            os.write(fd, b'x')\n"
                         "        except OSError:\n"
                         "            pass\n"
                         "    time.sleep(0.001)\n", timeout=1.5)
    elapsed = time.monotonic() - started
    # The interrupt's reply comes after the bytes the cell wrote: not a frame.
    assert (result.error_type, result.state_lost) == ("ProtocolViolation", True), result
    assert elapsed < 1.5 + 1.0 + 1.0  # the deadline, the kill grace, slack
    assert box.execute("'back'").stdout == "'back'\n"


BUSY = """
import os, subprocess, threading, _thread, time
spin = 'while True: pass'
popen = subprocess.Popen(['/usr/bin/python3', '-c', spin])
if os.fork() == 0:  # a daemon: double fork, new session, its parent gone
    os.setsid()
    if os.fork() == 0:
        exec(spin)
    os._exit(0)
threading.Thread(target=lambda: exec(spin), daemon=True).start()
_thread.start_new_thread(time.sleep, (600,))
time.sleep(0.3)
print(len(os.listdir('/proc/self/task')), len(os.listdir('/proc')))
"""


def host_view(box: LocalSandbox) -> tuple[list[tuple[int, str]], int]:
    """The sandbox's live processes, and the threads of its worker, as the host sees them."""
    assert box.uid is not None
    live = [p for p in sandbox_processes(box.uid) if p[1] != "Z"]
    worker = max(pid for pid, _ in live)  # forked after the supervisor
    return live, len(os.listdir(f"/proc/{worker}/task"))


@pytest.mark.parametrize("ending", ["returns", "times out"])
def test_nothing_a_cell_started_outlives_it(box: LocalSandbox, ending: str) -> None:
    box.execute("kept = {'a': 1}")
    code = BUSY + ("" if ending == "returns" else "while True: pass\n")
    result = box.execute(code, timeout=2)
    if ending == "returns":
        assert result.ok, result.traceback
        threads, _ = result.stdout.split()
        assert int(threads) >= 4  # main, the driver's reader, and the cell's two
    else:
        assert result.timed_out and not result.state_lost
    live, threads = host_view(box)
    assert len(live) == 2, live  # the supervisor and the worker
    assert threads == 2  # the worker's main thread and its reader
    # The variables survived, and the next cell sees a clean worker.
    after = box.execute("import os\nprint(kept, len(os.listdir('/proc/self/task')))")
    assert after.stdout == "{'a': 1} 2\n"
    assert box.execute("import subprocess\nsubprocess.run(['true']).returncode").stdout == "0\n"


def test_a_result_of_the_wrong_shape_is_a_violation() -> None:
    driver = ScriptedDriver("""
        import json
        request = json.loads(sys.stdin.readline())
        out.write(json.dumps({"type": "result", "id": request["id"], "stdout": ["not", "text"],
                              "error": None, "final": None}).encode() + b'\\n')
        out.flush()
        time.sleep(60)
    """)
    try:
        result, _ = finishes(lambda: driver.session.execute("1", 5, None, None), 10)
        assert (result.error_type, result.state_lost) == ("ProtocolViolation", True)
        assert "a malformed result" in result.error_message
    finally:
        driver.close()


def test_a_worker_kept_from_shedding_threads_is_stopped(box: LocalSandbox) -> None:
    # The worker runs in the cell's own process, so a cell can switch its shedding off; the
    # supervisor counts the worker's threads from outside.
    result = box.execute("import __main__, os, threading\n"
                         "__main__.Worker.shed_threads = lambda self, reply: os.write(\n"
                         "    self.channel, reply)\n"
                         "threading.Thread(target=lambda: exec('while True: pass')).start()\n")
    assert (result.error_type, result.state_lost) == ("ProtocolViolation", True), result
    assert "left threads running" in result.error_message
    assert box.execute("'back'").stdout == "'back'\n"


def test_a_reader_thread_never_reads_a_pipe_that_took_its_streams_number() -> None:
    """The reading thread (the Daytona way) keeps a descriptor of its own: once the owner of the
    stream closes it, its number may be a new pipe's (the next sandbox's replies), which a
    reader still holding the number would read from, taking another sandbox's frames."""
    host_in, driver_in = os.pipe()
    their_out, our_out = os.pipe()

    class Stream:  # a stream that names its descriptor as the number it was made with
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def fileno(self) -> int:
            return self.fd

        def write(self, data: bytes) -> int:
            return os.write(self.fd, data)

        def flush(self) -> None:
            pass

    session = DriverSession(Stream(driver_in), Stream(their_out), kill=lambda: None,
                            put_file=lambda name, data: name, max_output=1000,
                            kill_grace_s=0.5, direct=False)
    os.write(our_out, b'{"type": "ready"}\n')
    assert session.wait_ready(timeout=10) == {"type": "ready"}
    os.close(their_out)  # its owner closes the stream while the reader waits on it
    reused, feed = os.pipe()
    try:
        if reused != their_out:  # the next pipe takes the freed number, as it does at once
            os.dup2(reused, their_out)
            os.close(reused)
            reused = their_out
        os.write(our_out, b'{"type": "late"}\n')  # the old pipe: the reader reads on
        os.write(feed, b'{"type": "ready"}\n')  # the new sandbox says ready
        time.sleep(0.5)
        os.set_blocking(reused, False)
        assert os.read(reused, 100) == b'{"type": "ready"}\n'
    finally:
        for fd in (reused, feed, our_out, host_in, driver_in):
            with contextlib.suppress(OSError):
                os.close(fd)
