"""Real bubblewrap, control groups, loop-mounted quotas and seccomp: the sandbox is contained as
one thing (memory with its tmpfs, disk bytes and files, descriptors, kernel surface)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytest
from sandbox_support import BOTH, MB

from fleet_rlm.config import Settings
from fleet_rlm.sandbox import cgroups, disk


@BOTH
def test_forked_children_share_one_memory_cap(make) -> None:
    box = make(sandbox_memory_mb=256)
    assert box.envelope is not None, "control groups are usable on this host"
    box.execute("kept = 1")
    # Four children of 120 MB each: every one is under the per-process limit, all together
    # are far over the sandbox's 256 MB.
    result = box.execute(
        "import os, time\n"
        "pids = []\n"
        "for _ in range(4):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = b'x' * (120 * 1024 * 1024)\n"
        "        time.sleep(1)\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "print([os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids])", timeout=30)
    assert (result.error_type, result.state_lost) == ("MemoryLimit", True), result
    assert "memory cap of 256 MiB" in result.error_message
    assert "FLEET_SANDBOX_MEMORY_MB" in result.error_message
    # The REPL comes back, empty, and works.
    assert box.execute("'kept' in globals()").stdout == "False\n"
    assert box.execute("len(b'y' * (64 * 1024 * 1024))").stdout == f"{64 * MB}\n"


@BOTH
def test_tmpfs_files_count_in_the_memory_cap(make) -> None:
    box = make(sandbox_memory_mb=320, sandbox_tmp_mb=256)
    # 200 MB of files in /tmp, then 160 MB in the driver: each alone fits, together they do not.
    filled = box.execute("with open('/tmp/fill', 'wb') as f:\n"
                         "    for _ in range(200):\n"
                         "        f.write(b'x' * 1024 * 1024)")
    assert filled.ok, filled
    result = box.execute("block = b'y' * (160 * 1024 * 1024)")
    assert (result.error_type, result.state_lost) == ("MemoryLimit", True), result
    assert box.execute("import os\nos.path.exists('/tmp/fill')").stdout == "False\n"


@BOTH
@pytest.mark.parametrize("mount", ["/tmp", "/dev/shm"])
def test_filling_a_tmpfs_gets_no_space_left(make, mount: str) -> None:
    box = make(sandbox_tmp_mb=48)
    result = box.execute(
        "written = 0\n"
        f"with open('{mount}/fill', 'wb') as f:\n"
        "    while True:\n"
        "        f.write(b'x' * 1024 * 1024)\n"
        "        f.flush()\n"
        "        written += 1\n", timeout=30)
    assert result.error_type == "OSError", result
    assert "[Errno 28] No space left on device" in result.error_message
    assert "FLEET_SANDBOX_TMP_MB" in result.error_message
    assert 40 <= int(box.execute("written").stdout) <= 48
    assert box.alive and not result.state_lost


@BOTH
def test_filling_work_stops_at_its_quota_not_the_host_disk(make, tmp_path: Path) -> None:
    work = tmp_path / "workspace"
    box = make(work_dir=work, sandbox_disk_mb=64)
    assert os.path.ismount(work)
    result = box.execute(
        "written = 0\n"
        "with open('/work/fill', 'wb') as f:\n"
        "    while True:\n"
        "        f.write(b'x' * 1024 * 1024)\n"
        "        f.flush()\n"
        "        written += 1\n", timeout=60)
    assert result.error_type == "OSError", result
    assert "[Errno 28] No space left on device" in result.error_message
    assert "FLEET_SANDBOX_DISK_MB" in result.error_message
    assert 40 <= int(box.execute("written").stdout) <= 64
    # On the host: a sparse image of 64 MB at most, nothing else written.
    image = disk.image_of(work)
    assert image.stat().st_size == 64 * MB
    assert image.stat().st_blocks * 512 <= 64 * MB
    # Freeing space makes room again.
    freed = box.execute("import os\nos.remove('/work/fill')\nopen('/work/ok', 'w').write('x')")
    assert freed.ok, freed


@BOTH
def test_filling_work_with_files_stops_at_its_file_quota(make) -> None:
    box = make(sandbox_disk_mb=64, sandbox_disk_files=2_000)
    result = box.execute(
        "import os\n"
        "os.mkdir('/work/many')\n"
        "made = 0\n"
        "while made < 50_000:\n"
        "    open(f'/work/many/{made}', 'w').close()\n"
        "    made += 1\n", timeout=60)
    assert result.error_type == "OSError", result
    assert "[Errno 28]" in result.error_message
    assert "FLEET_SANDBOX_DISK_FILES" in result.error_message
    made = int(box.execute("made").stdout)
    assert 1_900 <= made <= 4_096  # ext4 rounds the inode count up to whole block groups


@BOTH
def test_work_keeps_its_files_across_sandboxes(make, tmp_path: Path) -> None:
    work = tmp_path / "workspace"
    work.mkdir()
    (work / "before.txt").write_text("from before the quota")
    first = make(work_dir=work)
    assert first.execute("open('/work/notes.txt', 'w').write('kept')").ok
    first.close()
    assert not os.path.ismount(work)  # the sandbox mounted it, so it unmounted it
    second = make(work_dir=work)
    listing = second.execute("import os\nsorted(os.listdir('/work')), open('/work/before.txt')"
                             ".read()")
    assert listing.stdout == "(['before.txt', 'notes.txt'], 'from before the quota')\n"


@BOTH
def test_open_files_are_capped(make) -> None:
    box = make(sandbox_max_open_files=256)
    result = box.execute(
        "import resource\n"
        "handles = []\n"
        "try:\n"
        "    while len(handles) < 100_000:\n"
        "        handles.append(open('/dev/null'))\n"
        "except OSError as exc:\n"
        "    error = str(exc)\n"
        "print(len(handles), error, resource.getrlimit(resource.RLIMIT_NOFILE))\n"
        "for h in handles:\n"
        "    h.close()")
    assert result.ok, result
    count, rest = result.stdout.split(" ", 1)
    assert 200 <= int(count) < 256
    assert "Too many open files" in rest and rest.endswith("(256, 256)\n")
    raised = box.execute("import resource\n"
                         "resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))")
    assert raised.error_type == "ValueError", raised


@BOTH
def test_user_namespaces_and_kernel_surface_are_denied(make) -> None:
    box = make()
    result = box.execute(
        "import ctypes, errno, os, subprocess, threading\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def err(ret):\n"
        "    return errno.errorcode.get(ctypes.get_errno()) if ret == -1 else 'ALLOWED'\n"
        "SIGCHLD, NEWUSER, NEWNS = 17, 0x10000000, 0x20000\n"
        "got = {\n"
        "  'unshare_user': err(libc.unshare(NEWUSER)),\n"
        "  'unshare_mount': err(libc.unshare(NEWNS)),\n"
        "  'clone_user': err(libc.syscall(56, NEWUSER | SIGCHLD, 0, 0, 0, 0)),\n"
        "  'setns': err(libc.setns(0, 0)),\n"
        "  'ptrace': err(libc.ptrace(0, 0, 0, 0)),\n"
        "  'mount': err(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)),\n"
        "  'keyctl': err(libc.syscall(250, 0, 0, 0, 0, 0)),\n"
        "  'bpf': err(libc.syscall(321, 0, 0, 0)),\n"
        "  'perf_event_open': err(libc.syscall(298, 0, 0, -1, -1, 0)),\n"
        "}\n"
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
        "got['threads'] = 'work'\n"
        "got['unshare_tool'] = subprocess.run(['unshare', '-U', 'true'],\n"
        "                                     capture_output=True).returncode\n"
        "got")
    assert result.ok, result
    got = eval(result.stdout)  # noqa: S307 - a dict repr printed by the sandbox
    assert got == {"unshare_user": "EPERM", "unshare_mount": "EPERM", "clone_user": "EPERM",
                   "setns": "EPERM", "ptrace": "EPERM", "mount": "EPERM", "keyctl": "EPERM",
                   "bpf": "EPERM", "perf_event_open": "EPERM", "threads": "work",
                   "unshare_tool": 1}


@BOTH
def test_cpu_use_is_capped(make, backend: str) -> None:
    box = make(sandbox_cpus=0.25)
    assert box.envelope is not None
    version = box.envelope.hierarchy.version
    stat = box.envelope.dirs["unified" if version == "v2" else "cpu"] / "cpu.stat"
    result = box.execute(
        "import os, time\n"
        "pids = []\n"
        "for _ in range(2):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        end = time.monotonic() + 2\n"
        "        while time.monotonic() < end:\n"
        "            pass\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "for pid in pids:\n"
        "    os.waitpid(pid, 0)\n"
        "times = os.times()\n"
        "print(round(times.children_user + times.children_system, 2))", timeout=30)
    assert result.ok, result
    throttled = dict(line.split() for line in stat.read_text().splitlines())["nr_throttled"]
    assert int(throttled) > 0  # the host held it to its quarter core
    if backend == "local":  # gVisor's own clock is not the host's CPU time
        # Two spinning processes for 2 s would use up to 4 CPU-seconds; a quarter core: 0.5.
        assert float(result.stdout) < 0.8


def test_the_envelope_goes_with_the_sandbox(make) -> None:
    box = make()
    assert box.envelope is not None
    dirs = list(box.envelope.dirs.values())
    assert all(d.is_dir() for d in dirs)
    detached = box.execute("import subprocess\n"
                           "subprocess.Popen(['sleep', '60'], start_new_session=True).pid")
    assert detached.ok
    assert len(box.envelope.processes()) >= 3  # bwrap, the driver, sleep
    box.close()
    assert not any(d.exists() for d in dirs)


def test_without_control_groups_the_fallback_is_loud(make, monkeypatch, caplog) -> None:
    def unusable() -> cgroups.Hierarchy:
        raise cgroups.CgroupsUnavailable("no writable memory control group (test)")

    monkeypatch.setattr(cgroups, "hierarchy", unusable)
    monkeypatch.setattr("fleet_rlm.sandbox.containment._warned", set())
    with caplog.at_level(logging.WARNING):
        box = make(sandbox_memory_mb=256)
    assert box.envelope is None
    assert "NO CONTROL GROUPS for sandboxes" in caplog.text
    assert "per-process limits" in caplog.text
    # The per-process limit still holds.
    assert box.execute("block = bytearray(512 * 1024 * 1024)").error_type == "MemoryError"
    started = time.monotonic()
    assert box.execute("6 * 7").stdout == "42\n"
    assert time.monotonic() - started < 5


async def test_a_session_workspace_keeps_its_quota_and_files_across_services(tmp_path) -> None:
    import asyncio

    from fleet_rlm.sessions import SessionService

    settings = Settings(data_dir=tmp_path, sandbox_disk_mb=32)
    svc = SessionService(settings)
    await svc.open()
    session_id = (await svc.create_session()).id
    root = svc.workspace(session_id)
    assert os.path.ismount(root)  # mounted by the service, before any sandbox
    svc.session_workspace(session_id).write("uploads/in.txt", b"uploaded")
    box = await asyncio.to_thread(svc.session_sandbox, session_id)
    seen = await asyncio.to_thread(box.execute, "open('/work/uploads/in.txt').read()")
    assert seen.stdout == "'uploaded'\n"
    full = await asyncio.to_thread(
        box.execute, "open('/work/big', 'wb').write(b'x' * (40 * 1024 * 1024))")
    assert "[Errno 28]" in full.error_message
    await svc.close()
    assert not os.path.ismount(root)

    again = SessionService(settings)
    await again.open()
    try:
        chunks, _ = again.session_workspace(session_id).open_file("uploads/in.txt")
        assert b"".join(chunks) == b"uploaded"
        await again.delete_session(session_id)
        assert not root.exists() and not disk.image_of(root).exists()
    finally:
        await again.close()


def test_a_host_killed_with_sigkill_leaves_nothing_after_the_sweep(tmp_path) -> None:
    import signal
    import subprocess
    import sys

    from fleet_rlm.sandbox.containment import sweep_stale_roots

    script = ("import sys, time\n"
              "from fleet_rlm.config import Settings\n"
              "from fleet_rlm.sandbox.local import LocalSandbox\n"
              "box = LocalSandbox(Settings())\n"
              "box.start()\n"
              "print(box._root, flush=True)\n"
              "time.sleep(60)\n")
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    root = Path(host.stdout.readline().strip())
    name = root.name
    groups = [parent / name for parent in cgroups.hierarchy().parents.values()]
    assert all(g.is_dir() for g in groups) and os.path.ismount(root / "work")
    host.send_signal(signal.SIGKILL)
    host.wait()
    deadline = time.monotonic() + 10  # bwrap dies with its parent; the kernel reaps the rest
    while any((g / "cgroup.procs").read_text().strip() for g in groups):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert sweep_stale_roots(tmp_path) == [root]
    assert not root.exists()
    assert not any(g.exists() for g in groups)
    assert str(root) not in Path("/proc/self/mountinfo").read_text()


@pytest.mark.skipif(shutil.which("runsc") is None, reason="gVisor's runsc is not installed")
@pytest.mark.parametrize("backend", ["gvisor"])
def test_gvisor_hides_the_host_caps_processes_and_times_out(make, monkeypatch) -> None:
    monkeypatch.setenv("FLEET_FAKE_API_KEY", "sk-fleet-test-fake-secret-4b1d")
    box = make(sandbox_max_processes=32)
    seen = box.execute(
        "import os, socket\n"
        "hidden = [p for p in ('/etc/shadow', '/etc/passwd', '/root', '/home')\n"
        "          if not os.path.exists(p)]\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), 2)\n"
        "    net = 'reached'\n"
        "except OSError as exc:\n"
        "    net = type(exc).__name__\n"
        "print(os.getuid() >= 200_000, hidden, net, sorted(os.environ))")
    assert seen.stdout == ("True ['/etc/shadow', '/etc/passwd', '/root', '/home'] OSError "
                           "['HOME', 'LANG', 'MALLOC_ARENA_MAX', 'PATH', "
                           "'PYTHONDONTWRITEBYTECODE', 'PYTHONIOENCODING']\n"), seen
    forks = box.execute(
        "import time\n"
        "children, error = [], None\n"
        "for _ in range(1000):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError as exc:\n"
        "        error = type(exc).__name__\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    children.append(pid)\n"
        "print(len(children), error)", timeout=60)
    count, error = forks.stdout.split()
    assert int(count) <= 32 and error == "BlockingIOError"
    box.execute("kept = 1")
    spin = box.execute("while True: pass", timeout=1)
    assert (spin.timed_out, spin.state_lost) == (True, False)
    assert box.execute("kept").stdout == "1\n"


async def test_the_service_says_at_start_what_the_host_cannot_give(tmp_path, monkeypatch,
                                                                   caplog) -> None:
    from fleet_rlm.sessions import SessionService

    def unusable() -> cgroups.Hierarchy:
        raise cgroups.CgroupsUnavailable("no writable memory control group (test)")

    monkeypatch.setattr(cgroups, "hierarchy", unusable)
    monkeypatch.setattr("fleet_rlm.sandbox.containment._warned", set())
    svc = SessionService(Settings(data_dir=tmp_path))
    with caplog.at_level(logging.WARNING):
        await svc.open()
    try:
        assert "NO CONTROL GROUPS for sandboxes: no writable memory control group" in caplog.text
        assert "per-process limits" in caplog.text
        assert svc.sandboxes.sandboxes == {}  # said before any sandbox started
    finally:
        await svc.close()


@BOTH
def test_nothing_a_cell_started_is_running_inside_after_it(make) -> None:
    """Seen from inside, after a cell that left a busy child, a grandchild and a thread: only
    the supervisor (the namespace's init) and the worker remain. gVisor keeps no per-thread
    child lists, so this holds there only through the init's view of the whole namespace."""
    box = make()
    started = box.execute(
        "import os, subprocess, sys, threading, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
        "time.sleep(0.3)\n"
        "print(len([p for p in os.listdir('/proc') if p.isdigit()]))", timeout=20)
    assert started.error_type is None, started
    assert int(started.stdout) >= 4  # the work really ran
    after = box.execute(
        "import os\n"
        "def state(pid):\n"
        "    try:\n"
        "        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0]\n"
        "    except OSError:\n"
        "        return None\n"
        "live = [p for p in os.listdir('/proc') if p.isdigit() and state(p) not in ('Z', None)]\n"
        "print(sorted(map(int, live))[0], len(live), len(os.listdir(f'/proc/{os.getpid()}/task')))")
    assert after.error_type is None, after
    init, live, threads = map(int, after.stdout.split())
    assert (init, live) == (1, 2), after.stdout
    assert threads <= 2


def test_an_envelope_removed_while_its_kills_are_read_answers_none() -> None:
    """A sandbox closed (a stop, Ctrl-C) while its last execution is read for memory kills:
    the read never reaches a descriptor the number of which something else took since."""
    import uuid

    envelope = cgroups.Envelope(f"fleet-test-{uuid.uuid4().hex[:8]}")
    assert envelope.oom_kills() == 0
    envelope.remove()
    read, write = os.pipe()  # most likely the number the envelope's descriptor had
    try:
        assert envelope.oom_kills() == 0
    finally:
        os.close(read)
        os.close(write)
