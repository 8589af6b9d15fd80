"""A workspace's disk quota: /work is an ext4 filesystem image of its own, loop-mounted on the
host at the workspace directory.

The image (`<workspace>.ext4`, beside the directory) is a sparse file created with a fixed size
and a fixed number of inodes, so a sandbox that fills /work gets ENOSPC from its own filesystem
and the host disk holds at most that many bytes for it. The image outlives the mount: a
session's workspace keeps its files across sandbox restarts and server restarts, and the host
sees them (the REST routes, the session service) through the same mounted directory. Mounting
needs root; elsewhere the workspace is a plain directory and `QuotaUnavailable` says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

IMAGE_SUFFIX = ".ext4"
_mounting = threading.Lock()  # a turn and a workspace route may ask for one workspace at once
MOUNT_OPTIONS = "loop,nosuid,nodev,noatime"


class QuotaUnavailable(Exception):
    """The workspace cannot get a quota here (no root, no loop devices, no mkfs.ext4)."""


def image_of(work_dir: Path) -> Path:
    return work_dir.with_name(work_dir.name + IMAGE_SUFFIX)


def quota_unavailable_reason() -> str | None:
    """Why disk quotas cannot work on this host, or None when they can."""
    if os.geteuid() != 0:
        return "loop-mounting a workspace image needs root; the host does not run as root"
    if not os.path.exists("/dev/loop-control"):
        return "the kernel offers no loop devices (/dev/loop-control is missing)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin") is None:
            return f"{tool} is not installed (Debian: e2fsprogs, mount)"
    return None


def mount_workspace(work_dir: Path, size_mb: int, files: int) -> bool:
    """Mount the workspace's image at `work_dir` (making the image, with what the directory
    already holds, on first use). True when this call mounted it, False when it already was.
    Raises QuotaUnavailable when the host cannot."""
    if os.path.ismount(work_dir):
        return False
    if reason := quota_unavailable_reason():
        raise QuotaUnavailable(reason)
    with _mounting:
        return not os.path.ismount(work_dir) and _mount_new_or_old(work_dir, size_mb, files)


def _mount_new_or_old(work_dir: Path, size_mb: int, files: int) -> bool:
    work_dir.mkdir(parents=True, exist_ok=True)
    image = image_of(work_dir)
    if not image.exists():
        _make_image(image, size_mb, files)
        if any(work_dir.iterdir()):  # files from before the quota: carried into the image
            before = work_dir.with_name(work_dir.name + ".before-quota")
            work_dir.rename(before)
            work_dir.mkdir()
            _mount(image, work_dir)
            shutil.copytree(before, work_dir, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(before)
            return True
    _mount(image, work_dir)
    return True


def unmount_workspace(work_dir: Path) -> None:
    """Unmount the workspace's image; its files stay in the image for the next mount."""
    if os.path.ismount(work_dir):
        # Lazy: a host thread still reading a file must not keep the loop device forever.
        _run(["umount", "--lazy", str(work_dir)])


def remove_workspace(work_dir: Path) -> None:
    """Unmount, then delete the directory and its image."""
    unmount_workspace(work_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    image_of(work_dir).unlink(missing_ok=True)


def _make_image(image: Path, size_mb: int, files: int) -> None:
    partial = image.with_name(image.name + ".new")
    with open(partial, "wb") as handle:
        handle.truncate(size_mb * 1024 * 1024)  # sparse: host blocks are used as files land
    # -m 0: no blocks reserved for root; lazy init: only metadata is written now.
    _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-N", str(files), "-L", "fleet-work",
          "-E", "lazy_itable_init=1,lazy_journal_init=1", str(partial)])
    partial.rename(image)


def _mount(image: Path, work_dir: Path) -> None:
    _run(["mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(work_dir)])
    lost = work_dir / "lost+found"
    if lost.is_dir() and not any(lost.iterdir()):
        lost.rmdir()  # e2fsck makes it again when it needs one; /work starts empty


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin", "LANG": "C"})
    if done.returncode != 0:
        raise QuotaUnavailable(f"`{' '.join(command)}` failed: {done.stderr.strip()}")
