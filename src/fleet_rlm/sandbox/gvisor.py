"""gVisor backend (FLEET_SANDBOX=gvisor): the same driver under gVisor's user-space kernel.

`runsc run` on an OCI bundle made per start: a read-only empty root with the Python runtime,
the driver and its variables bound read-only, /work (the workspace, with its disk quota) bound
writable, /tmp and /dev/shm sized tmpfs, no network, the sandbox's own uid, RLIMIT_NOFILE and
the same seccomp rules (applied by gVisor's kernel to the driver). Everything else -- the
control group, the disk quota, restarts, timeouts, the protocol -- is the local backend's:
runsc and its sandbox and gofer processes start inside the sandbox's control group (runsc
itself is told to leave cgroups alone), so the caps cover gVisor's own memory too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .base import SandboxError
from .local import (
    INSIDE_DRIVER,
    INSIDE_VARS,
    INSIDE_WORK,
    UID_BASE,
    LocalSandbox,
)
from .seccomp import (
    CLONE_NAMESPACE_FLAGS,
    DENIED,
    REFUSED_SOCKET_FAMILIES,
    SOCKET_FAMILY_ABOVE,
)

FIX_RUNSC = (
    "gVisor's runsc is needed for FLEET_SANDBOX=gvisor: `apt-get install -y runsc` "
    "(Debian/Ubuntu) or see gvisor.dev/docs/user_guide/install. It runs as root here; as "
    "another user it is started with --rootless. FLEET_SANDBOX=local uses bubblewrap instead."
)
EPERM, EAFNOSUPPORT = 1, 97


class GVisorSandbox(LocalSandbox):
    """A LocalSandbox whose driver runs under `runsc run` instead of bubblewrap."""

    fix_hint = FIX_RUNSC
    runtime_nofile = False  # gVisor's gofer holds a host descriptor per open file: the cap is
    # set inside, in the bundle
    follow_cpu = False  # the processes inside are the runtime's threads, not this host's

    def _host_pids(self) -> int:
        # Every process in gVisor is several on the host (its ptrace stub and the runtime's
        # threads): the host cap leaves room for those; RLIMIT_NPROC inside counts processes.
        return self.settings.sandbox_max_processes * 8 + 128

    def _isolated_command(self, python: str, as_root: bool,
                          driver_args: list[str]) -> tuple[list[str], list[int]]:
        assert self._root is not None
        runsc = shutil.which("runsc")
        if runsc is None:
            raise SandboxError(f"runsc is not installed. {FIX_RUNSC}")
        bundle = self._root / "bundle"
        (bundle / "rootfs").mkdir(parents=True, exist_ok=True)
        assert self.uid is not None or not as_root  # a root start gives the sandbox its uid
        uid = self.uid if self.uid is not None and as_root else UID_BASE
        spec = self._spec(python, uid, driver_args)
        (bundle / "config.json").write_text(json.dumps(spec))
        state = self._root / "runsc-state"
        state.mkdir(exist_ok=True)
        name = f"{self._root.name}-{os.urandom(3).hex()}"  # a fresh container per (re)start
        flags = ["--root", str(state), "--network=none", "--ignore-cgroups", "--oci-seccomp"]
        if not as_root:
            flags.append("--rootless")
        return [runsc, *flags, "run", "--bundle", str(bundle), name], []

    def _spec(self, python: str, uid: int, driver_args: list[str]) -> dict:
        assert self._root is not None and self.work_dir is not None
        s = self.settings
        tmpfs = ["nosuid", "nodev", "mode=1777", f"size={s.sandbox_tmp_mb}m"]
        mounts = [{"destination": "/proc", "type": "proc", "source": "proc"},
                  {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": tmpfs},
                  {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": tmpfs},
                  _bind(self.work_dir, INSIDE_WORK, writable=True),
                  _bind(self._root / "vars", INSIDE_VARS),
                  _bind(self._root / "driver.py", INSIDE_DRIVER)]
        for top in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
            if os.path.isdir(top):  # a symlink (usr-merged) is bound to what it points to
                mounts.append(_bind(Path(top).resolve(), top))
        prefix = Path(python).resolve().parent.parent
        if not str(prefix).startswith("/usr"):
            mounts.append(_bind(prefix, str(prefix)))
        nofile = s.sandbox_max_open_files
        return {
            "ociVersion": "1.0.0",
            "process": {
                "terminal": False, "user": {"uid": uid, "gid": uid},
                "args": [python, "-I", INSIDE_DRIVER, *driver_args],
                # Under gVisor the address space each thread's malloc arena reserves counts in
                # RLIMIT_AS: with glibc's default, twenty threads exhaust a 1 GiB sandbox.
                "env": ["HOME=/work", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
                        "PYTHONIOENCODING=utf-8", "PYTHONDONTWRITEBYTECODE=1",
                        "MALLOC_ARENA_MAX=2"],
                "cwd": INSIDE_WORK, "noNewPrivileges": True,
                "capabilities": {k: [] for k in ("bounding", "effective", "inheritable",
                                                 "permitted", "ambient")},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            },
            "root": {"path": "rootfs", "readonly": True},
            "hostname": "sandbox",
            "mounts": mounts,
            "linux": {
                "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                "seccomp": _oci_seccomp(),
            },
        }


def _bind(source: Path, destination: str, writable: bool = False) -> dict:
    return {"destination": destination, "type": "bind", "source": str(source),
            "options": ["rbind", "rw" if writable else "ro", "nosuid", "nodev"]}


def _oci_seccomp() -> dict:
    """The local backend's rules in the OCI runtime spec's form."""
    deny = {"action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}
    rules = [{**deny, "names": list(DENIED)}]
    rules += [{**deny, "names": ["clone"],
               "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]}
              for flag in CLONE_NAMESPACE_FLAGS]
    no_family = {"action": "SCMP_ACT_ERRNO", "errnoRet": EAFNOSUPPORT, "names": ["socket"]}
    rules += [{**no_family, "args": [{"index": 0, "value": family, "op": "SCMP_CMP_EQ"}]}
              for family in REFUSED_SOCKET_FAMILIES]
    rules.append({**no_family, "args": [{"index": 0, "value": SOCKET_FAMILY_ABOVE,
                                         "op": "SCMP_CMP_GT"}]})
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
