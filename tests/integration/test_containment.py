"""Real bubblewrap: hostile code is contained with a clear error and the host is unharmed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.sandbox.local import LocalSandbox

REPO = Path(__file__).resolve().parents[2]
FAKE_SECRET = "sk-fleet-test-fake-secret-4b1d"


def sandbox_processes(uid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process on the host owned by `uid`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                found.append((int(entry.name), stat.rsplit(")", 1)[1].split()[0]))
        except OSError:  # it exited while we looked
            continue
    return found


def wait_until_gone(uid: int, timeout: float = 5.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while (left := sandbox_processes(uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def make_sandbox(**settings: Any) -> LocalSandbox:
    defaults = {"exec_kill_grace_s": 1.0, "max_output_chars": 20_000}
    # The default work dir: it lives under the sandbox's own root, which its uid can traverse.
    return LocalSandbox(Settings(**{**defaults, **settings}))


@pytest.fixture
def box(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalSandbox]:
    # Set before the sandbox starts: it must not be visible inside.
    monkeypatch.setenv("FLEET_FAKE_API_KEY", FAKE_SECRET)
    sandbox = make_sandbox()
    sandbox.start()
    assert sandbox.isolated and sandbox.uid is not None
    uid = sandbox.uid
    yield sandbox
    sandbox.close()
    assert wait_until_gone(uid) == []


def test_runs_as_an_unprivileged_uid_without_capabilities(box: LocalSandbox) -> None:
    result = box.execute("import os\n"
                         "status = open('/proc/self/status').read()\n"
                         "caps = [line.split()[1] for line in status.splitlines()\n"
                         "        if line.startswith('Cap')]\n"
                         "print(os.getuid(), os.getpid(), set(caps))")
    assert result.ok, result.traceback
    uid, pid, caps = result.stdout.split(" ", 2)
    assert int(uid) == box.uid and box.uid >= 200_000
    assert pid == "2"  # its own pid namespace: the driver's supervisor is 1, the worker 2
    assert caps == "{'0000000000000000'}\n"


def test_host_files_are_not_readable(box: LocalSandbox) -> None:
    for path in ("/etc/shadow", "/etc/passwd", str(REPO / "pyproject.toml"),
                 "/root/.bashrc", "/work/../etc/shadow"):
        result = box.execute(f"open({path!r}).read()")
        assert result.error_type == "FileNotFoundError", (path, result)
        assert path in result.error_message
    listing = box.execute("import os\nsorted(os.listdir('/'))")
    assert listing.stdout == "['bin', 'dev', 'fleet', 'lib', 'lib64', 'proc', 'sbin', 'tmp', " \
                             "'usr', 'work']\n"
    for gone in ("/root", "/home", "/etc", str(REPO), "/var", "/sys"):
        exists = box.execute(f"import os\nos.path.exists({gone!r})")
        assert exists.stdout == "False\n", gone
    # The work dir holds only what the sandbox was given, not the host's tree around it.
    assert box.execute("import os\nos.listdir('/work')").stdout == "[]\n"


def test_host_environment_is_not_visible(box: LocalSandbox) -> None:
    assert os.environ["FLEET_FAKE_API_KEY"] == FAKE_SECRET
    result = box.execute(
        "import os\n"
        f"secret = {FAKE_SECRET!r}\n"
        "hits = [k for k, v in os.environ.items() if secret in v]\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    try:\n"
        "        if secret.encode() in open(f'/proc/{pid}/environ', 'rb').read():\n"
        "            hits.append(pid)\n"
        "    except OSError:\n"
        "        pass\n"
        "print(sorted(os.environ), hits)")
    assert result.ok, result.traceback
    assert result.stdout == ("['HOME', 'LANG', 'PATH', 'PWD', 'PYTHONDONTWRITEBYTECODE', "
                             "'PYTHONIOENCODING'] []\n")


def test_no_network_to_the_host_or_outside(box: LocalSandbox) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        local = box.execute(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 3)")
        assert local.error_type == "ConnectionRefusedError", local
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host's listener
        outside = box.execute("import socket\nsocket.create_connection(('1.1.1.1', 53), 3)")
        assert outside.error_type == "OSError"
        assert "Network is unreachable" in outside.error_message
        udp = box.execute("import socket\n"
                          "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                          "s.sendto(b'x', ('1.1.1.1', 53))")
        assert "Network is unreachable" in udp.error_message
        dns = box.execute("import socket\nsocket.getaddrinfo('example.com', 443)")
        assert dns.error_type == "gaierror"
        interfaces = box.execute("import socket\n[n for _, n in socket.if_nameindex()]")
        assert interfaces.stdout == "['lo']\n"
    finally:
        listener.close()


def test_a_fork_loop_is_capped_by_the_process_limit() -> None:
    sandbox = make_sandbox(sandbox_max_processes=32)
    sandbox.start()
    uid = sandbox.uid
    assert uid is not None
    try:
        result = sandbox.execute(
            "import os, time\n"
            "children, error = [], None\n"
            "for _ in range(1000):\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except OSError as exc:\n"
            "        error = type(exc).__name__\n"
            "        break\n"
            "    if pid == 0:\n"
            "        time.sleep(60)\n"
            "        os._exit(0)\n"
            "    children.append(pid)\n"
            "print(len(children), error)", timeout=20)
        assert result.ok, result.traceback
        count, error = result.stdout.split()
        # 32 per uid, less the supervisor, the worker and its reader thread.
        assert 24 <= int(count) <= 32
        assert error == "BlockingIOError"
        # The children went with the cell: the supervisor and the worker are left.
        live = [p for p in sandbox_processes(uid) if p[1] != "Z"]
        assert len(live) == 2, live
        # The host can still start processes, and the sandbox still answers.
        assert subprocess.run(["true"], check=False).returncode == 0
        assert sandbox.execute("6 * 7").stdout == "42\n"
        # Forking works again.
        cleaned = sandbox.execute(
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os._exit(7)\n"
            "os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])")
        assert cleaned.stdout == "7\n", cleaned
    finally:
        sandbox.close()
    assert wait_until_gone(uid) == []


def test_a_real_fork_bomb_is_capped_and_cleaned_up() -> None:
    sandbox = make_sandbox(sandbox_max_processes=32)
    sandbox.start()
    uid = sandbox.uid
    assert uid is not None
    try:
        bomb = sandbox.execute(
            "import os, time\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n", timeout=1.5)
        # Every copy keeps forking; only the driver's main process is interrupted.
        assert bomb.timed_out and not bomb.state_lost
        assert len([p for p in sandbox_processes(uid) if p[1] != "Z"]) <= 32
        assert sandbox.execute("'survived'").stdout == "'survived'\n"
    finally:
        sandbox.close()
    assert wait_until_gone(uid) == []
    assert subprocess.run(["true"], check=False).returncode == 0


def test_memory_is_capped(box: LocalSandbox) -> None:
    huge = box.execute("block = bytearray(6 * 1024**3)")
    assert huge.error_type == "MemoryError"
    assert huge.error_line == 1 and not huge.state_lost
    # The cap is on this sandbox, not a crash: a modest allocation still works.
    assert box.execute("len(bytearray(64 * 1024**2))").stdout == f"{64 * 1024**2}\n"


def test_tmpfs_is_sized_and_the_rest_of_the_tree_read_only(box: LocalSandbox) -> None:
    sizes = box.execute("import os\n"
                        "[os.statvfs(p).f_blocks * os.statvfs(p).f_frsize // 2**20 "
                        "for p in ('/tmp', '/dev/shm')]")
    assert sizes.stdout == f"[{box.settings.sandbox_tmp_mb}, {box.settings.sandbox_tmp_mb}]\n"
    for path in ("/big", "/dev/big"):
        result = box.execute(f"open({path!r}, 'w')")
        assert result.error_type == "OSError"
        assert "Read-only file system" in result.error_message


def test_a_busy_loop_times_out_and_keeps_its_variables(box: LocalSandbox) -> None:
    box.execute("kept = [1, 2, 3]")
    pid = box.pid
    started = time.monotonic()
    result = box.execute("while True: pass", timeout=1)
    assert 0.9 < time.monotonic() - started < 3
    assert (result.timed_out, result.state_lost, result.error_type) == (True, False, "TimeoutError")
    assert "interrupted; variables are kept" in result.error_message
    assert box.execute("kept").stdout == "[1, 2, 3]\n"
    assert box.pid == pid


@pytest.mark.parametrize("stubborn", [
    "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
    "import time\nwhile True:\n    try:\n        time.sleep(10)\n"
    "    except KeyboardInterrupt:\n        print('ignored')",
], ids=["sig_ign", "catches_keyboard_interrupt"])
def test_code_that_ignores_the_interrupt_is_killed(box: LocalSandbox, stubborn: str) -> None:
    box.execute("kept = 1")
    first_pid, first_uid = box.pid, box.uid
    started = time.monotonic()
    result = box.execute(stubborn, timeout=1)
    elapsed = time.monotonic() - started
    assert (result.timed_out, result.state_lost, result.error_type) == (True, True, "TimeoutError")
    assert "interrupt ignored" in result.error_message
    assert 1.9 < elapsed < 5  # the timeout, then the grace period
    assert wait_until_gone(first_uid) == []
    fresh = box.execute("'kept' in globals()")
    assert fresh.stdout == "False\n"
    assert box.pid != first_pid


def test_signals_cannot_reach_the_host(box: LocalSandbox) -> None:
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        box.execute("kept = 'yes'")
        # Its parent is the namespace's init: a root process it may not signal (started by a
        # root host) or one the kernel shields from its own namespace (a user's host).
        parent = box.execute("import os\nprint(os.getppid())\nos.kill(os.getppid(), 9)")
        assert parent.stdout == "1\n"
        assert parent.ok or parent.error_type == "PermissionError"
        init = box.execute("os.kill(1, 9)")
        assert init.ok or init.error_type == "PermissionError"
        everyone = box.execute("os.kill(-1, 9)")
        assert everyone.error_type == "ProcessLookupError"  # nothing else is visible to kill
        host = box.execute(f"os.kill({bystander.pid}, 9)")
        assert host.error_type == "ProcessLookupError"
        host_test = box.execute(f"os.kill({os.getpid()}, 9)")
        assert host_test.error_type == "ProcessLookupError"
        assert box.execute("kept").stdout == "'yes'\n"
        assert bystander.poll() is None
        os.kill(os.getppid(), 0)  # this test's parent is alive too
    finally:
        bystander.kill()
        bystander.wait()


def test_killing_its_own_process_group_is_reported(box: LocalSandbox) -> None:
    result = box.execute("import os\nos.killpg(0, 9)")
    assert (result.error_type, result.state_lost) == ("SandboxDied", True)
    assert box.execute("'back'").stdout == "'back'\n"


def test_writes_outside_the_work_dir_fail_and_inside_appear_on_the_host(box: LocalSandbox) -> None:
    for path, error in (("/usr/evil", "Read-only file system"),
                        ("/usr/lib/evil.py", "Read-only file system"),
                        ("/etc/evil", "No such file or directory"),
                        ("/evil", "Read-only file system"),
                        ("/fleet/driver.py", "Permission denied"),
                        ("/fleet/vars/evil", "Read-only file system|Permission denied")):
        result = box.execute(f"open({path!r}, 'a').write('x')")
        assert result.error_type in ("OSError", "PermissionError", "FileNotFoundError"), path
        assert re.search(error, result.error_message), (path, result.error_message)
    mkdir = box.execute("import os\nos.mkdir('/etc')")
    assert "Read-only file system" in mkdir.error_message
    for host_path in ("/usr/evil", "/usr/lib/evil.py", "/etc/evil", "/evil"):
        assert not os.path.exists(host_path), host_path

    written = box.execute("import os\n"
                          "os.makedirs('/work/out', exist_ok=True)\n"
                          "open('/work/out/result.txt', 'w').write('from inside')\n"
                          "open('/tmp/scratch', 'w').write('private')\n"
                          "open('relative.txt', 'w').write('cwd is /work')")
    assert written.ok, written.traceback
    assert box.work_dir is not None
    assert (box.work_dir / "out" / "result.txt").read_text() == "from inside"
    assert (box.work_dir / "relative.txt").read_text() == "cwd is /work"
    assert not Path("/tmp/scratch").exists()  # the sandbox's /tmp is its own
    assert (box.work_dir / "out" / "result.txt").stat().st_uid == box.uid


def test_after_close_no_process_of_the_sandbox_remains() -> None:
    sandbox = make_sandbox()
    sandbox.start()
    uid, pid = sandbox.uid, sandbox.pid
    assert uid is not None and pid is not None
    started = sandbox.execute(
        "import os, subprocess, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "detached = subprocess.Popen(['sleep', '60'], start_new_session=True)\n")
    assert started.ok, started.traceback
    assert len(sandbox_processes(uid)) >= 5  # driver, 3 children, sleep (bwrap runs as root)
    sandbox.close()
    assert wait_until_gone(uid) == []
    assert not Path(f"/proc/{pid}").exists()
    assert not sandbox.alive


def test_a_work_dir_under_a_private_parent_is_mounted(tmp_path: Path) -> None:
    private = tmp_path / "home"
    (private / "workspace").mkdir(parents=True)
    private.chmod(0o700)
    with LocalSandbox(Settings(), work_dir=private / "workspace") as sandbox:
        result = sandbox.execute("open('/work/notes.txt', 'w').write('kept')\n"
                                 "import os; sorted(os.listdir('/work'))")
        assert (private / "workspace" / "notes.txt").read_text() == "kept"
    assert result.ok, result.traceback
    assert result.stdout == "['notes.txt']\n"


def test_large_variables_cross_as_files_into_the_isolated_sandbox(box: LocalSandbox) -> None:
    box.put_variable("big", "0123456789" * 200_000)
    box.put_variable("records", [{"n": i} for i in range(20_000)])
    result = box.execute("len(big), big[-3:], sum(r['n'] for r in records)")
    assert result.ok, result.traceback
    assert result.stdout == "(2000000, '789', 199990000)\n"
