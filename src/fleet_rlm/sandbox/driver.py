"""REPL driver that runs inside a sandbox. Standard library only.

Two processes. The supervisor, the process the host starts, holds the host's channel: JSON
lines, requests on stdin, replies on stdout. It forks the worker, which runs model code and holds
only sockets to the supervisor: the host's pipes are closed in it, and the supervisor is not
dumpable (and, under bubblewrap, the namespace's pid 1, which its processes cannot signal), so
no code in the sandbox can reach its descriptors or memory. The worker's frames are treated as
hostile: at most MAX_FRAME bytes, of the kind the request in flight expects (read from the
frame's head, FRAME_HEAD; the host parses the whole frame and refuses one it cannot read),
exactly one reply per request, which the supervisor stamps with the request's id. Anything else
is a protocol violation: the supervisor says so ({"type": "violation"}) and exits, taking the
sandbox down. Of the host's requests the supervisor reads only the op and id the host writes
first (REQUEST_HEAD). Model code can still end its own cell early with a reply of its making;
that is no more than returning one. The supervisor is the sandbox's subreaper, and when a cell
ends it kills every process the cell left (orphans included); a cell that leaves threads running
is shed of them by forking the worker (a fork copies only the calling thread, and every
variable) and ending the old process, which the supervisor checks from outside. Model code's own
stdout/stderr are captured per execution.

Requests (host -> driver), each with an ``id`` unless noted:
  {"op": "execute", "code": str, "tools": [names], "submit_fields": [names] | null,
   "max_output": int, "restore": [names], "cell": str?, "sharing": [names]?}
                        (cell: its name in tracebacks; sharing: the tools a slice of a shared
                        input goes to by reference, see `references`)
  {"op": "set_var", "name": str, "value": json, "tagged": bool}     inline value
  {"op": "set_var", "name": str, "path": str, "format": "text" | "json", "tagged": bool,
   "start": int?, "stop": int?, "share": bool?, "ascii": bool?}
                        value from a file the host wrote (TEXT_AT bytes of room, the value,
                        one byte more: bytes start to stop, the value by default); with "share",
                        a text the host lets this sandbox hand on by reference (see
                        `references`); with "ascii", an ASCII text, laid as a str over the
                        file's pages (see `mapped_ascii`)
  {"op": "get_var", "name": str, "restore": [names]}
  {"op": "callback_result", "call_id": int, "value": json, "tagged": bool}   (no id)
  {"op": "callback_error", "call_id": int, "error": str}            (no id)
  {"op": "interrupt"}                                               (no id)
  {"op": "shutdown"}                                                (no id)
Replies (driver -> host):
  {"type": "ready", "python": str, "pid": int}
  {"type": "callback", "call_id": int, "name": str, "args": [...], "kwargs": {...},
   "refs": [[where, name, start, stop], ...]?}  an argument that is a shared input, or a slice
                        of one: null at `where` (["args", i, j?] or ["kwargs", key, j?]), and
                        the input's name with the slice's byte range in its place
  {"type": "result", "id": int, "stdout": str, "stderr": str, "error": {...} | null,
   "final": json | null, "truncated": bool, "duration_s": float, "names": [str],
   "files": [{"path": str, "size": int}]}   files under artifacts/ the cell wrote (ARTIFACTS)
  {"type": "var", "id": int, "value": json}  |  {"type": "error", "id": int, "error": {...}}
  {"type": "protocol_error", "error": str}     a request line the driver could not read
  {"type": "violation", "error": str}          the worker broke the protocol; the driver exits

Large values leave as files where the host gave the driver an outbox (`--outbox NAME`: a
directory under the working directory, which the host reads through a descriptor of its own;
see sandbox/bulk.py). A callback's args and kwargs, a result's final or a var's value whose JSON
is longer than FILE_AT go, as one JSON object of those fields, into a new file there, and the
frame carries {"file": name} in their place: the frame stays small, the file is the bulk. A name
is digits, "x", digits, ".json" (`value_file_name`), never a path: the host refuses any other
name, and a file in a frame of a kind that carries none. Without an outbox (Daytona) they go
inline, at most MAX_FRAME bytes a frame.

Values from the host keep their Python type: a "tagged" value is JSON in which an object with
the key TAG stands for a value JSON cannot hold (see `revive`): a tuple, set, frozenset, bytes,
date, dict with keys that are not strings, ..., or a record, the data of a pydantic model or
dataclass, which arrives as a dict subclass named after its type (`Record`). Every input the
host set is kept as it arrived; "restore" binds those names to it again before a request, so
each cell sees the inputs as set, whatever earlier cells did to them. Values to the host
(SUBMIT, callback arguments, get_var) go as plain JSON data only (see `plain`).
"""

from __future__ import annotations

import ast
import base64
import codecs
import collections
import contextlib
import datetime
import decimal
import errno
import io
import itertools
import json
import keyword
import linecache
import mmap
import opcode
import os
import queue
import re
import resource
import select
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import types
import uuid
import warnings
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CELL = "<cell-{}>"
MAX_NAMES = 200  # variable names a result lists
# What a cell wrote under artifacts/ of the directory the driver started in (a session's
# workspace, /work) is listed with its result: at most this many files, found among at most
# SCAN entries, regular files only (no links), the newest ones in the order written.
ARTIFACTS, MAX_ARTIFACTS, SCAN = "artifacts", 20, 5000
HOME = os.getcwd()
ARTIFACTS_ROOT = os.path.join(HOME, ARTIFACTS)
MAX_FRAME = 32 * 1024 * 1024  # bytes in one line either way between worker, supervisor and host
FILE_AT = 1 << 20  # characters of JSON above which a value leaves through the outbox
# Which fields of a frame may come from a value file, by frame type.
BULK_FIELDS = {"callback": ("args", "kwargs"), "result": ("final",), "var": ("value",)}
CHUNK = 1 << 20
# Where a value starts in a value file the host writes: the bytes before it, and the one after
# it, are room for the header and closing NUL of a str laid over the file's pages (mapped_ascii).
TEXT_AT = 4096
# A text argument at least this long that is a shared input, or a slice of one, goes to the host
# as a reference to it (see Worker.references); a shorter one crosses as it is.
SHARE_MIN = 64 * 1024
READ = 1 << 18  # bytes taken from a pipe or socket per read (a pipe holds 64 KiB by default)
# What the worker may send in reply to each kind of request.
REPLIES = {"execute": ("result", "error"), "set_var": ("var", "error"),
           "get_var": ("var", "error")}
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36
PIN_S = 0.005  # how long a request keeps the sandbox (and the host's thread) on one CPU
# The last pid handed out in this pid namespace: threads take pids too, so while it is unchanged
# nothing was started.
LAST_PID = "/proc/sys/kernel/ns_last_pid"


class FrameTooLarge(ValueError):
    def __init__(self, size: int) -> None:
        super().__init__(f"a line of more than {size} bytes (the limit is {MAX_FRAME})")
        self.size = size


class Lines:
    """Bytes in, complete lines out: each byte is scanned once and moved at most once
    (amortised), and a line longer than `limit` raises FrameTooLarge before it is all held."""

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self.buffer, self.start, self.scanned, self.limit = bytearray(), 0, 0, limit
        self.scratch: memoryview | None = None

    def fill(self, fd: int) -> int:
        """Read what `fd` has (up to READ bytes) into the buffer; 0 at end of file. The read
        lands in one buffer kept for the reader's life: a fresh READ-sized bytes per read would
        cost a mapping and an unmapping of it per frame."""
        if self.scratch is None:
            self.scratch = memoryview(bytearray(READ))
        count = os.readv(fd, [self.scratch])
        self.buffer += self.scratch[:count]
        return count

    def next(self) -> bytes | None:
        end = self.buffer.find(b"\n", self.scanned)
        if end < 0:
            self.scanned = len(self.buffer)
            if self.scanned - self.start > self.limit:
                raise FrameTooLarge(self.scanned - self.start)
            return None
        if end - self.start > self.limit:
            raise FrameTooLarge(end - self.start)
        line = bytes(self.buffer[self.start:end])
        self.start = self.scanned = end + 1
        if self.start == len(self.buffer):
            self.buffer.clear()
            self.start = self.scanned = 0
        elif self.start > CHUNK and 2 * self.start > len(self.buffer):
            del self.buffer[:self.start]
            self.scanned -= self.start
            self.start = 0
        return line


# Made once: json.dumps with arguments builds an encoder per call, and json.loads inspects
# and decodes its argument first, costs paid on every frame of every request.
_ENCODERS = (json.JSONEncoder(ensure_ascii=False, default=repr).encode,
             json.JSONEncoder(ensure_ascii=False).encode)
_DECODE = json.JSONDecoder().raw_decode


def encode(message: dict, strict: bool = False) -> bytes:
    """One line; a value JSON cannot hold goes as its repr unless `strict`. A lone surrogate
    goes out as a JSON \\u escape (which decodes back to it)."""
    return (_ENCODERS[strict](message) + "\n").encode("utf-8", "backslashreplace")


def decode(line: bytes) -> Any:
    """The JSON value that is the whole of `line` (ValueError otherwise)."""
    text = line.decode("utf-8", "surrogatepass")
    value, end = _DECODE(text)
    if end != len(text):
        raise ValueError(f"extra data after the JSON value at {end}")
    return value


# What the supervisor reads of a frame: the host's requests start with their op and id (the
# host is trusted; the rest goes to the worker unread), the worker's frames with their type
# (the host parses and checks the whole frame, and any frame it cannot read is a violation).
REQUEST_HEAD = re.compile(rb'\{"op": "([a-z_]+)"(?:, "id": (\d+)[,}])?')
UNNUMBERED = {b"interrupt", b"shutdown", b"callback_result", b"callback_error"}
FRAME_HEAD = re.compile(rb'\{"type": "([a-z_]+)"[,}]')


def value_file_name(name: object) -> bool:
    """Whether `name` is what the worker calls a value file: digits "x" digits ".json"."""
    return (isinstance(name, str) and len(name) <= 48 and name.endswith(".json")
            and name.isascii() and name[:-5].replace("x", "", 1).isdigit())


SHALLOW = 64  # items of a list or dict looked into for long strings (the rest are dumped whole)


def _long_text(value, depth: int) -> bool:
    """Whether `value` holds a string longer than CHUNK within its first levels."""
    if type(value) is str:
        return len(value) > CHUNK
    if depth < 3 and type(value) in (list, dict) and len(value) <= SHALLOW:
        items = value.values() if type(value) is dict else value
        return any(_long_text(item, depth + 1) for item in items)
    return False


def _json_parts(value, default, parts: list, depth: int) -> None:
    """`value` as JSON text in parts, as json.dumps would write it (ensure_ascii off), but each
    string longer than CHUNK in its first levels left as a 1-tuple of itself, to be escaped a
    slice at a time (JSON escapes are per character, so slices escape alike)."""
    kind = type(value)
    if kind is str and len(value) > CHUNK:
        parts.append((value,))
    elif depth < 3 and kind is list and 0 < len(value) <= SHALLOW:
        for index, item in enumerate(value):
            parts.append(", " if index else "[")
            _json_parts(item, default, parts, depth + 1)
        parts.append("]")
    elif (depth < 3 and kind is dict and 0 < len(value) <= SHALLOW
          and all(type(key) is str for key in value)):
        for index, (key, item) in enumerate(value.items()):
            parts.append((", " if index else "{") + json.dumps(key, ensure_ascii=False) + ": ")
            _json_parts(item, default, parts, depth + 1)
        parts.append("}")
    else:
        parts.append(json.dumps(value, ensure_ascii=False, default=default))


# -- cells -------------------------------------------------------------------------------------
SHOWN = "__shown__"  # the name a cell's last expression is kept under while it runs
_OPS = opcode.opmap
_POP_TOP, _STORE_NAME, _LOAD_CONST, _RESUME = (_OPS["POP_TOP"], _OPS["STORE_NAME"],
                                              _OPS["LOAD_CONST"], _OPS.get("RESUME"))
_RETURNS = (_OPS["RETURN_VALUE"], _OPS.get("RETURN_CONST"))
_IN_EXPRESSIONS = {"not", "lambda", "await", "None", "True", "False", "yield"}  # keywords
_ONLY_COMMENTS = re.compile(r"(?:[ \t\f;]*(?:#[^\n]*)?\n?)*")
_FIRST_WORD = re.compile(r"[^\W\d]\w*")


def compile_cell(code: str, filename: str) -> tuple[types.CodeType, bool]:
    """The cell's code, and whether it keeps the value of its last statement, an expression,
    under SHOWN. Compiled from the text, and the last statement found in the bytecode: a trip
    through Python's AST (parse, then compile the tree) costs more than most cells. Where the
    bytecode does not settle it (see `_last_statement`), the AST does."""
    compiled = compile(code, filename, "exec")
    last = _last_statement(code, compiled)
    if last is None:
        return _compile_with_ast(code, filename)
    if last is False:
        return compiled, False
    if len(compiled.co_names) > 255:  # the name's index is STORE_NAME's one-byte argument
        return _compile_with_ast(code, filename)
    ops = bytearray(compiled.co_code)
    ops[2 * last:2 * last + 2] = bytes((_STORE_NAME, len(compiled.co_names)))
    return compiled.replace(co_code=bytes(ops), co_names=(*compiled.co_names, SHOWN)), True


def _compile_with_ast(code: str, filename: str) -> tuple[types.CodeType, bool]:
    tree = ast.parse(code, filename=filename, mode="exec")
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return compile(tree, filename, "exec"), False
    last = tree.body[-1]
    keep = ast.Assign(targets=[ast.Name(SHOWN, ast.Store())], value=last.value)
    tree.body[-1] = ast.copy_location(keep, last)
    ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec"), True


def _last_statement(code: str, compiled: types.CodeType) -> int | bool | None:
    """Read from the bytecode: the index of the instruction that drops the value of the cell's
    last statement when that is an expression, False when it is not, None when the bytecode
    cannot tell (the AST decides then).

    The module ends with an implicit return placed at the last node the compiler visited, and
    the instruction before it is the last statement's own. Where the two end apart, a statement
    that left no code (a constant, `pass`) came last; so too where the text goes on past the
    return's line. A last line that is a comment, or holds a `;`, is left to the AST. An
    expression statement's last instruction is the POP_TOP of its value, placed at its span:
    top-level when that starts in column 0, and not a `with` (which ends in a POP_TOP too)
    when it does not start with a keyword."""
    ops = compiled.co_code
    count = len(ops) // 2
    if count >= 1 and ops[-2] == _RETURNS[1]:
        last = count - 2
    elif count >= 2 and ops[-2] == _RETURNS[0] and ops[-4] == _LOAD_CONST:
        last = count - 3
    else:
        return None
    if last < 0 or ops[2 * last] == _RESUME or "\r" in code:
        return None
    positions = collections.deque(compiled.co_positions(), maxlen=count - last)
    line, end_line, column, end_column = positions[0]
    if end_line is None or positions[-1][1:4:2] != (end_line, end_column):
        return None
    text = code.rstrip()
    tail = text[text.rfind("\n") + 1:]
    if not tail or tail.lstrip().startswith("#") or ";" in tail \
            or text.count("\n") + 1 > end_line:
        return None
    op, argument = ops[2 * last], ops[2 * last + 1]
    if op == _STORE_NAME and compiled.co_names[argument] == "__doc__":
        return None  # a cell that is one string: the string is shown
    if op != _POP_TOP:
        return False
    if column != 0 or line is None or end_column is None:
        return None
    lines = code.split("\n")
    rest = lines[end_line - 1].encode()[end_column:].decode("utf-8", "replace")
    word = _FIRST_WORD.match(lines[line - 1])
    if not _ONLY_COMMENTS.fullmatch(rest) or word is not None and (
            keyword.issoftkeyword(word[0])
            or keyword.iskeyword(word[0]) and word[0] not in _IN_EXPRESSIONS):
        return None
    return last


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# -- values ------------------------------------------------------------------------------------
TAG = "$t"  # the key that marks a tagged object in a value from the host


class Record(dict):
    """The data of a host object the sandbox cannot hold (a pydantic model, a dataclass): a dict
    of its fields, which can also be read as attributes. Its class is named after the host's
    type (`host_type` is the type's full name)."""

    __slots__ = ()
    host_type = ""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None


RECORD_TYPES: dict[str, type] = {}  # the classes made for records and named tuples, by name


def record_type(full_name: str) -> type:
    known = RECORD_TYPES.get(full_name)
    if known is None:
        module, _, name = full_name.rpartition(".")
        name = name if name.isidentifier() else "Record"
        known = RECORD_TYPES[full_name] = type(name, (Record,), {
            "__slots__": (), "__module__": module or "host", "__qualname__": name,
            "host_type": full_name,
            "__doc__": f"The data of a {full_name} from the host: a dict of its fields."})
    return known


def _revive_object(obj: dict) -> Any:
    """One object of a tagged value (its members already revived), as the value it stands for."""
    kind = obj.get(TAG)
    if kind is None:
        return obj
    value: Any = obj.get("v")
    if kind == "tuple":
        return tuple(value)
    if kind == "set":
        return set(value)
    if kind == "frozenset":
        return frozenset(value)
    if kind == "dict":
        return {key: item for key, item in value}
    if kind == "record":
        return record_type(str(obj.get("type", "Record")))(value)
    if kind == "namedtuple":
        name = obj.get("name", "NamedTuple")
        made: Any = RECORD_TYPES.get(f"namedtuple:{name}:{','.join(obj['fields'])}")
        if made is None:
            import collections

            make_tuple: Any = collections.namedtuple  # its name is the host's, not a literal
            made = make_tuple(name if name.isidentifier() else "NamedTuple", obj["fields"],
                              rename=True)
            RECORD_TYPES[f"namedtuple:{name}:{','.join(obj['fields'])}"] = made
        return made(*value)
    if kind in ("bytes", "bytearray"):
        data = base64.b64decode(value)
        return data if kind == "bytes" else bytearray(data)
    if kind == "datetime":
        return datetime.datetime.fromisoformat(value)
    if kind == "date":
        return datetime.date.fromisoformat(value)
    if kind == "time":
        return datetime.time.fromisoformat(value)
    if kind == "timedelta":
        return datetime.timedelta(*value)
    if kind == "file":  # a long string of a value from the host, in a file the host wrote
        return read_text(value, ascii_text=obj.get("ascii") is True)[0]
    if kind == "decimal":
        return decimal.Decimal(value)
    if kind == "uuid":
        return uuid.UUID(value)
    if kind == "complex":
        return complex(*value)
    raise ValueError(f"unknown tagged value {kind!r}")


def revive(value):
    """A tagged value already parsed from JSON, as the Python value it stands for."""
    if isinstance(value, list):
        return [revive(item) for item in value]
    if isinstance(value, dict):
        return _revive_object({key: revive(item) for key, item in value.items()})
    return value


def load_value(text: str, tagged: bool):
    return json.loads(text, object_hook=_revive_object) if tagged else json.loads(text)


def read_text(path: str, start: int | None = None, stop: int | None = None,
              ascii_text: bool = False) -> tuple[str, int]:
    """Bytes `start` to `stop` of a value file the host wrote (UTF-8; a lone surrogate passes
    as itself) as text, and how many bytes it took. Every value file has one layout: TEXT_AT
    bytes of room (a hole), the value, one byte more; by default the whole value is read.

    An ASCII text the host marked so is laid over the file's own pages (`mapped_ascii`); any
    other large one is decoded into a string made at its final size (`_read_in_place`): a
    large text is never held twice, as bytes and as the string."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        start = TEXT_AT if start is None else start
        stop = size - 1 if stop is None else stop
        if not TEXT_AT <= start <= stop < size:
            raise ValueError(f"bytes {start}:{stop} are outside the value in {path} "
                             f"({size} bytes)")
        layout = str_layout() if ascii_text and start < stop else None
        if layout is not None and start >= layout[1]:
            with contextlib.suppress(OSError, ValueError, BufferError):
                return mapped_ascii(handle.fileno(), start, stop, layout), stop - start
        if stop - start > CHUNK and sys.implementation.name == "cpython":
            return _read_in_place(handle, start, stop), stop - start
        return os.pread(handle.fileno(), stop - start, start).decode(
            "utf-8", "surrogatepass"), stop - start


# A CPython string holds its characters after a header, 1, 2 or 4 bytes each, the narrowest
# that fits its largest one (and 1 byte under a shorter header for pure ASCII).
_ASCII_HEADER = sys.getsizeof("a") - 2
_HEADER = sys.getsizeof("\xe9") - 2
_MAX_CHAR = {0: 0x7F, 1: 0xFF, 2: 0xFFFF, 4: 0x10FFFF}  # by width, 0 for ASCII
_AS_BYTES = {0: "ascii", 1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}


def _pieces(handle, start: int, stop: int) -> Iterator[str]:
    """Bytes `start` to `stop` of the file decoded READ bytes at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
    for at in range(start, stop, READ):
        yield decoder.decode(os.pread(handle.fileno(), min(READ, stop - at), at))
    yield decoder.decode(b"", final=True)


def _read_in_place(handle, start: int, stop: int) -> str:
    """Two passes over the file: the first finds the string's length and width, the second
    decodes into a string of that size made empty (PyUnicode_New), as CPython's own decoder
    would, a piece at a time."""
    import ctypes

    length, width = 0, 0
    for piece in _pieces(handle, start, stop):
        length += len(piece)
        if not piece.isascii():
            width = max(width, (sys.getsizeof(piece) - _HEADER) // (len(piece) + 1))
    new = ctypes.pythonapi.PyUnicode_New
    new.argtypes, new.restype = (ctypes.c_ssize_t, ctypes.c_uint32), ctypes.py_object
    text = new(length, _MAX_CHAR[width])
    into = id(text) + (_HEADER if width else _ASCII_HEADER)
    done = 0
    for piece in _pieces(handle, start, stop):
        if done + len(piece) > length:
            raise ValueError("the value file changed while it was read")
        data = piece.encode(_AS_BYTES[width], "surrogatepass")
        ctypes.memmove(into + done * max(width, 1), data, len(data))
        done += len(piece)
    if done != length:
        raise ValueError("the value file changed while it was read")
    return text


# Values no cell can change in place: a copy of an input shares them.
ATOMS = frozenset({str, bytes, int, float, bool, complex, type(None), frozenset,
                   datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
                   decimal.Decimal, uuid.UUID})


def fresh(value):
    """A copy of an input as the host set it: new containers (lists, dicts, sets, records,
    bytearrays, tuples holding any of them), the same atoms. Linear in the containers and their
    items; nothing is parsed, and no string is copied."""
    kind = type(value)
    if kind in ATOMS:
        return value
    if kind is list:
        if all(type(item) in ATOMS for item in value):
            return value.copy()
        return [fresh(item) for item in value]
    if kind is dict or isinstance(value, Record):
        return kind({key: fresh(item) for key, item in value.items()})
    if kind is set:
        return value.copy()  # its items are hashable: atoms and tuples of them
    if kind is bytearray:
        return bytearray(value)
    if isinstance(value, tuple):
        items = [fresh(item) for item in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return kind(*items) if hasattr(value, "_fields") else kind(items)
    return value


class NotPlain(TypeError):
    pass


def artifact_files() -> dict[str, tuple[int, int, int]]:
    """Each regular file under HOME/artifacts (at most SCAN entries seen): its path relative to
    HOME -> (mtime in ns, size, inode)."""
    found: dict[str, tuple[int, int, int]] = {}
    root = ARTIFACTS_ROOT
    if not os.access(root, os.F_OK):  # most cells: one system call, no exception raised
        return found
    pending, seen = [root], 0
    while pending and seen < SCAN:
        with contextlib.suppress(OSError), os.scandir(pending.pop()) as entries:
            for entry in entries:
                seen += 1
                if seen > SCAN:
                    break
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        found[os.path.relpath(entry.path, HOME)] = (
                            info.st_mtime_ns, info.st_size, info.st_ino)
    return found


def written_artifacts(before: dict[str, tuple[int, int, int]]) -> list[dict]:
    """The files under HOME/artifacts that are new or changed since `before` (artifact_files()
    at the cell's start), newest last. Compared, not dated: file times come from a clock
    coarser than the cell's, so a file written at once could look older than the cell."""
    now = artifact_files()
    if not now:
        return []
    changed = [(stamp, path, size) for path, (stamp, size, inode) in now.items()
               if before.get(path) != (stamp, size, inode)]
    newest = sorted(changed, reverse=True)[:MAX_ARTIFACTS]
    return [{"path": path, "size": size} for _, path, size in reversed(newest)]


# The mappings that str objects made by mapped_ascii live in: never closed.
MAPPINGS: list = []
_LAYOUT: list = []


def str_layout() -> tuple[str, int] | None:
    """A compact ASCII str to copy the header of, and the header's size, when this CPython lays
    strs out as mapped_ascii expects (checked on the copy: its length, hash and text where
    they should be); None otherwise."""
    import ctypes  # here, not at start-up: only a shared text needs it
    import sysconfig

    if not _LAYOUT:
        _LAYOUT.append(None)
        if sys.implementation.name == "cpython" and not sysconfig.get_config_var(
                "Py_GIL_DISABLED"):
            probe = "".join(["fleet-", "probe"])  # made at run time: not interned
            at, digest, word = id(probe), hash(probe), ctypes.sizeof(ctypes.c_ssize_t)
            header = sys.getsizeof(probe) - len(probe) - 1
            if (header >= 4 * word and probe.isascii()
                    and ctypes.c_ssize_t.from_address(at + 2 * word).value == len(probe)
                    and ctypes.c_ssize_t.from_address(at + 3 * word).value == digest
                    and ctypes.string_at(at + header, len(probe) + 1) == b"fleet-probe\0"):
                _LAYOUT[0] = (probe, header)
    return _LAYOUT[0]


def mapped_ascii(fd: int, start: int, stop: int, layout: tuple[str, int]) -> str:
    """Bytes `start` to `stop` of an ASCII file as a str whose characters are the file's own
    pages, shared with every process that maps them (other sandboxes given the same file; the
    host's page cache, not this sandbox's memory). The str's header goes in the bytes before
    them and its closing NUL in the byte after, in a private mapping: those pages, and only
    those, become this process's own copies. The file is never written. The str is never
    freed (its count of references starts far above any it will get): its memory is the
    mapping's, which stays for the driver's life."""
    import ctypes

    probe, header = layout
    word = ctypes.sizeof(ctypes.c_ssize_t)
    base = (start - header) // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
    mapped = mmap.mmap(fd, stop + 1 - base, flags=mmap.MAP_PRIVATE,
                       prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=base)
    at = ctypes.addressof(ctypes.c_char.from_buffer(mapped)) + start - base - header
    ctypes.memmove(at, id(probe), header)  # the type, and compact ASCII's state bits
    ctypes.c_ssize_t.from_address(at).value = 1 << 29
    ctypes.c_ssize_t.from_address(at + 2 * word).value = stop - start
    ctypes.c_ssize_t.from_address(at + 3 * word).value = -1  # its hash, not yet computed
    mapped[stop - base] = 0
    MAPPINGS.append(mapped)
    return ctypes.cast(at, ctypes.py_object).value


def plain(value, strict: bool = True):
    """`value` as plain JSON data, the only form in which values go to the host: tuples and
    sets become lists (sets sorted when they can be), dict keys strings (as json.dumps writes
    them), records plain dicts, bytes text (UTF-8), dates ISO 8601 text, decimals and UUIDs
    text. Anything else raises NotPlain, or with `strict=False` becomes its repr."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {_plain_key(key, strict): plain(item, strict) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item, strict) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [plain(item, strict) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if strict:
        raise NotPlain(f"a {type(value).__name__} is not plain data")
    return repr(value)


def _plain_key(key, strict: bool) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    converted = plain(key, strict)
    return converted if isinstance(converted, str) else json.dumps(converted)


class Submitted(BaseException):
    """Raised by SUBMIT(); BaseException so a bare `except Exception` in model code can't eat it."""

    def __init__(self, value: dict) -> None:
        self.value = value


class CappedText(io.TextIOBase):
    """A stdout/stderr stand-in that keeps the first `cap` characters and counts the rest.
    One per stream for the worker's life, emptied before each cell (`reset`): a new IO object
    per cell costs more than many a cell."""

    def __init__(self, cap: int) -> None:
        self.buffer = _BytesInto(self)
        self.reset(cap)

    def reset(self, cap: int) -> None:
        self.cap, self.kept, self.dropped = cap, 0, 0
        self.parts: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.cap - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def value(self) -> str:
        return "".join(self.parts)


class _BytesInto(io.RawIOBase):
    """`sys.stdout.buffer`: bytes decoded leniently so non-UTF-8 output can't break the protocol."""

    def __init__(self, text: CappedText) -> None:
        self.text = text

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.text.write(bytes(data).decode("utf-8", errors="replace"))
        return len(data)


class Worker:
    """Runs the cells, in its own process, speaking to the supervisor over two sockets:
    `channel` carries requests in (read by the main thread itself, between cells) and every
    frame out; `results` carries the host's answers to callbacks (read by a thread, since any
    thread of a cell may be waiting for one)."""

    def __init__(self, channel: int, results: int, outbox: str | None = None) -> None:
        self.channel, self.results = channel, results
        self.outbox = outbox  # the directory large values leave through, if the host reads one
        self.files = itertools.count(1)
        self.requests = Lines(limit=1 << 62)  # the supervisor is trusted
        self.namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
        self.pending: dict[int, queue.Queue] = {}
        self.pending_lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.call_ids = itertools.count(1)
        self.cells = itertools.count(1)
        self.executing = False
        # The inputs the host set, as they arrived; each cell gets a fresh copy (see restore).
        self.inputs: dict[str, Any] = {}
        self.stdout, self.stderr = CappedText(0), CappedText(0)
        self.names_seen: tuple[tuple, list[str]] | None = None  # (what own_names saw, its answer)
        self.submits: dict[tuple | None, Callable] = {}  # SUBMIT for each list of fields
        # The text inputs the host let this sandbox hand on by reference: (text, its bytes),
        # and the tools their slices go to by reference (a slice is searched for: see
        # `reference`); every tool gets an input itself by reference.
        self.shared: dict[str, tuple[str, int]] = {}
        self.sharing: set = set()
        self.tools: dict[str, Callable] = {}  # the function that calls each host tool

    def frame(self, head: dict, bulk: dict, strict: bool = False) -> bytes:
        """The line of frame `head` with the fields `bulk` (not empty): inline, or when their
        JSON is longer than FILE_AT and there is an outbox, in a value file the frame names."""
        if self.outbox is None:
            return encode({**head, **bulk}, strict)
        default = None if strict else repr
        if _long_text(bulk, 0):
            parts: list = []
            _json_parts(bulk, default, parts, 0)
            return encode({**head, "file": self.write_file(parts)})
        data = encode({**head, **bulk}, strict)  # the common case: one small line
        if len(data) > FILE_AT:  # large, but of many small parts: dumped once more, to a file
            text = json.dumps(bulk, ensure_ascii=False, default=default)
            return encode({**head, "file": self.write_file([text])})
        return data

    def write_file(self, parts: list) -> str:
        """JSON text in parts (a long string as a 1-tuple of itself, escaped here) in a new file
        of the outbox, a slice at a time: a large value is never copied whole; its name."""
        assert self.outbox is not None
        os.makedirs(self.outbox, mode=0o700, exist_ok=True)
        name = f"{os.getpid()}x{next(self.files)}.json"
        path = os.path.join(self.outbox, name)
        try:
            self._write_parts(path, parts)
        except BaseException:  # a full workspace, say: no half file is left to fill it
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        return name

    @staticmethod
    def _write_parts(path: str, parts: list) -> None:
        with open(path, "xb") as handle:
            for part in parts:
                text, escape = (part[0], True) if type(part) is tuple else (part, False)
                if escape:
                    handle.write(b'"')
                for start in range(0, len(text), CHUNK):
                    piece = text[start:start + CHUNK]
                    if escape:
                        piece = json.encoder.encode_basestring(piece)[1:-1]
                    handle.write(piece.encode("utf-8", "backslashreplace"))
                if escape:
                    handle.write(b'"')

    def send(self, data: bytes) -> None:
        if len(data) > MAX_FRAME:
            raise FrameTooLarge(len(data))
        with self.send_lock:
            write_all(self.channel, data)

    # -- reading ---------------------------------------------------------------------------
    def next_request(self) -> dict:
        while (line := self.requests.next()) is None:
            if not self.requests.fill(self.channel):
                return {"op": "shutdown"}
        return decode(line)

    def read_results(self) -> None:
        lines = Lines(limit=1 << 62)
        while lines.fill(self.results):
            while (line := lines.next()) is not None:
                message = decode(line)
                if message.get("tagged"):
                    try:
                        message["value"] = revive(message.get("value"))
                    except (TypeError, ValueError, KeyError) as exc:
                        message = {"op": "callback_error", "call_id": message.get("call_id"),
                                   "error": f"the host's result could not be read: {exc}"}
                with self.pending_lock:
                    waiter = self.pending.get(message.get("call_id"))
                if waiter is not None:
                    waiter.put(message)

    # -- host callbacks --------------------------------------------------------------------
    def call_host(self, name: str, args: tuple, kwargs: dict):
        call_id = next(self.call_ids)
        waiter: queue.Queue = queue.Queue(maxsize=1)
        with self.pending_lock:
            self.pending[call_id] = waiter
        try:
            try:
                sent, kwargs, refs = self.references(list(args), dict(kwargs),
                                                     name in self.sharing)
                head: dict = {"type": "callback", "call_id": call_id, "name": name}
                if refs:
                    head["refs"] = refs
                self.send(self.frame(head, {"args": plain(sent), "kwargs": plain(kwargs)},
                                     strict=True))
            except (TypeError, ValueError, RecursionError) as exc:
                most = "" if self.outbox else f" of at most {MAX_FRAME} bytes"
                raise TypeError(f"arguments to {name}() must be plain data (JSON, sets, tuples, "
                                f"bytes, dates){most}: {exc}") from None
            reply = waiter.get()
        finally:
            with self.pending_lock:
                self.pending.pop(call_id, None)
        if reply["op"] == "callback_error":
            raise RuntimeError(f"{name}() failed: {reply.get('error')}")
        return reply.get("value")

    def references(self, args: list, kwargs: dict,
                   slices: bool) -> tuple[list, dict, list]:
        """The arguments with each shared input, or with `slices` each slice of one too,
        replaced by a placeholder (null), and the references the host reads in their place.
        Arguments and the items of list or tuple arguments are looked at."""
        refs: list = []
        if not self.shared:
            return args, kwargs, refs

        def visit(container, key, where: list, nested: bool) -> None:
            value = container[key]
            if isinstance(value, str):
                ref = self.reference(value, slices)
                if ref is not None:
                    container[key] = None
                    refs.append([where, *ref])
            elif not nested and isinstance(value, (list, tuple)):
                container[key] = items = list(value)
                for index in range(len(items)):
                    visit(items, index, [*where, index], True)

        for index in range(len(args)):
            visit(args, index, ["args", index], False)
        for key in list(kwargs):
            visit(kwargs, key, ["kwargs", key], False)
        return args, kwargs, refs

    def reference(self, value: str, slices: bool) -> list | None:
        """[name, start, stop] of a shared input that is `value`, or with `slices` that holds
        it (bytes start to stop of it), or None. A slice is found by its text, so any copy of
        it will do; the search costs a pass over the input, so it is made only for the tools
        that hand a text to another sandbox."""
        for name, (text, size) in self.shared.items():
            if value is text:
                return [name, 0, size]
            if not slices or len(value) < SHARE_MIN or len(value) > len(text):
                continue
            at = text.find(value)
            if at < 0:
                continue
            if text.isascii():
                return [name, at, at + len(value)]
            start = len(text[:at].encode("utf-8"))
            return [name, start, start + len(value.encode("utf-8"))]
        return None

    def host_function(self, name: str):
        def call(*args, **kwargs):
            return self.call_host(name, args, kwargs)

        call.__name__ = call.__qualname__ = name
        return call

    # -- variables -------------------------------------------------------------------------
    def set_var(self, message: dict) -> None:
        name = message["name"]
        if not name.isidentifier():
            raise ValueError(f"not a valid variable name: {name!r}")
        tagged = bool(message.get("tagged"))
        size = None
        if "path" in message:
            text, size = read_text(message["path"], message.get("start"), message.get("stop"),
                                   bool(message.get("ascii")))
            value = text if message.get("format") == "text" else load_value(text, tagged)
            del text
        elif tagged:
            value = revive(message["value"])
        else:
            value = message["value"]
        self.inputs[name] = value
        self.namespace[name] = fresh(value)
        self.shared.pop(name, None)
        if message.get("share") and size is not None and type(value) is str:
            self.shared[name] = (value, size)

    def restore(self, names: list[str]) -> None:
        """Bind each input to its value as the host set it: a fresh copy of its containers,
        sharing what no cell can change in place (its strings, numbers, ...), so an unchanged
        input costs no parse, and a large text nothing."""
        for name in names:
            if name not in self.inputs:
                raise NameError(f"the host asked to restore {name!r}, which it never set")
            self.namespace[name] = fresh(self.inputs[name])

    def get_var(self, message: dict):
        self.restore(message.get("restore") or [])
        name = message["name"]
        if name not in self.namespace:
            raise NameError(f"name {name!r} is not defined")
        value = self.namespace[name]
        try:
            return plain(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(
                f"{name} holds a {type(value).__name__}, not JSON-serialisable: {exc}") from None

    # -- execution -------------------------------------------------------------------------
    def execute(self, message: dict) -> dict:
        cap = int(message.get("max_output", 100_000))
        try:  # children the last cell left, now killed
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        self.restore(message.get("restore") or [])
        for name in message.get("tools", []):
            tool = self.tools.get(name)
            if tool is None:
                tool = self.tools[name] = self.host_function(name)
            self.namespace[name] = tool
        self.sharing = set(message.get("sharing") or [])
        fields = message.get("submit_fields")
        key = None if fields is None else tuple(fields)
        submit = self.submits.get(key)
        if submit is None:
            submit = self.submits[key] = self.make_submit(fields)
        self.namespace["SUBMIT"] = submit

        number = next(self.cells)
        label = message.get("cell")  # the host's name for it: the tree's iteration
        filename = CELL.format(label if isinstance(label, str) and label.isalnum() else number)
        code = message["code"]
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        stdout, stderr = self.stdout, self.stderr
        stdout.reset(cap)
        stderr.reset(cap)
        error, final = None, None
        started, artifacts = time.perf_counter(), artifact_files()
        # fds 1 and 2 point at one capture file for the driver's lifetime (see main): output
        # written below Python, by C code or child processes, lands there, never in the protocol.
        # It is emptied before a cell only when something was written since the last one.
        if os.lseek(1, 0, os.SEEK_END):  # its size (an int, where fstat makes a stat_result)
            os.ftruncate(1, 0)
            os.lseek(1, 0, os.SEEK_SET)
        sys.stdout, sys.stderr = stdout, stderr
        self.executing = True
        try:
            self.run_cell(code, filename, stdout)
        except Submitted as submitted:
            try:
                final = plain(submitted.value, strict=False)
            except RecursionError as exc:
                error = describe(ValueError(f"SUBMIT values cannot be sent: {exc}"), None)
        except BaseException as exc:  # noqa: BLE001 - every failure of model code is reported
            error = describe(exc, filename)
        finally:
            self.executing = False
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        written = os.lseek(1, 0, os.SEEK_END)
        raw = os.pread(1, cap + 1, 0) if written else b""
        unread = written - len(raw)
        if raw:
            stdout.write(raw.decode("utf-8", errors="replace"))
        dropped = stdout.dropped + stderr.dropped + unread
        truncated = dropped > 0
        out = stdout.value()
        if truncated:
            out += f"\n[output truncated: {dropped} characters dropped]"
        return {"type": "result", "stdout": out, "stderr": stderr.value(), "error": error,
                "final": final, "truncated": truncated,
                "duration_s": round(time.perf_counter() - started, 6),
                "names": self.own_names(message.get("tools", [])),
                "files": written_artifacts(artifacts)}

    def own_names(self, tools: list) -> list:
        """The variables the cells made (not the inputs, the tools or modules): what a stopped
        sandbox loses. Worked out again only when a name, the kind of a value, the tools or
        the inputs changed since the last time (the check is a few C-level tuple builds)."""
        key = (tuple(self.namespace), tuple(map(type, self.namespace.values())), tuple(tools),
               len(self.inputs))
        if self.names_seen is None or self.names_seen[0] != key:
            skip = {*tools, "SUBMIT"}
            own = sorted(name for name, value in self.namespace.items()
                         if name[0] != "_" and name not in skip and name not in self.inputs
                         and not isinstance(value, types.ModuleType))
            self.names_seen = (key, own[:MAX_NAMES])
        return self.names_seen[1]

    def run_cell(self, code: str, filename: str, stdout: CappedText) -> None:
        """Run the cell; the value of a last statement that is an expression is shown, as a
        REPL shows it, unless it is None."""
        compiled, shows = compile_cell(code, filename)
        if not shows:
            exec(compiled, self.namespace)
            return
        self.namespace.pop(SHOWN, None)
        try:
            exec(compiled, self.namespace)
            value = self.namespace.get(SHOWN)
        finally:
            self.namespace.pop(SHOWN, None)
        if value is not None:
            stdout.write(repr(value) + "\n")

    def make_submit(self, fields: list[str] | None):
        def SUBMIT(*args, **kwargs):  # noqa: N802 - the name models are told to call
            if fields is None:
                if len(args) == 1 and not kwargs:
                    raise Submitted({"output": args[0]})
                raise Submitted(dict(kwargs))
            if args and kwargs:
                raise TypeError("SUBMIT takes positional or keyword values, not both")
            if len(args) > len(fields):
                raise TypeError(f"SUBMIT takes at most {len(fields)} values: {', '.join(fields)}")
            values = dict(zip(fields, args, strict=False)) if args else dict(kwargs)
            missing = [f for f in fields if f not in values]
            extra = [k for k in values if k not in fields]
            if missing or extra:
                raise TypeError(f"SUBMIT expects {', '.join(fields)}; "
                                f"missing {missing}, unexpected {extra}")
            raise Submitted(values)

        return SUBMIT

    # -- loop ------------------------------------------------------------------------------
    def on_sigint(self, signum, frame) -> None:
        # An interrupt that lands between cells must not kill the driver.
        if self.executing:
            raise KeyboardInterrupt

    def serve(self) -> None:
        signal.signal(signal.SIGINT, self.on_sigint)
        threading.Thread(target=self.read_results, daemon=True).start()
        while True:
            message = self.next_request()
            op = message["op"]
            if op == "shutdown":
                return
            try:
                if op == "execute":
                    reply = self.execute(message)
                elif op == "set_var":
                    self.set_var(message)
                    reply = {"type": "var", "value": None}
                elif op == "get_var":
                    reply = {"type": "var", "value": self.get_var(message)}
                else:
                    raise ValueError(f"unknown op {op!r}")
            except BaseException as exc:  # noqa: BLE001 - reported to the host, loop goes on
                reply = {"type": "error", "error": describe(exc, None)}
            field = {"result": "final", "var": "value"}.get(reply["type"])
            try:
                data = (encode(reply) if field is None or reply[field] is None
                        else self.frame(reply, {field: reply.pop(field)}))
                if len(data) > MAX_FRAME:
                    raise FrameTooLarge(len(data))
            except (FrameTooLarge, OSError) as exc:  # too large, or the outbox is full
                error = describe(exc, None)
                data = encode({"type": "result", "stdout": "", "stderr": "", "error": error,
                               "final": None, "truncated": False, "duration_s": 0.0}
                              if op == "execute" else {"type": "error", "error": error})
            if op == "execute" and len(sys._current_frames()) > 2:  # noqa: SLF001
                self.shed_threads(data)
            else:
                with self.send_lock:
                    write_all(self.channel, data)

    def shed_threads(self, reply: bytes) -> None:
        """The cell left threads running, and a thread cannot be stopped from outside. A fork
        copies only this thread, with every variable: the copy goes on as the worker, and the
        old process, with the threads, ends once it has named its successor and replied."""
        with self.send_lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            successor = os.fork()
            if successor:
                write_all(self.channel, encode({"type": "worker", "pid": successor}) + reply)
                os._exit(0)
        self.pending, self.pending_lock = {}, threading.Lock()
        threading.Thread(target=self.read_results, daemon=True).start()


class Supervisor:
    """Holds the host's channel and relays between it and the worker (see the module doc)."""

    def __init__(self, host_in: int, host_out: int, outbox: str | None = None) -> None:
        self.host_in, self.host_out, self.outbox = host_in, host_out, outbox
        self.in_flight: tuple[object, str] | None = None  # (id, op) of the request being served
        self.worker, self.exited, self.channel, self.results = self.spawn()
        self.pid = os.getpid()
        self.cpus = os.sched_getaffinity(0)
        self.pinned_to: int | None = None  # the CPU the worker is held to (see pin_worker)
        self.swept_at: bytes | None = None  # LAST_PID after the last sweep
        try:
            self.last_pid: int | None = os.open(LAST_PID, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.last_pid = None

    def spawn(self) -> tuple[int, int, int, int]:
        ours, theirs = socket.socketpair()
        results, their_results = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            keep = {0, 1, 2, theirs.fileno(), their_results.fileno()}
            for fd in map(int, os.listdir("/proc/self/fd")):
                if fd not in keep:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            _prctl(PR_SET_DUMPABLE, 1)  # its own /proc entries stay its own
            Worker(theirs.detach(), their_results.detach(), self.outbox).serve()
            os._exit(0)
        theirs.close()
        their_results.close()
        _prctl(PR_SET_DUMPABLE, 0)
        return pid, _exit_watch(pid), ours.detach(), results.detach()

    def send_host(self, message: dict) -> None:
        write_all(self.host_out, encode(message))

    def run(self) -> None:
        self.send_host({"type": "ready", "python": sys.version.split()[0], "pid": self.pid})
        host, worker = Lines(limit=1 << 62), Lines()  # the host is trusted; the worker is not
        poll = select.poll()
        for fd in (self.host_in, self.channel, self.exited):
            poll.register(fd, select.POLLIN)
        while True:
            events = poll.poll(PIN_S * 1000 if self.pinned_to is not None and self.in_flight
                               else None)
            if not events:
                self.unpin_worker()
                continue
            ready = {fd for fd, _ in events}
            if self.channel in ready:
                got = worker.fill(self.channel)
                try:
                    while (line := worker.next()) is not None:
                        self.from_worker(line, poll)
                except FrameTooLarge as exc:
                    self.violation(f"the worker sent {exc}")
                if not got:
                    self.stop(1)  # the worker is gone (or closed its channel)
            if self.host_in in ready:
                if not host.fill(self.host_in):
                    self.stop(0)
                while (line := host.next()) is not None:
                    self.from_host(line)
            if self.exited in ready and _drained(self.exited) and \
                    os.waitpid(self.worker, os.WNOHANG)[0]:
                self.stop(1)  # the worker died: the host reports the sandbox died

    def from_host(self, line: bytes) -> None:
        head = REQUEST_HEAD.match(line)
        if head is not None and (head[2] is not None or head[1] in UNNUMBERED):
            op, request_id = head[1].decode(), head[2] or b"null"
        else:  # not the host's own layout: read it whole
            try:
                message = decode(line)
                op = message["op"]
                request_id = json.dumps(message.get("id")).encode()
            except (ValueError, KeyError, TypeError):
                self.send_host({"type": "protocol_error",
                                "error": f"bad request line: {line[:200]!r}"})
                return
        if op == "interrupt":
            if self.in_flight is not None and self.in_flight[1] == "execute":
                os.kill(self.worker, signal.SIGINT)
            return
        if op == "shutdown":
            self.stop(0)
        if op in ("callback_result", "callback_error"):
            write_all(self.results, line + b"\n")
            return
        if self.in_flight is not None:
            self.send_host({"type": "error", "id": json.loads(request_id), "error": {
                "type": "ProtocolError", "message": "a request is already in flight"}})
            return
        self.in_flight = (request_id, op)
        self.pin_worker()
        write_all(self.channel, line + b"\n")

    def pin_worker(self) -> None:
        """Run the worker on this process's CPU while it serves a request: the request and
        its reply then wake a process queued on the waker's own CPU, not one on another CPU
        (an inter-processor interrupt, and often an idle CPU to wake, on every hand-off). A
        request still running after PIN_S is unpinned, so a long cell has every CPU again."""
        cpu = current_cpu()
        if cpu is not None and cpu != self.pinned_to:
            try:
                os.sched_setaffinity(self.worker, {cpu})
            except OSError:
                return
            self.pinned_to = cpu

    def unpin_worker(self) -> None:
        """Every thread of every process in the sandbox may use every CPU again (threads and
        processes the cell started while the worker was pinned inherited its CPU)."""
        if self.pinned_to is None:
            return
        self.pinned_to = None
        for pid in {self.worker, *_descendants(self.pid)} - {self.pid}:
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for task in tasks:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task), self.cpus)

    def from_worker(self, line: bytes, poll: select.poll) -> None:
        head = FRAME_HEAD.match(line)
        if head is None or not line.endswith(b"}"):
            self.violation(f"the worker sent a line that is not a frame: {line[:200]!r}")
        kind = head[1].decode()
        request_id, op = self.in_flight or (None, None)
        if op == "execute" and kind == "callback":
            write_all(self.host_out, line + b"\n")
        elif op == "execute" and kind == "worker":
            self.succeed(self.successor(line), poll)
        elif op is not None and kind in REPLIES.get(op, ("error",)):
            if op == "execute" and not self.sweep():
                self.violation("the cell left threads running and the worker kept them")
            self.in_flight = None
            # The frame ends with "}": the id goes in as its last key (the one a reader keeps if
            # the worker sent one too; a frame that is not a JSON object stays unreadable).
            stamped = b'%s, "id": %s}\n' % (line[:-1], request_id)
            write_all(self.host_out, stamped)
        else:
            self.violation(f"the worker sent an unexpected {str(kind)[:40]!r} frame "
                           f"while {'serving ' + op if op else 'idle'}")

    def successor(self, line: bytes) -> int:
        try:
            frame = decode(line)
        except ValueError:
            frame = None
        pid = frame.get("pid") if isinstance(frame, dict) else None
        if not isinstance(pid, int):
            self.violation(f"the worker named no successor: {line[:200]!r}")
        return pid

    def succeed(self, pid: int, poll: select.poll) -> None:
        """The worker forked its successor (Worker.shed_threads): the old one goes."""
        with contextlib.suppress(OSError):
            os.kill(self.worker, signal.SIGKILL)
        os.waitpid(self.worker, 0)
        if _parent(pid) != self.pid:
            self.violation(f"the worker named process {pid} its successor, not a child of ours")
        if self.exited not in _CHILD_SIGNALS:  # a pidfd names one process; the pipe serves all
            poll.unregister(self.exited)
            os.close(self.exited)
            self.exited = _exit_watch(pid)
            poll.register(self.exited, select.POLLIN)
        self.worker = pid

    def sweep(self) -> bool:
        """Kill every process in the sandbox but the worker and this one. As subreaper this
        process inherits orphans, so they are all its descendants; killed ones cannot fork.
        False if the worker still has threads beyond its own two (model code can stop it from
        shedding them: Worker.shed_threads runs in its process)."""
        if self.swept_at is not None and self.read_last_pid() == self.swept_at:
            return True
        self.reap()
        while stray := [pid for pid in _descendants(self.pid) if pid != self.worker]:
            for pid in stray:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for pid in stray:
                if _parent(pid) == self.pid:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, 0)
                else:  # the worker reaps its own children before its next cell
                    while _state(pid) not in ("Z", None):
                        time.sleep(0.001)
        self.swept_at = self.read_last_pid()
        settle = time.monotonic() + 0.2  # a thread the cell joined may still be exiting
        while _tasks(self.worker) > 2:
            if time.monotonic() > settle:
                return False
            time.sleep(0.005)
        return True

    def read_last_pid(self) -> bytes | None:
        return None if self.last_pid is None else os.pread(self.last_pid, 32, 0)

    def reap(self) -> None:
        """Collect orphans that ended by themselves; a dead worker ends the supervisor."""
        while True:
            try:
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if ended is None:
                return
            if ended.si_pid == self.worker:
                os._exit(1)
            os.waitpid(ended.si_pid, 0)

    def violation(self, detail: str) -> NoReturn:
        self.send_host({"type": "violation", "error": detail})
        self.stop(1)

    def stop(self, status: int) -> NoReturn:
        with contextlib.suppress(OSError):
            os.kill(self.worker, signal.SIGKILL)
            os.waitpid(self.worker, 0)
        self.sweep()
        os._exit(status)


def current_cpu() -> int | None:
    global _getcpu
    if _getcpu is None:
        import ctypes

        _getcpu = ctypes.CDLL(None).sched_getcpu
    cpu = _getcpu()
    return cpu if cpu >= 0 else None


_getcpu: Callable[[], int] | None = None  # libc's sched_getcpu, loaded on first use


def _prctl(option: int, value: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].decode().split()
    except OSError:
        return None


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def _state(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[0] if fields else None


def _tasks(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _exit_watch(pid: int) -> int:
    """A descriptor readable when `pid` exits: its pidfd, or where the kernel has none (gVisor)
    a pipe that SIGCHLD wakes (drain it with _drained)."""
    try:
        return os.pidfd_open(pid)
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
    if not _CHILD_SIGNALS:
        read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        _CHILD_SIGNALS.append(read)
    return _CHILD_SIGNALS[0]


_CHILD_SIGNALS: list[int] = []  # the SIGCHLD wake-up pipe's read end, once made


def _drained(fd: int) -> bool:
    if fd in _CHILD_SIGNALS:
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 4096):
                pass
    return True


def _descendants(root: int) -> list[int]:
    """Live (not zombie) processes under `root`, from the kernel's per-thread child lists; for
    the pid namespace's init, every other process in it (gVisor keeps no child lists)."""
    if root == 1:
        return [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                if pid != 1 and _state(pid) not in ("Z", None)]
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children", "rb") as handle:
                    children = [int(c) for c in handle.read().split()]
            except OSError:
                continue
            for child in children:
                if _state(child) not in ("Z", None):
                    found.append(child)
                todo.append(child)
    return found


def describe(exc: BaseException, filename: str | None) -> dict:
    """Error type, message and a traceback limited to the model's own code."""
    if isinstance(exc, SyntaxError):
        lines = traceback.format_exception_only(type(exc), exc)
    else:
        report = traceback.TracebackException.from_exception(exc)
        # The driver's own frames are noise to the model; library frames it called are not.
        report.stack = traceback.StackSummary.from_list(
            [f for f in report.stack if f.filename != __file__])
        lines = list(report.format())
    return {"type": type(exc).__name__, "message": str(exc), "traceback": "".join(lines),
            "line": exc.lineno if isinstance(exc, SyntaxError) else _last_line(exc)}


def _last_line(exc: BaseException) -> int | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell-")]
    return frames[-1].lineno if frames else None


def apply_limits(memory_mb: int, nproc: int, fsize_mb: int) -> None:
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if nproc > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    if fsize_mb > 0:
        limit = fsize_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG


def become(uid: int) -> None:
    """Started as root by the host: drop to the sandbox's own uid for good, with no capability
    left even in the bounding set, and no way back through setuid binaries."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_capbset_drop = 38, 24
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    cap = 0
    while libc.prctl(pr_capbset_drop, cap, 0, 0, 0) == 0:
        cap += 1
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    if libc.capset(header, (ctypes.c_uint32 * 6)()) != 0:  # inheritable set too: all zero
        raise OSError(ctypes.get_errno(), "capset failed")


def main(argv: list[str]) -> None:
    options = dict(zip(argv[0::2], argv[1::2], strict=True))
    apply_limits(int(options.get("--memory-mb", 0)), int(options.get("--nproc", 0)),
                 int(options.get("--fsize-mb", 0)))
    if "--uid" in options:
        become(int(options["--uid"]))
    host_in, host_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # model code reading stdin must not eat protocol lines
    os.close(devnull)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    capture = tempfile.TemporaryFile()  # noqa: SIM115 - stdout and stderr for the process's life
    os.dup2(capture.fileno(), 1)
    os.dup2(capture.fileno(), 2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the worker's cells
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    outbox = options.get("--outbox")
    Supervisor(host_in, host_out, outbox and os.path.join(HOME, os.path.basename(outbox))).run()


if __name__ == "__main__":
    main(sys.argv[1:])
