"""A text input handed from one sandbox to another by reference: one read-only copy on disk,
references resolved only against what the calling sandbox was given (real sandboxes)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from sandbox_support import BOTH

from fleet_rlm.sandbox.base import DriverSession
from fleet_rlm.sandbox.local import LocalSandbox
from fleet_rlm.sandbox.shared import TAKES_SHARED, SharedText

BIG = 300_000  # past the size at which inputs cross as files and arguments go by reference


def document(size: int = BIG, char: str = "x") -> str:
    return "".join(f"{char}{i:07d}\n" for i in range(size // 9 + 1))[:size]


def taking(got: list, shared: bool = True) -> Any:
    def take(*values: Any) -> str:
        got.extend(values)
        return "ok"

    setattr(take, TAKES_SHARED, shared)
    return take


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every callback frame the host took from a sandbox."""
    sizes: list[int] = []
    queue = DriverSession._queue_callback

    def counting(self: DriverSession, call: dict, callbacks: dict) -> None:
        sizes.append(len(json.dumps(call)))
        queue(self, call, callbacks)

    monkeypatch.setattr(DriverSession, "_queue_callback", counting)
    return sizes


def run(box: LocalSandbox, code: str, **callbacks: Any) -> str:
    result = box.execute(code, callbacks=callbacks)
    assert result.ok, result.traceback or result.error_message
    return result.stdout


INODE = ("import os\n"
         "name = [f for f in os.listdir('/fleet/vars') if f.endswith('context.text')][0]\n"
         "print(os.stat('/fleet/vars/' + name).st_ino)")


@BOTH
def test_a_child_reads_its_parents_context_from_the_one_copy(make, frames):
    parent, child = make(), make()
    text = document()
    parent.put_variable("context", text)
    got: list = []

    run(parent, "take(context)", take=taking(got))

    assert max(frames) < 1000  # a reference crossed, not the text
    [shared] = got
    assert isinstance(shared, SharedText) and shared.size == BIG
    child.put_variable("context", shared)
    assert run(child, "print(len(context), context == context[:9] * 0 + context)") == \
        f"{BIG} True\n"
    assert run(child, "import hashlib\nprint(hashlib.sha256(context.encode()).hexdigest())") \
        == hashlib.sha256(text.encode()).hexdigest() + "\n"
    # One file on disk: the child's is a link to the parent's.
    assert run(child, INODE) == run(parent, INODE)


def test_a_slice_goes_by_reference_and_the_child_gets_just_that(make, frames):
    parent, child = make(), make()
    text = document(char="é")  # two bytes a character: the range is in bytes
    parent.put_variable("context", text)
    got: list = []

    run(parent, "take(context[1000:200000], [context[5:100005], 'short'])", take=taking(got))

    assert max(frames) < 1000
    first, (second, short) = got
    assert short == "short"
    for shared, expected in ((first, text[1000:200000]), (second, text[5:100005])):
        child.put_variable("context", shared)
        assert run(child, "print(context[:9], len(context))") == \
            f"{expected[:9]} {len(expected)}\n"
        assert run(child, "import hashlib\nprint(hashlib.sha256(context.encode()).hexdigest())") \
            == hashlib.sha256(expected.encode()).hexdigest() + "\n"


def test_a_host_function_that_takes_text_gets_the_text(make, frames):
    box = make()
    text = document()
    box.put_variable("context", text)
    got: list = []

    run(box, "take(context, context[10:90000])", take=taking(got, shared=False))

    assert got == [text, text[10:90000]]
    # The input itself is read from the file on the host, not sent through the pipe; a slice
    # crosses as it is (no pass over the input searching for it, for a tool that only reads).
    assert 90_000 <= max(frames) < 150_000  # the slice (as JSON), not the input (300 KB)


def test_a_grandchild_gets_the_same_copy(make):
    boxes = [make() for _ in range(3)]
    boxes[0].put_variable("context", document())
    value: Any = None
    for box in boxes[:-1]:
        got: list = []
        if value is not None:
            box.put_variable("context", value)
        run(box, "take(context[:150000])", take=taking(got))
        [value] = got
    boxes[-1].put_variable("context", value)
    assert run(boxes[-1], "print(len(context))") == "150000\n"
    assert len({run(box, INODE) for box in boxes}) == 1


@BOTH
def test_the_child_cannot_write_the_shared_copy_nor_see_its_parents_other_files(make):
    parent, child = make(), make()
    text = document()
    parent.put_variable("context", text)
    parent.put_variable("other", document(char="o"))
    assert len(run(parent, "import os\nprint(os.listdir('/fleet/vars'))").split(",")) == 2
    got: list = []
    run(parent, "take(context)", take=taking(got))
    child.put_variable("context", got[0])

    out = run(child, "import os\n"
                     "[name] = os.listdir('/fleet/vars')\n"
                     "path = '/fleet/vars/' + name\n"
                     "for attempt in (lambda: open(path, 'a').write('x'),\n"
                     "                lambda: os.chmod(path, 0o666), lambda: os.unlink(path),\n"
                     "                lambda: open(path, 'r+b').write(b'y')):\n"
                     "    try:\n"
                     "        attempt()\n"
                     "        print('wrote')\n"
                     "    except OSError as exc:\n"
                     "        print(type(exc).__name__)\n"
                     "print(len(os.listdir('/fleet/vars')))")

    assert "wrote" not in out and out.endswith("\n1\n"), out
    assert run(parent, "print(context == context[:0] + context, len(context))") == \
        f"True {BIG}\n"
    assert got[0].read() == text  # the host's file is as the parent's host wrote it


FORGERIES = {
    # the name of another input, one the sandbox holds but not as a shared file
    "another input": ("w.shared = {'question': w.shared['context']}", "'question'"),
    "out of range": ("w.shared = {'context': (context, 10**9)}", "outside the input"),
    "never given": ("w.shared = {'secret': w.shared['context']}", "'secret'"),
    "inside a character": ("w.shared = {'context': (context, 1)}", "on characters"),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_reference_is_refused_with_a_clear_error(make, forgery):
    box = make()
    box.put_variable("context", document(char="é"))
    box.put_variable("question", "a short input")
    got: list = []
    forge, said = FORGERIES[forgery]

    out = run(box, "w = next(c.cell_contents for c in take.__closure__\n"
                   "         if hasattr(c.cell_contents, 'shared'))\n"
                   f"{forge}\n"
                   "try:\n"
                   "    take(context)\n"
                   "except RuntimeError as exc:\n"
                   "    print(exc)\n", take=taking(got))

    assert got == []  # the host function never ran
    assert "RefusedReference" in out and said in out, out
    assert run(box, "print(len(question))") == "13\n"  # the sandbox is unharmed


FORGED_FRAMES = {
    "a reference over a value": ("lambda a, k, s: (a, k, [[['args', 0], 'context', 0, 5]])",
                                 "has a value"),
    "a reference to no argument": ("lambda a, k, s: (a, k, [[['args', 7], 'context', 0, 5]])",
                                   "points at no argument"),
}


@pytest.mark.parametrize("forgery", FORGED_FRAMES)
def test_a_reference_where_no_placeholder_is_is_refused(make, forgery):
    box = make()
    box.put_variable("context", document())
    got: list = []
    forge, said = FORGED_FRAMES[forgery]

    out = run(box, "w = next(c.cell_contents for c in take.__closure__\n"
                   "         if hasattr(c.cell_contents, 'shared'))\n"
                   f"w.references = {forge}\n"
                   "try:\n"
                   "    take('mine')\n"
                   "except RuntimeError as exc:\n"
                   "    print(exc)\n", take=taking(got))

    assert got == [] and "RefusedReference" in out and said in out, out


def test_malformed_references_are_a_protocol_violation(make):
    box = make()
    box.put_variable("context", document())
    got: list = []

    result = box.execute("w = next(c.cell_contents for c in take.__closure__\n"
                         "         if hasattr(c.cell_contents, 'shared'))\n"
                         "w.references = lambda a, k, s: (a, k, [['args', 'context', 0, 5]])\n"
                         "take(context)\n", callbacks={"take": taking(got)})

    assert got == [] and result.error_type == "ProtocolViolation" and result.state_lost


IN_ITS_FILE = ("ranges = [[int(x, 16) for x in line.split()[0].split('-')]\n"
               "          for line in open('/proc/self/maps')\n"
               "          if line.split()[-1].endswith('context.text')]\n"
               "print(any(lo <= id(context) < hi for lo, hi in ranges))")


@BOTH
def test_an_ascii_context_is_a_str_over_its_files_pages(make):
    """Each sandbox's `context` is laid over the pages of the one file: sandboxes given the same
    text share its memory, as they share its file."""
    parent, child = make(), make()
    text = document()
    parent.put_variable("context", text)
    got: list = []
    run(parent, "take(context, context[4:100004])", take=taking(got))
    whole, part = got

    for box, value, expected in ((parent, None, text), (child, whole, text),
                                 (child, part, text[4:100004])):
        if value is not None:
            box.put_variable("context", value)
        assert run(box, IN_ITS_FILE) == "True\n"
        assert run(box, "import hashlib\nprint(len(context), hash(context) == hash(context[:]),"
                        " hashlib.sha256(context.encode()).hexdigest())") == \
            f"{len(expected)} True {hashlib.sha256(expected.encode()).hexdigest()}\n"
    assert whole.read() == text  # the file is as the host wrote it


def test_a_non_ascii_context_is_decoded_into_the_sandboxs_own_memory(make):
    box = make()
    box.put_variable("context", document(char="é"))
    assert run(box, IN_ITS_FILE) == "False\n"
    assert run(box, "print(context[:3])") == "é00\n"


MAPPED = ("ranges = [[int(x, 16) for x in line.split()[0].split('-')]\n"
          "          for line in open('/proc/self/maps') if 'context.text' in line]\n"
          "print([any(lo <= id(context[k]) < hi for lo, hi in ranges) for k in sorted(context)])")


@BOTH
def test_an_ascii_document_of_a_larger_value_is_a_str_over_its_files_pages(make):
    """The documents of a multi-document context cross as value files of their own: an ASCII
    one is laid over its file's pages as a shared input is, a non-ASCII one decoded."""
    box = make()
    docs = {"a.txt": document(), "b.txt": document(char="é")}
    box.put_variable("context", docs)
    assert run(box, MAPPED) == "[True, False]\n"
    assert run(box, "print(len(context['a.txt']), context['b.txt'][:3])") == \
        f"{len(docs['a.txt'])} é00\n"
