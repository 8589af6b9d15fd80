"""Attacks on a sandbox's envelope by the code inside it (and by a host that crashed), each one a
way through that was found open: real bubblewrap, control groups, loop-mounted images, seccomp."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_support import BOTH, MB

from fleet_rlm.config import Settings
from fleet_rlm.sandbox import SandboxError, disk
from fleet_rlm.sandbox.containment import MemoryLimit, sweep_stale_roots


@pytest.fixture(autouse=True)
def _nothing_left_mounted(tmp_path: Path) -> Iterator[None]:
    yield
    disk.unmount_under(tmp_path)  # a test that failed half-way leaves no mount to the machine


@BOTH
def test_socket_families_past_the_network_namespace_are_refused(make) -> None:
    # vsock is not in any network namespace: on a virtual machine it reaches the hypervisor's
    # host. The kernel reads the family as an int, so high bits must not smuggle one through.
    result = make().execute(
        "import ctypes, errno, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\n"
        "def family(number):\n"
        "    try:\n"
        "        socket.socket(number, socket.SOCK_DGRAM if number == 16 else 1).close()\n"
        "        return 'ALLOWED'\n"
        "    except OSError as exc:\n"
        "        return errno.errorcode[exc.errno]\n"
        "got = {name: family(number) for name, number in\n"
        "       [('vsock', 40), ('unix', 1), ('inet', 2), ('inet6', 10), ('netlink', 16)]}\n"
        "raw = libc.syscall(41, ctypes.c_long((1 << 32) | 40), 1, 0)\n"
        "got['vsock_high_bits'] = 'ALLOWED' if raw >= 0 else errno.errorcode[ctypes.get_errno()]\n"
        "got")
    got = eval(result.stdout)  # noqa: S307 - a dict repr printed by the sandbox
    assert got.pop("vsock") in ("EAFNOSUPPORT", "EPERM"), result
    assert got.pop("vsock_high_bits") in ("EAFNOSUPPORT", "EPERM"), result
    assert got == {"unix": "ALLOWED", "inet": "ALLOWED", "inet6": "ALLOWED",
                   "netlink": "ALLOWED"}


def test_memfd_secret_is_denied(make) -> None:
    # Secret memory is taken out of the kernel's direct map: no Python workload needs it.
    result = make().execute(
        "import ctypes, errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "ret = libc.syscall(447, 0)\n"
        "'ALLOWED' if ret >= 0 else errno.errorcode[ctypes.get_errno()]")
    assert result.stdout == "'EPERM'\n", result


def test_a_system_call_of_another_architecture_stops_the_sandbox_at_once(make) -> None:
    box = make()
    box.execute("kept = 1")
    # A 32-bit getpid through int 0x80, from machine code in an executable page.
    started = time.monotonic()
    result = box.execute(
        "import ctypes, mmap\n"
        "page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "page.write(bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3]))\n"
        "address = ctypes.addressof(ctypes.c_char.from_buffer(page))\n"
        "ctypes.CFUNCTYPE(ctypes.c_int)(address)()", timeout=30)
    # Killing only the calling thread left the driver waiting for its cell until the timeout.
    assert time.monotonic() - started < 10
    assert (result.error_type, result.state_lost) == ("SandboxDied", True), result
    assert box.execute("'kept' in globals()").stdout == "False\n"


@BOTH
def test_a_deep_tree_in_work_does_not_stop_later_starts(make, tmp_path: Path) -> None:
    work = tmp_path / "workspace"
    depth = 2_200  # deeper than Python's recursion limit, and longer than PATH_MAX
    first = make(work_dir=work)
    made = first.execute(
        "import os\n"
        "os.chdir('/work')\n"
        f"for _ in range({depth}):\n"
        "    os.mkdir('a')\n"
        "    os.chdir('a')\n"
        "os.symlink('/etc', '/work/etc')\n"
        "len(os.getcwd())")
    assert int(made.stdout) > 4096, made
    first.close()
    second = make(work_dir=work)  # a later start gives the whole tree to the new uid
    deepest = second.execute(
        "import os\n"
        "os.chdir('/work')\n"
        f"for _ in range({depth}):\n"
        "    os.chdir('a')\n"
        "open('written', 'w').write('x')\n"
        "os.stat('written').st_uid == os.getuid()")
    assert deepest.stdout == "True\n", deepest
    assert os.stat("/etc").st_uid == 0  # the link was changed, not what it points to


@BOTH
def test_a_lost_found_of_the_sandboxs_making_does_not_stop_later_starts(make,
                                                                         tmp_path: Path) -> None:
    work = tmp_path / "workspace"
    first = make(work_dir=work)
    made = first.execute("import os\nos.mkdir('/work/empty')\nos.symlink('empty', "
                         "'/work/lost+found')")
    assert made.ok, made
    first.close()
    second = make(work_dir=work)
    assert second.execute("import os\nos.readlink('/work/lost+found')").stdout == "'empty'\n"
    second.close()
    assert not os.path.ismount(work)  # nothing left mounted on the way


def test_an_image_that_will_not_mount_stops_the_start_not_the_quota(make,
                                                                    tmp_path: Path) -> None:
    work = tmp_path / "workspace"
    first = make(work_dir=work, sandbox_disk_mb=32)
    assert first.execute("open('/work/kept', 'w').write('x')").ok
    first.close()
    with open(disk.image_of(work), "r+b") as image:  # the ext4 superblock, lost
        image.seek(1024)
        image.write(bytes(4096))
    second = make(work_dir=work, start=False, sandbox_disk_mb=32)
    with pytest.raises(SandboxError, match="e2fsck -f") as failed:
        second.start()
    assert str(disk.image_of(work)) in str(failed.value)
    # It never ran on the bare directory beneath the mount point, where it could fill the disk.
    assert not os.path.ismount(work) and list(work.iterdir()) == []
    assert second.envelope is None


@pytest.mark.parametrize("operation", ["put", "get"])
def test_a_memory_kill_while_a_variable_crosses_is_a_memory_limit(make, operation: str) -> None:
    box = make(sandbox_memory_mb=256, sandbox_tmp_mb=220)
    # /tmp's files count in the cap: with 200 MiB of them, a value of tens of MiB in the driver
    # crosses it (under its own per-process limit), and the kernel kills. (Bytes leave as text:
    # one copy of them is made on the way out.)
    filled = box.execute("with open('/tmp/fill', 'wb') as f:\n"
                         "    for _ in range(200):\n"
                         "        f.write(b'x' * 1024 * 1024)\n"
                         "grown = b'y' * (30 * 1024 * 1024)")
    assert filled.ok, filled
    with pytest.raises(MemoryLimit) as killed:
        if operation == "put":
            # Not ASCII: an ASCII text would be laid over the host's pages of its file
            # (driver.mapped_ascii), costing the sandbox's memory nothing.
            box.put_variable("big", "\u00e9" * (60 * MB))
        else:
            box.get_variable("grown")
    assert isinstance(killed.value, SandboxError)
    assert killed.value.cap_mb == 256
    assert "memory cap of 256 MiB" in str(killed.value) and "FLEET_SANDBOX_MEMORY_MB" in str(
        killed.value)
    assert box.execute("import os\nos.path.exists('/tmp/fill')").stdout == "False\n"


def _host_killed_with_sigkill(tmp_path: Path, script: str) -> str:
    """Run `script` as a host process until it prints a line, kill it with SIGKILL, wait for
    its sandboxes to go; the line."""
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    line = host.stdout.readline().strip()
    host.send_signal(signal.SIGKILL)
    host.wait()
    return line


def test_a_sandbox_mounted_work_dir_is_unmounted_by_the_sweep(tmp_path: Path) -> None:
    work = tmp_path / "agent-workspace"  # a work dir of its own, outside the sandbox's directory
    line = _host_killed_with_sigkill(tmp_path, (
        "import time\n"
        "from pathlib import Path\n"
        "from fleet_rlm.config import Settings\n"
        "from fleet_rlm.sandbox.local import LocalSandbox\n"
        f"box = LocalSandbox(Settings(), work_dir=Path({str(work)!r}))\n"
        "box.start()\n"
        "print(box._root, flush=True)\n"
        "time.sleep(60)\n"))
    assert os.path.ismount(work)
    assert sweep_stale_roots(tmp_path) == [Path(line)]
    assert not os.path.ismount(work)
    disk.remove_workspace(work)


async def test_a_session_workspace_left_mounted_by_a_crash_is_unmounted_at_start(
        tmp_path: Path) -> None:
    from fleet_rlm.sessions import SessionService

    data = tmp_path / "data"
    line = _host_killed_with_sigkill(tmp_path, (
        "import asyncio, time\n"
        "from pathlib import Path\n"
        "from fleet_rlm.config import Settings\n"
        "from fleet_rlm.sessions import SessionService\n"
        "async def main():\n"
        f"    svc = SessionService(Settings(data_dir=Path({str(data)!r}), sandbox_disk_mb=32))\n"
        "    await svc.open()\n"
        "    session = await svc.create_session()\n"
        "    svc.session_workspace(session.id).write('notes.txt', b'kept')\n"
        "    print(session.id, flush=True)\n"
        "    time.sleep(60)\n"
        "asyncio.run(main())\n"))
    root = data / "workspaces" / line
    assert os.path.ismount(root)
    svc = SessionService(Settings(data_dir=data, sandbox_disk_mb=32))
    await svc.open()
    try:
        assert not os.path.ismount(root)
        chunks, _ = svc.session_workspace(line).open_file("notes.txt")  # mounted again, by it
        assert b"".join(chunks) == b"kept"
    finally:
        await svc.close()
    assert not os.path.ismount(root)
    disk.remove_workspace(root)
