"""The sandbox's seccomp filter: kernel surface no Python workload needs, denied with EPERM.

Built with libseccomp (through pyseccomp, a ctypes binding with libseccomp's own API) and
handed to bubblewrap as compiled BPF on a descriptor (`--seccomp FD`); bubblewrap installs it
just before it runs the driver, so it binds every process of the sandbox. System calls of other
architectures (32-bit calls from a 64-bit process) are killed by libseccomp's default.
"""

from __future__ import annotations

import errno
import functools
import os

# Namespace creation, by any door: unshare/setns outright, clone with a CLONE_NEW* flag
# (CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET), and clone3,
# whose flags sit in memory a filter cannot read: it answers ENOSYS, so libc falls back to clone.
CLONE_NAMESPACE_FLAGS = (0x80, 0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000,
                         0x20000000, 0x40000000)
DENIED = (
    "unshare", "setns",
    # other processes' memory and the kernel's process comparisons
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # filesystems
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
    "quotactl", "quotactl_fd", "swapon", "swapoff", "fanotify_init",
    # keyrings, eBPF, perf, userfaultfd, io_uring: large kernel surfaces
    "add_key", "request_key", "keyctl", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # the machine itself
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "acct", "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "iopl", "ioperm", "vhangup", "lookup_dcookie", "uselib",
    "personality",
)
TIOCSTI = 0x5412  # push characters into a terminal's input


@functools.cache
def filter_bpf() -> bytes:
    """The compiled filter (built once per process)."""
    import pyseccomp as sc  # libseccomp is loaded on first use, not at import of the package

    rules = sc.SyscallFilter(sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in DENIED:
        rules.add_rule(deny, name)
    for flag in CLONE_NAMESPACE_FLAGS:
        rules.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    rules.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    fd = os.memfd_create("fleet-seccomp-build")
    try:
        with open(fd, "wb", closefd=False) as handle:
            rules.export_bpf(handle)
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


def filter_fd() -> int:
    """A fresh descriptor holding the compiled filter at offset 0, for `bwrap --seccomp`.
    The caller passes it to the sandbox process and closes it."""
    fd = os.memfd_create("fleet-seccomp", os.MFD_CLOEXEC)
    os.write(fd, filter_bpf())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
