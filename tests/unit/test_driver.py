"""The driver protocol: spoken directly over JSON lines, and through DriverSession/LocalSandbox.

Everything here runs the driver without bubblewrap (a plain subprocess, or
`LocalSandbox(isolated=False)`); containment itself is tested in tests/integration.
"""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.sandbox.base import DRIVER_SOURCE, INLINE_LIMIT, DriverSession, SandboxError
from fleet_rlm.sandbox.bulk import value_file
from fleet_rlm.sandbox.local import LocalSandbox

REPO = Path(__file__).resolve().parents[2]
DRIVER_PATH = "src/fleet_rlm/sandbox/driver.py"


# -- a bare-hands client of the protocol -------------------------------------------------------
class RawDriver:
    """`python -I driver.py` as a plain subprocess, spoken to in JSON lines."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.stderr = open(cwd / "driver.stderr", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", DRIVER_PATH, *args], cwd=REPO, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr)
        self.lines: queue.Queue[dict | None] = queue.Queue()
        self.ids = iter(range(1, 10**6))
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self.recv()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def send_line(self, line: str | bytes) -> None:
        self.proc.stdin.write(line.encode() if isinstance(line, str) else line)
        self.proc.stdin.flush()

    def send(self, message: dict) -> None:
        self.send_line(json.dumps(message) + "\n")

    def recv(self, timeout: float = 10) -> dict:
        message = self.lines.get(timeout=timeout)
        assert message is not None, "driver exited"
        return message

    def request(self, message: dict, callbacks: dict[str, Any] | None = None,
                seen: list[dict] | None = None) -> dict:
        """Send a request; answer callbacks from `callbacks` until the reply with its id."""
        request_id = next(self.ids)
        self.send({**message, "id": request_id})
        while True:
            reply = self.recv()
            if seen is not None:
                seen.append(reply)
            if reply["type"] == "callback":
                function = (callbacks or {})[reply["name"]]
                try:
                    value = function(*reply["args"], **reply["kwargs"])
                except Exception as exc:  # noqa: BLE001 - goes back to the driver
                    self.send({"op": "callback_error", "call_id": reply["call_id"],
                               "error": f"{type(exc).__name__}: {exc}"})
                else:
                    self.send({"op": "callback_result", "call_id": reply["call_id"],
                               "value": value})
                continue
            assert reply.get("id") == request_id, reply
            return reply

    def execute(self, code: str, **fields: Any) -> dict:
        callbacks = fields.pop("callbacks", None)
        message = {"op": "execute", "code": code, "tools": sorted(callbacks or {}),
                   "submit_fields": None, "max_output": 10_000, **fields}
        reply = self.request(message, callbacks)
        assert reply["type"] == "result", reply
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send({"op": "shutdown"})
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.stderr.close()


@pytest.fixture
def raw(tmp_path: Path) -> Iterator[RawDriver]:
    driver = RawDriver(tmp_path)
    yield driver
    driver.close()


@pytest.fixture
def session(tmp_path: Path) -> Iterator[DriverSession]:
    """A DriverSession on a plain driver subprocess; large values land in tmp_path."""
    proc = subprocess.Popen([sys.executable, "-I", str(DRIVER_SOURCE)], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)

    def put_file(name: str, chunks: Iterable[bytes]) -> str:
        path = tmp_path / name
        path.write_bytes(b"".join(chunks))
        return str(path)

    driver = DriverSession(proc.stdin, proc.stdout, kill=proc.kill, put_file=put_file,
                           max_output=10_000, kill_grace_s=1.0)
    driver.wait_ready(timeout=10)
    yield driver
    driver.close()
    proc.wait(timeout=5)
    proc.stdin.close()
    proc.stdout.close()


def unsafe_sandbox(tmp_path: Path, **settings: Any) -> LocalSandbox:
    defaults = {"exec_kill_grace_s": 1.0, "max_output_chars": 10_000}
    return LocalSandbox(Settings(**{**defaults, **settings}), isolated=False,
                        work_dir=tmp_path / "work")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[LocalSandbox]:
    with unsafe_sandbox(tmp_path) as box:
        yield box


def record_sends(target: DriverSession) -> list[dict]:
    """Every message the host sends from now on, in order."""
    sent: list[dict] = []
    original = target._send

    def spy(message: dict, deadline: float) -> None:
        sent.append(message)
        original(message, deadline)

    target._send = spy  # type: ignore[method-assign]
    return sent


def set_vars(sent: list[dict]) -> list[dict]:
    return [m for m in sent if m["op"] == "set_var"]


# -- the raw protocol --------------------------------------------------------------------------
def test_raw_ready_then_persistent_namespace(raw: RawDriver) -> None:
    assert raw.ready["type"] == "ready"
    assert raw.ready["pid"] == raw.proc.pid
    assert raw.ready["python"] == sys.version.split()[0]
    first = raw.execute("x = 41")
    assert (first["stdout"], first["error"], first["final"], first["truncated"]) == \
        ("", None, None, False)
    second = raw.execute("x + 1")
    assert second["stdout"] == "42\n"
    assert second["duration_s"] >= 0


def test_raw_trailing_expression_is_shown_like_a_repl(raw: RawDriver) -> None:
    assert raw.execute("'text'")["stdout"] == "'text'\n"
    assert raw.execute("y = [1, 2]\ny")["stdout"] == "[1, 2]\n"
    assert raw.execute("None")["stdout"] == ""
    # print() returns None: the line appears once, not followed by "None".
    assert raw.execute("print('once')")["stdout"] == "once\n"
    # Only a final expression is echoed, not one in the middle.
    assert raw.execute("1\nz = 2")["stdout"] == ""


def test_raw_set_var_inline_and_from_files(raw: RawDriver, tmp_path: Path) -> None:
    assert raw.request({"op": "set_var", "name": "inline", "value": {"a": [1, 2]}}) == \
        {"type": "var", "value": None, "id": 1}
    text_file = tmp_path / "doc.txt"
    text_file.write_bytes(b"".join(value_file(["héllo\n{not json}".encode()])))
    json_file = tmp_path / "doc.json"
    json_file.write_bytes(b"".join(value_file([json.dumps({"k": [1, "ü"]}).encode()])))
    raw.request({"op": "set_var", "name": "text", "path": str(text_file), "format": "text"})
    raw.request({"op": "set_var", "name": "data", "path": str(json_file), "format": "json"})
    out = raw.execute("print(inline['a'][1], repr(text), data['k'][1], type(data).__name__)")
    assert out["stdout"] == "2 'héllo\\n{not json}' ü dict\n"


def test_raw_set_var_rejects_a_bad_name_and_a_missing_file(raw: RawDriver,
                                                          tmp_path: Path) -> None:
    bad = raw.request({"op": "set_var", "name": "not-a-name", "value": 1})
    assert bad["type"] == "error"
    assert bad["error"]["type"] == "ValueError"
    assert "not a valid variable name" in bad["error"]["message"]
    missing = raw.request({"op": "set_var", "name": "v", "path": str(tmp_path / "nope"),
                           "format": "json"})
    assert missing["error"]["type"] == "FileNotFoundError"


def test_raw_get_var(raw: RawDriver) -> None:
    raw.execute("nums = [1, 2.5, 'three', None, {'x': True}]\nfn = len")
    assert raw.request({"op": "get_var", "name": "nums"})["value"] == \
        [1, 2.5, "three", None, {"x": True}]
    unserialisable = raw.request({"op": "get_var", "name": "fn"})
    assert unserialisable["type"] == "error"
    assert unserialisable["error"]["type"] == "TypeError"
    assert "fn holds a builtin_function_or_method, not JSON-serialisable" in \
        unserialisable["error"]["message"]
    undefined = raw.request({"op": "get_var", "name": "ghost"})
    assert undefined["error"]["type"] == "NameError"
    assert "'ghost' is not defined" in undefined["error"]["message"]


def test_raw_callbacks_carry_args_kwargs_and_errors(raw: RawDriver) -> None:
    seen: list[dict] = []
    message = {"op": "execute", "code": "r = add(2, b=3)\nr", "tools": ["add"],
               "submit_fields": None, "max_output": 1000}
    reply = raw.request(message, {"add": lambda a, b: a + b}, seen)
    assert reply["stdout"] == "5\n"
    call = seen[0]
    assert (call["type"], call["name"], call["args"], call["kwargs"]) == \
        ("callback", "add", [2], {"b": 3})

    def fail(reason: str) -> None:
        raise LookupError(reason)

    failed = raw.execute("fail('no such row')", callbacks={"fail": fail})
    assert failed["error"]["type"] == "RuntimeError"
    assert failed["error"]["message"] == "fail() failed: LookupError: no such row"


def test_raw_malformed_lines_get_protocol_errors_and_the_driver_keeps_serving(
        raw: RawDriver) -> None:
    raw.send_line("this is not json\n")
    first = raw.recv()
    assert first["type"] == "protocol_error"
    assert "this is not json" in first["error"]
    raw.send_line('{"no_op": 1}\n')
    assert raw.recv()["type"] == "protocol_error"
    raw.send_line(b"\xff\xfe\n")  # not even UTF-8
    assert raw.recv()["type"] == "protocol_error"
    unknown = raw.request({"op": "frobnicate"})
    assert unknown["type"] == "error"
    assert "unknown op 'frobnicate'" in unknown["error"]["message"]
    assert raw.execute("6 * 7")["stdout"] == "42\n"
    assert raw.proc.poll() is None


def test_raw_interrupt_stops_a_cell_and_is_harmless_between_cells(raw: RawDriver) -> None:
    raw.send({"op": "interrupt"})  # nothing is running: must not kill the driver
    assert raw.execute("kept = 1\nkept")["stdout"] == "1\n"
    raw.send({"op": "execute", "code": "while True: pass", "id": 99, "tools": [],
              "submit_fields": None, "max_output": 1000})
    time.sleep(0.2)
    raw.send({"op": "interrupt"})
    reply = raw.recv()
    assert reply["id"] == 99
    assert reply["error"]["type"] == "KeyboardInterrupt"
    assert reply["error"]["line"] == 1
    assert raw.execute("kept")["stdout"] == "1\n"


def test_raw_shutdown_ends_the_process(raw: RawDriver) -> None:
    raw.send({"op": "shutdown"})
    assert raw.proc.wait(timeout=5) == 0


def test_raw_stdin_is_not_the_protocol(raw: RawDriver) -> None:
    # Model code reading stdin must not swallow protocol lines.
    reply = raw.execute("import sys\nsys.stdin.read()")
    assert reply["stdout"] == "''\n"
    assert raw.execute("'still here'")["stdout"] == "'still here'\n"


# -- DriverSession / LocalSandbox(isolated=False) ----------------------------------------------
def test_session_executes_with_a_persistent_namespace(session: DriverSession) -> None:
    assert session.ready["type"] == "ready"
    assert session.execute("import math\nr = math.sqrt(16)", None, None, None).ok
    result = session.execute("r * 2", None, None, None)
    assert (result.stdout, result.error_type, result.timed_out, result.state_lost) == \
        ("8.0\n", None, False, False)


def test_put_variable_inline_and_as_files(session: DriverSession, tmp_path: Path) -> None:
    sent = record_sends(session)
    big_text = "ä" * (INLINE_LIMIT + 10)
    big_json = {"rows": list(range(INLINE_LIMIT // 4))}
    session.put_variable("small", {"k": "v"})
    session.put_variable("big_text", big_text)
    session.put_variable("big_json", big_json)
    messages = set_vars(sent)
    assert messages[0] == {"op": "set_var", "name": "small", "value": {"k": "v"}, "id": 1}
    assert messages[1]["format"] == "text" and "value" not in messages[1]
    assert Path(messages[1]["path"]).read_bytes() == b"".join(value_file([big_text.encode()]))
    assert messages[2]["format"] == "json"
    assert Path(messages[2]["path"]).parent == tmp_path
    check = session.execute(
        "print(small['k'], len(big_text), big_text == 'ä' * len(big_text), "
        "type(big_json).__name__, big_json['rows'][-1])", None, None, None)
    assert check.stdout == f"v {INLINE_LIMIT + 10} True dict {INLINE_LIMIT // 4 - 1}\n"
    assert session.get_variable("small") == {"k": "v"}


def test_unchanged_values_are_not_sent_again(session: DriverSession) -> None:
    sent = record_sends(session)
    text = "context " * 20_000  # large enough to cross as a file
    items = [1, 2, 3]
    session.put_variable("text", text)
    session.put_variable("text", text)
    session.put_variable("text", "".join(["context "] * 20_000))  # equal, another object
    session.put_variable("items", items)
    session.put_variable("items", items)
    session.put_variable("items", [1, 2, 3])
    assert [m["name"] for m in set_vars(sent)] == ["text", "items"]

    items.append(4)  # same object, new content: must be sent
    session.put_variable("items", items)
    session.put_variable("text", "changed")
    session.put_variable("number", 3)
    session.put_variable("number", "3")  # same JSON text, different type: must be sent
    assert [m["name"] for m in set_vars(sent)] == \
        ["text", "items", "items", "text", "number", "number"]
    result = session.execute("print(items, text, repr(number))", None, None, None)
    assert result.stdout == "[1, 2, 3, 4] changed '3'\n"


def test_put_variable_rejects_values_that_cannot_cross(session: DriverSession) -> None:
    sent = record_sends(session)
    with pytest.raises(TypeError, match=r"variable 'handle' \(object\) cannot be sent to the "
                                        r"sandbox: the sandbox cannot hold a value of type object"):
        session.put_variable("handle", object())
    with pytest.raises(TypeError, match="'nested' \\(dict\\)"):
        session.put_variable("nested", {"ok": 1, "bad": {1: threading.Lock()}})
    looped: list = []
    looped.append(looped)
    with pytest.raises(TypeError, match="nested more than 200 levels deep"):
        session.put_variable("looped", looped)
    assert sent == []
    assert session.execute("'handle' in globals()", None, None, None).stdout == "False\n"


def test_get_variable_of_an_unserialisable_value_is_a_clear_error(sandbox: LocalSandbox) -> None:
    sandbox.execute("import threading\nlock = threading.Lock()\nfine = {'a': [1]}")
    assert sandbox.get_variable("fine") == {"a": [1]}
    with pytest.raises(SandboxError, match=r"TypeError: lock holds a lock, not JSON-serialisable"):
        sandbox.get_variable("lock")
    with pytest.raises(SandboxError, match=r"NameError: name 'nope' is not defined"):
        sandbox.get_variable("nope")
    assert sandbox.execute("fine['a'][0]").stdout == "1\n"


def test_callback_simple_and_keyword_args(sandbox: LocalSandbox) -> None:
    calls: list[tuple] = []

    def lookup(key: str, default: Any = None, *, upper: bool = False) -> Any:
        calls.append((key, default, upper))
        return key.upper() if upper else {"k": [1, 2]}.get(key, default)

    result = sandbox.execute("a = lookup('k')\nb = lookup('x', default=7, upper=False)\n"
                             "c = lookup('y', upper=True)\nprint(a, b, c)",
                             callbacks={"lookup": lookup})
    assert result.stdout == "[1, 2] 7 Y\n"
    assert calls == [("k", None, False), ("x", 7, False), ("y", None, True)]


def test_callback_results_chain_within_one_cell(sandbox: LocalSandbox) -> None:
    calls: list[int] = []

    def double(n: int) -> int:
        calls.append(n)
        return n * 2

    result = sandbox.execute("double(double(3)) + double(1)", callbacks={"double": double})
    assert result.stdout == "14\n"
    assert calls == [3, 6, 1]


def test_callback_that_runs_code_in_a_second_sandbox(tmp_path: Path) -> None:
    tags: list[str] = []

    def tag(label: str) -> str:
        tags.append(label)
        return f"<{label}>"

    with unsafe_sandbox(tmp_path / "outer") as outer, \
            unsafe_sandbox(tmp_path / "inner") as inner:

        def run_inner(code: str) -> dict:
            result = inner.execute(code, timeout=10, callbacks={"tag": tag})
            return {"stdout": result.stdout, "error": result.error_type}

        result = outer.execute(
            "first = run_inner('print(6 * 7)')\n"
            "second = run_inner('tag(\"deep\")')\n"
            "third = run_inner('1/0')\n"
            "print(first['stdout'], second['stdout'], third['error'])",
            timeout=20, callbacks={"run_inner": run_inner})
        assert result.ok, result.traceback
        assert result.stdout == "42\n '<deep>'\n ZeroDivisionError\n"
        assert tags == ["deep"]
        assert outer.pid != inner.pid


def test_concurrent_callbacks_run_in_parallel_and_keep_order(sandbox: LocalSandbox) -> None:
    lock = threading.Lock()
    active = peak = 0

    def slow(i: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.2)
        with lock:
            active -= 1
        return i * 10

    code = (
        "import threading\n"
        "results = [None] * 16\n"
        "def work(i):\n"
        "    results[i] = slow(i)\n"
        "threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]\n"
        "for t in threads: t.start()\n"
        "for t in threads: t.join()\n"
        "results\n"
    )
    started = time.monotonic()
    result = sandbox.execute(code, timeout=20, callbacks={"slow": slow})
    elapsed = time.monotonic() - started
    assert result.ok, result.traceback
    assert result.stdout == repr([i * 10 for i in range(16)]) + "\n"
    assert elapsed < 1.2, f"16 x 0.2 s callbacks took {elapsed:.2f} s: not concurrent"
    assert peak >= 8


def test_callback_that_raises_is_a_runtime_error_in_the_sandbox(sandbox: LocalSandbox) -> None:
    def explode(x: int) -> None:
        raise ValueError(f"bad input {x}")

    caught = sandbox.execute("try:\n    explode(3)\nexcept RuntimeError as e:\n    print(e)",
                             callbacks={"explode": explode})
    assert caught.stdout == "explode() failed: ValueError: bad input 3\n"
    uncaught = sandbox.execute("x = 1\nexplode(4)", callbacks={"explode": explode})
    assert uncaught.error_type == "RuntimeError"
    assert uncaught.error_message == "explode() failed: ValueError: bad input 4"
    assert uncaught.error_line == 2
    assert "driver.py" not in uncaught.traceback


def test_callback_results_keep_their_type_or_arrive_as_text(sandbox: LocalSandbox) -> None:
    made = sandbox.execute("r = make()\nprint(type(r).__name__, sorted(r))",
                           callbacks={"make": lambda: {1, 2}})
    assert made.stdout == "set [1, 2]\n"

    class Opaque:
        def __str__(self) -> str:
            return "opaque thing"

    # As dspy's own interpreter does, a result the sandbox cannot hold arrives as its text.
    opaque = sandbox.execute("make()", callbacks={"make": Opaque})
    assert opaque.stdout == "'opaque thing'\n"


def test_unknown_callback_name(sandbox: LocalSandbox) -> None:
    assert sandbox.execute("fetch(1)", callbacks={"fetch": lambda n: n + 1}).stdout == "2\n"
    # The stub stays in the namespace, but this run registered no such host function.
    result = sandbox.execute("fetch(1)", callbacks={"other": lambda: None})
    assert result.error_type == "RuntimeError"
    assert result.error_message == "fetch() failed: NameError: no host function named 'fetch'"
    never = sandbox.execute("never_registered(1)")
    assert never.error_type == "NameError"


def test_callback_args_go_to_the_host_as_plain_data(sandbox: LocalSandbox) -> None:
    calls: list[Any] = []
    result = sandbox.execute("send(object())", callbacks={"send": calls.append})
    assert result.error_type == "TypeError"
    assert result.error_message.startswith("arguments to send() must be plain data")
    assert "a object is not plain data" in result.error_message
    assert calls == []
    assert sandbox.execute("send([1, 'a'])", callbacks={"send": calls.append}).ok
    # Sets, tuples and non-string keys become what json.dumps would make of them.
    code = ("import datetime\n"
            "send({'s': {3, 1, 2}, 't': (1, 'a'), 1: b'x', 'd': datetime.date(2024, 5, 6)})")
    assert sandbox.execute(code, callbacks={"send": calls.append}).ok
    assert calls == [[1, "a"], {"s": [1, 2, 3], "t": [1, "a"], "1": "x", "d": "2024-05-06"}]


def test_runtime_error_traceback_has_cell_frames_and_line_numbers(sandbox: LocalSandbox) -> None:
    result = sandbox.execute("def inner(d):\n    return d['missing']\n\nvalue = inner({})\n")
    assert result.error_type == "KeyError"
    assert result.error_line == 2
    tb = result.traceback
    assert tb.startswith("Traceback (most recent call last):\n")
    assert 'line 4, in <module>\n    value = inner({})' in tb
    assert "line 2, in inner\n    return d['missing']" in tb
    assert tb.rstrip().endswith("KeyError: 'missing'")
    assert "driver.py" not in tb and "run_cell" not in tb and "exec(" not in tb
    # Library frames the cell called are the model's business and stay.
    lib = sandbox.execute("import json\njson.loads('{bad')")
    assert lib.error_type == "JSONDecodeError"
    assert lib.error_line == 2
    assert "json" in lib.traceback.split("<module>")[1]


def test_syntax_error_has_line_number_and_caret(sandbox: LocalSandbox) -> None:
    result = sandbox.execute("ran = True\nx = 1\ny = (2 +\n")
    assert result.error_type == "SyntaxError"
    assert result.error_line == 3
    assert 'line 3\n    y = (2 +\n        ^' in result.traceback
    # Nothing of a cell that does not parse runs.
    assert sandbox.execute("'ran' in globals()").stdout == "False\n"
    bad_indent = sandbox.execute("if True:\nprint(1)")
    assert bad_indent.error_type == "IndentationError"
    assert bad_indent.error_line == 2


def test_output_truncation_says_how_much(tmp_path: Path) -> None:
    with unsafe_sandbox(tmp_path, max_output_chars=1000) as box:
        printed = box.execute("print('a' * 5000)")
        assert printed.truncated
        assert printed.stdout == "a" * 1000 + "\n[output truncated: 4001 characters dropped]"
        fd_level = box.execute("import os\n_ = os.write(1, b'b' * 5000)")
        assert fd_level.truncated
        assert fd_level.stdout == "b" * 1000 + "\n[output truncated: 4000 characters dropped]"
        both = box.execute("import sys\nprint('o' * 800)\nprint('e' * 800, file=sys.stderr)")
        # Each stream has its own cap.
        assert (both.truncated, both.stdout, both.stderr) == \
            (False, "o" * 800 + "\n", "e" * 800 + "\n")
        fine = box.execute("print('c' * 999)")
        assert (fine.truncated, fine.stdout) == (False, "c" * 999 + "\n")


def test_stderr_and_fd_level_output_are_captured(sandbox: LocalSandbox) -> None:
    result = sandbox.execute(
        "import os, subprocess, sys\n"
        "print('to stdout')\n"
        "print('to stderr', file=sys.stderr)\n"
        "_ = os.write(1, b'fd one\\n')\n"
        "_ = os.write(2, b'fd two\\n')\n"
        "_ = subprocess.run(['echo', 'from a child'])\n")
    assert result.ok, result.traceback
    assert result.stderr == "to stderr\n"
    assert result.stdout.startswith("to stdout\n")
    for text in ("fd one\n", "fd two\n", "from a child\n"):
        assert text in result.stdout
    # Nothing leaked into the protocol stream: the next request still works.
    assert sandbox.execute("'ok'").stdout == "'ok'\n"


def test_non_utf8_output_does_not_break_the_protocol(sandbox: LocalSandbox) -> None:
    result = sandbox.execute(
        "import os, sys\n"
        "_ = sys.stdout.buffer.write(b'buf \\xff\\xfe end\\n')\n"
        "_ = os.write(1, b'raw \\xc3\\x28 end\\n')\n"
        "print('\\udcff'.encode('utf-8', 'surrogateescape').decode('latin-1'))\n")
    assert result.ok, result.traceback
    assert "buf \ufffd\ufffd end\n" in result.stdout
    assert "raw \ufffd( end\n" in result.stdout
    assert "ÿ\n" in result.stdout
    assert sandbox.execute("1 + 1").stdout == "2\n"


def test_lone_surrogates_cross_both_ways(sandbox: LocalSandbox) -> None:
    # e.g. a file name decoded with surrogateescape: it must neither kill the driver nor hang.
    shown = sandbox.execute("name = b'caf\\xe9'.decode('utf-8', 'surrogateescape')\n"
                            "print(name)\nname")
    assert (shown.error_type, shown.stdout) == (None, "caf\udce9\n'caf\\udce9'\n")
    echoed = sandbox.execute("echo(name)", timeout=5, callbacks={"echo": lambda s: s + "\udcff"})
    assert (echoed.timed_out, echoed.stdout) == (False, "'caf\\udce9\\udcff'\n")
    sandbox.put_variable("odd", "x\udc80")
    assert sandbox.get_variable("odd") == "x\udc80"
    assert sandbox.get_variable("name") == "caf\udce9"
    assert sandbox.execute("len(odd)").stdout == "2\n"


def test_a_one_gigabyte_print_under_the_memory_cap(sandbox: LocalSandbox) -> None:
    host_rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = sandbox.execute("print('x' * 10**9)", timeout=30)
    if result.error_type == "MemoryError":  # the sandbox's 1024 MB cap stopped it
        assert not result.state_lost
        assert result.error_line == 1
        assert sandbox.execute("1 + 1").stdout == "2\n"
    elif result.error_type == "SandboxDied":
        assert result.state_lost
        assert sandbox.execute("1 + 1").stdout == "2\n"
    else:
        assert result.ok and result.truncated, result
        assert len(result.stdout) < 10_000 + 100
    host_rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert host_rss_after - host_rss_before < 200 * 1024  # KiB: the host never held the output


def test_a_one_gigabyte_print_with_room_is_truncated(tmp_path: Path) -> None:
    with unsafe_sandbox(tmp_path, sandbox_memory_mb=4096) as box:
        one_shot = box.execute("print('x' * 10**9)", timeout=30)
        assert one_shot.ok, one_shot.traceback
        assert one_shot.truncated
        note = f"\n[output truncated: {10**9 + 1 - 10_000} characters dropped]"
        assert one_shot.stdout == "x" * 10_000 + note
        streamed = box.execute("for _ in range(1000):\n    print('y' * 10**6)", timeout=30)
        assert streamed.stdout.endswith(
            f"[output truncated: {1000 * (10**6 + 1) - 10_000} characters dropped]")
        assert box.execute("'alive'").stdout == "'alive'\n"


def test_submit_with_fields(sandbox: LocalSandbox) -> None:
    fields = ["answer", "confidence"]
    positional = sandbox.execute("SUBMIT('42', 0.9)\nprint('not reached')", submit_fields=fields)
    assert (positional.final, positional.stdout, positional.error_type) == \
        ({"answer": "42", "confidence": 0.9}, "", None)
    keyword = sandbox.execute("SUBMIT(confidence=1, answer='x')", submit_fields=fields)
    assert keyword.final == {"answer": "x", "confidence": 1}
    # A bare `except Exception` in model code cannot swallow a SUBMIT.
    guarded = sandbox.execute("try:\n    SUBMIT('a', 1)\nexcept Exception:\n    print('eaten')",
                              submit_fields=fields)
    assert guarded.final == {"answer": "a", "confidence": 1} and guarded.stdout == ""

    wrong = sandbox.execute("SUBMIT(answer='x', score=1)", submit_fields=fields)
    assert wrong.error_type == "TypeError" and wrong.final is None
    assert wrong.error_message == ("SUBMIT expects answer, confidence; missing ['confidence'], "
                                   "unexpected ['score']")
    assert "driver.py" not in wrong.traceback
    too_many = sandbox.execute("SUBMIT(1, 2, 3)", submit_fields=fields)
    assert too_many.error_message == "SUBMIT takes at most 2 values: answer, confidence"
    mixed = sandbox.execute("SUBMIT(1, confidence=2)", submit_fields=fields)
    assert mixed.error_message == "SUBMIT takes positional or keyword values, not both"
    too_few = sandbox.execute("SUBMIT('only')", submit_fields=fields)
    assert too_few.error_type == "TypeError" and "missing ['confidence']" in too_few.error_message

    free = sandbox.execute("SUBMIT({'any': 'thing'})")
    assert free.final == {"output": {"any": "thing"}}
    free_kw = sandbox.execute("SUBMIT(a=1, b=2)")
    assert free_kw.final == {"a": 1, "b": 2}


def test_timeout_interrupts_keeps_state_and_hides_driver_frames(sandbox: LocalSandbox) -> None:
    sandbox.execute("kept = 'yes'")
    result = sandbox.execute("n = 0\nwhile True:\n    n += 1", timeout=0.5)
    assert (result.timed_out, result.state_lost, result.error_type) == (True, False, "TimeoutError")
    assert "variables are kept" in result.error_message
    assert "KeyboardInterrupt" in result.traceback
    assert "driver.py" not in result.traceback
    after = sandbox.execute("kept, n > 0")
    assert after.stdout == "('yes', True)\n"


def test_a_sandbox_that_exits_is_reported_and_replaced(sandbox: LocalSandbox) -> None:
    sandbox.execute("secret = 1")
    first_pid = sandbox.pid
    died = sandbox.execute("import os\nos._exit(1)")
    assert (died.error_type, died.state_lost, died.timed_out) == ("SandboxDied", True, False)
    assert "its variables are lost" in died.error_message
    assert not sandbox.alive
    fresh = sandbox.execute("'secret' in globals()")
    assert fresh.stdout == "False\n"
    assert sandbox.pid != first_pid
    assert sandbox.alive


def test_a_sandbox_killed_between_calls_is_reported_and_replaced(sandbox: LocalSandbox) -> None:
    sandbox.execute("secret = 1")
    first_pid = sandbox.pid
    os.kill(first_pid, signal.SIGKILL)
    time.sleep(0.2)
    died = sandbox.execute("secret")
    assert (died.error_type, died.state_lost) == ("SandboxDied", True)
    fresh = sandbox.execute("'secret' in globals()")
    assert fresh.stdout == "False\n"
    assert sandbox.pid != first_pid


def test_a_sandbox_killed_during_a_callback_is_reported(sandbox: LocalSandbox) -> None:
    def kill_me() -> str:
        os.kill(sandbox.pid, signal.SIGKILL)
        time.sleep(0.2)
        return "too late"

    died = sandbox.execute("kill_me()", callbacks={"kill_me": kill_me}, timeout=10)
    assert (died.error_type, died.state_lost) == ("SandboxDied", True)
    assert sandbox.execute("40 + 2").stdout == "42\n"


# -- files a cell writes under artifacts/ ----------------------------------------------------
def test_a_result_lists_the_artifacts_its_cell_wrote(tmp_path: Path) -> None:
    from fleet_rlm.sandbox.driver import MAX_ARTIFACTS

    work = tmp_path / "work"
    (work / "artifacts").mkdir(parents=True)
    (work / "artifacts" / "old.txt").write_text("before")
    (work / "outside.txt").write_text("not an artifact")
    with unsafe_sandbox(tmp_path) as box:
        result = box.execute(
            "import os\n"
            "os.makedirs('artifacts/tables', exist_ok=True)\n"
            "open('artifacts/plot.svg', 'w').write('<svg/>')\n"
            "open('artifacts/tables/t.csv', 'w').write('a,b\\n1,2\\n')\n"
            "open('outside.txt', 'w').write('changed, but not under artifacts/')\n"
            "os.symlink('/etc/passwd', 'artifacts/link')\n"
            "os.chdir('/')  # the listing does not follow the cell's working directory\n")
        assert result.ok, result.traceback
        assert sorted(f["path"] for f in result.files) == ["artifacts/plot.svg",
                                                           "artifacts/tables/t.csv"]
        assert {f["path"]: f["size"] for f in result.files}["artifacts/plot.svg"] == 6
        assert box.execute("x = 1").files == []  # nothing written: nothing listed
        many = box.execute(f"for i in range(30): open(f'{work}/artifacts/n{{i}}.md', 'w')")
        assert len(many.files) == MAX_ARTIFACTS


def test_reported_artifacts_outside_artifacts_or_malformed_are_dropped() -> None:
    from fleet_rlm.sandbox.base import reported_files

    assert reported_files([{"path": "artifacts/a.png", "size": 3},
                           {"path": "../etc/passwd", "size": 1},
                           {"path": "artifacts/../../x", "size": 1},
                           {"path": "/abs/artifacts/x", "size": 1},
                           {"path": "artifacts/b", "size": -1},
                           {"path": "artifacts/c", "size": "big"}, "junk"]) == [
        {"path": "artifacts/a.png", "size": 3}]
    assert reported_files("not a list") == [] and reported_files(None) == []


@pytest.mark.parametrize("sample", ["plain ascii ", "latin é ", "bmp € ", "astral 𝄞 ",
                                    "surrogate \ud800 ", "mixed a é € 𝄞 "])
def test_a_large_value_file_reads_back_exactly(tmp_path: Path, sample: str) -> None:
    from fleet_rlm.sandbox.driver import CHUNK, read_text

    # Several chunks, with characters split across their edges (odd lengths, offset starts).
    text = "x" + sample * (3 * CHUNK // len(sample) + 7)
    data = text.encode("utf-8", "surrogatepass")
    (tmp_path / "v").write_bytes(b"".join(value_file([data])))
    got, size = read_text(str(tmp_path / "v"))
    assert size == len(data)
    assert got == text and hash(got) == hash(text) and len(got) == len(text)
    assert got.isascii() == text.isascii() and sys.getsizeof(got) == sys.getsizeof(text)
    assert (got + "é")[-2:] == text[-1] + "é" and got.split(" ")[-2] == text.split(" ")[-2]


@pytest.mark.parametrize("bulk", [
    {"args": ["p" * 3_000_000], "kwargs": {}},
    {"args": ['quote " back \\ nl \n tab \t nul \x00 é € 𝄞 lone \ud800 ' * 200_000, 1, None],
     "kwargs": {"k": ["x" * 2_000_000, {"deep": "y" * 2_000_000}], "n": 1.5}},
    {"final": {"answer": "z" * 2_000_000, "rows": [[1, 2]] * 1000, "set": [3]}},
    {"value": list(range(300_000))},  # large, with no long string: dumped whole
])
def test_a_value_file_holds_the_json_of_its_fields(tmp_path: Path, bulk: dict) -> None:
    from fleet_rlm.sandbox.driver import Worker

    worker = Worker(-1, -1, str(tmp_path / "out"))
    line = worker.frame({"type": "var"}, bulk)
    frame = json.loads(line)
    assert line.endswith(b"\n") and len(line) < 200 and set(frame) == {"type", "file"}
    data = (tmp_path / "out" / frame["file"]).read_bytes()
    assert json.loads(data) == json.loads(json.dumps(bulk))
    inline = Worker(-1, -1, None).frame({"type": "var"}, bulk)  # no outbox: one JSON line
    assert json.loads(inline) == {"type": "var", **json.loads(json.dumps(bulk))}
