"""Large values in real sandboxes: beyond the frame limit both ways, through files, and a
hostile sandbox that names a file the host must not read."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from sandbox_support import BOTH, MB

from fleet_rlm.sandbox.driver import MAX_FRAME

BEYOND = MAX_FRAME + 8 * MB  # larger than any one frame may be


@BOTH
def test_values_beyond_the_frame_limit_cross_both_ways(make) -> None:
    box = make()
    text = "ab\u00e9\ud800" + "x" * BEYOND
    box.put_variable("big", text)
    got: list[str] = []
    result = box.execute("n = len(big)\nshout(big)\nSUBMIT(big[::-1])",
                         callbacks={"shout": lambda value: got.append(value) or len(value)})
    assert result.ok, result.traceback
    assert got == [text]  # a host-callback argument, out
    assert result.final == {"output": text[::-1]}  # a SUBMIT value, out
    assert box.execute("n").stdout == f"{len(text)}\n"
    assert box.get_variable("big") == text  # get_var, out
    box.execute("made = {'rows': ['y' * 1000] * (BEYOND // 1000)}".replace("BEYOND", str(BEYOND)))
    assert len(box.get_variable("made")["rows"]) == BEYOND // 1000
    # Nothing is left behind on either side: the sandbox's files were taken, the host's removed
    # but for the text input's one file, kept while the sandbox may hand it on (shared.py).
    assert box.execute("import os\nos.listdir('.fleet-out')").stdout == "[]\n"
    assert box._root is not None
    assert [p.name.split("-", 1)[1] for p in (box._root / "vars").iterdir()] == ["big.text"]
    box.put_variable("big", "replaced")
    assert list((box._root / "vars").iterdir()) == []
    assert box.execute("print(big)").stdout == "replaced\n"


FORGE = """
import json, os
worker = next(c.cell_contents for c in echo.__closure__ if hasattr(c.cell_contents, 'channel'))
os.makedirs('.fleet-out', exist_ok=True)
{setup}
worker.send((json.dumps({{'type': 'callback', 'call_id': 1, 'name': 'echo',
                          'file': {name!r}}}) + '\\n').encode())
import time
time.sleep(30)
"""


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"args": ["the host's secret"], "kwargs": {}}))
    return secret


def forge(box, name: str, setup: str = "") -> tuple:
    seen: list = []
    started = time.monotonic()
    result = box.execute(FORGE.format(name=name, setup=setup), timeout=20,
                         callbacks={"echo": lambda *args: seen.append(args)})
    return result, seen, time.monotonic() - started


@BOTH
@pytest.mark.parametrize(("name", "setup", "refusal"), [
    ("../../etc/passwd", "", "not the name of a value file"),
    ("/etc/passwd", "", "not the name of a value file"),
    ("1x1.json", "os.symlink({secret!r}, '.fleet-out/1x1.json')", "not a regular file"),
    ("1x1.json", "os.symlink('/etc/passwd', '.fleet-out/1x1.json')", "not a regular file"),
    # gVisor keeps a FIFO in its own file system: the host sees no file at all
    ("1x1.json", "os.mkfifo('.fleet-out/1x1.json')", "not a regular file|No such file"),
    ("1x1.json", "os.rmdir('.fleet-out'); os.symlink({folder!r}, '.fleet-out')",
     "not a directory of the sandbox's own"),
    ("1x1.json", "open('.fleet-out/1x1.json', 'wb').truncate(300 * 1024 * 1024)",
     "more than the 268435456 a value may"),
])
def test_a_value_file_the_host_must_not_read_is_refused(make, host_secret: Path, name: str,
                                                        setup: str, refusal: str) -> None:
    box = make(sandbox_memory_mb=256)
    (host_secret.parent / "1x1.json").write_text(host_secret.read_text())  # for a linked outbox
    result, seen, elapsed = forge(box, name, setup.format(secret=str(host_secret),
                                                          folder=str(host_secret.parent)))
    assert (result.error_type, result.state_lost) == ("ProtocolViolation", True)
    assert re.search(refusal, result.error_message), result.error_message
    assert elapsed < 15  # at the refusal, not at the cell's deadline
    assert seen == []  # no callback ran on what the host refused
    # The host is unharmed: its files are as they were, and the sandbox starts again.
    assert json.loads(host_secret.read_text())["args"] == ["the host's secret"]
    assert (host_secret.parent / "1x1.json").exists()
    assert box.execute("print('back')").stdout == "back\n"


def test_unchanged_inputs_are_neither_serialised_nor_sent_again(make, monkeypatch) -> None:
    from fleet_rlm.sandbox import base

    encoded: list[object] = []
    real_to_wire = base.to_wire
    monkeypatch.setattr(base, "to_wire", lambda value, *args: (encoded.append(value),
                                                               real_to_wire(value, *args))[1])
    box = make()
    session = box._session
    sent: list[dict] = []
    original = session._send
    session._send = lambda message, deadline: (sent.append(message), original(message, deadline))
    documents = {"a.txt": "a" * (2 * MB), "b.txt": "b" * (2 * MB)}
    for step in range(4):
        box.put_variable("context", documents)
        result = box.execute("print(sorted((k, len(v)) for k, v in context.items()))\n"
                             "context['a.txt'] = 'changed'\ncontext['new'] = 1")
        assert result.stdout == f"[('a.txt', {2 * MB}), ('b.txt', {2 * MB})]\n", step
    assert [m["op"] for m in sent if m["op"] == "set_var"] == ["set_var"]
    # Each document crossed as a file of its own, the dict as small JSON naming them.
    assert [item.get("$t") for item in sent[0]["value"].values()] == ["file", "file"]
    assert len(encoded) == 1  # serialised once, for the one time it was sent
    assert [m["restore"] for m in sent if m["op"] == "execute"] == [[]] + [["context"]] * 3
    documents = {**documents, "c.txt": "c"}  # a new object is sent again
    box.put_variable("context", documents)
    assert box.execute("print(sorted(context))").stdout == "['a.txt', 'b.txt', 'c.txt']\n"
    assert len([m for m in sent if m["op"] == "set_var"]) == 2


def test_a_value_too_large_for_the_workspace_fails_the_call_and_leaves_no_file(make) -> None:
    box = make(sandbox_disk_mb=32)
    if not box.quota_in_force:
        pytest.skip("no disk quota on this host (it needs root)")
    called: list = []
    result = box.execute("try:\n    shout('x' * (40 * 1024 * 1024))\n"
                         "except OSError as exc:\n    print(type(exc).__name__, exc.errno)",
                         callbacks={"shout": called.append})
    assert result.ok, result.traceback
    assert result.stdout == "OSError 28\n" and called == []  # ENOSPC, in the cell
    assert box.execute("import os\nprint(os.listdir('.fleet-out'))").stdout == "[]\n"
    assert box.execute("shout('small')", callbacks={"shout": called.append}).ok
    assert called == ["small"]
