"""A session's workspace: the files its sandbox sees at /work (memory/, artifacts/, buffers/,
meta/), listed, read, written and deleted for the REST API and the session service.

One protocol, `Workspace`, with two homes: `LocalWorkspace` here, a directory on this machine
(the local backends), and `DaytonaWorkspace` (sandbox/daytona_workspace.py), the session's
Daytona volume reached through the session's sandbox. Both take the same paths under the same
rules: relative, without `..`; meta/ holds the service's saved variables and its files cannot be
deleted; failures are a `WorkspaceError` whose reason the server turns into a status.

In a local directory the sandbox's code may swap a directory for a link at any time, so a path
is resolved (links followed) and must stay inside the workspace, and is then opened one
component at a time relative to the workspace's own descriptor, never following a link: a swap
between the check and the open fails instead of escaping. The sandbox may also leave a FIFO, a
socket or a huge file where a file was expected: a file is opened without blocking and served
only if it is a regular file within the size cap. The server runs all of this on a pool of its
own with a timeout (`WorkspaceIO`), so a stuck file never holds threads other work needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ESCAPE = "the path leads outside the session workspace"
# The session service keeps the session's saved python variables here (sessions/sandboxes.py).
PROTECTED = "meta"
PROTECTED_MESSAGE = (f"{PROTECTED}/ holds the session's saved variables and is kept by the "
                     "service: its files cannot be deleted")
CHUNK = 1 << 16
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
T = TypeVar("T")

WorkspaceErrorReason = Literal[
    "bad_path", "is_directory", "not_a_file", "not_a_directory",  # the path does not fit
    "not_found", "forbidden", "protected", "conflict", "too_large",
    "no_space",  # the workspace's disk quota (or the disk under it) is full
    "unavailable",  # the workspace cannot be reached (its Daytona sandbox, say)
    "timeout",  # a file operation did not finish in time
]


class WorkspaceError(Exception):
    """A workspace operation refused or failed; `message` is fit for the user."""

    def __init__(self, reason: WorkspaceErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason: WorkspaceErrorReason = reason
        self.message = message


EntryType = Literal["file", "dir", "symlink", "other"]


class WorkspaceEntry(BaseModel):
    name: str
    path: str
    type: EntryType
    size: int
    modified: datetime
    protected: bool = Field(False, description="The service's own files (meta/): not deleted "
                            "over the API.")


class Workspace(Protocol):
    """A session's workspace. Blocking: async callers run these in a thread."""

    def list(self, path: str) -> list[WorkspaceEntry]:
        """A directory's entries, directories first."""
        ...

    def open_file(self, path: str) -> tuple[Iterator[bytes], int]:
        """A regular file's bytes, in chunks, and its size."""
        ...

    def write(self, path: str, data: bytes) -> int:
        """Create or replace a file (and its directories); the bytes written."""
        ...

    def delete(self, path: str) -> None:
        """A file, or an empty directory; never under meta/."""
        ...


def path_parts(path: str) -> list[str]:
    """The components of a workspace path, or a `bad_path` error."""
    if "\0" in path:
        raise WorkspaceError("bad_path", "the path contains a NUL character")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise WorkspaceError("bad_path", f"absolute paths are not allowed: {path!r}; give a "
                             "path relative to the workspace")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if ".." in parts:
        raise WorkspaceError("bad_path", f"'..' is not allowed in a workspace path: {path!r}")
    return parts


def is_protected(parts: list[str]) -> bool:
    return bool(parts) and parts[0] == PROTECTED


def check_deletable(parts: list[str]) -> None:
    if not parts:
        raise WorkspaceError("is_directory", "the workspace directory itself cannot be deleted")
    if is_protected(parts):
        raise WorkspaceError("protected", PROTECTED_MESSAGE)


def not_the_root(parts: list[str]) -> list[str]:
    if not parts:
        raise WorkspaceError("is_directory", "the path is the workspace directory itself")
    return parts


class LocalWorkspace:
    """A workspace that is a directory on this machine."""

    def __init__(self, root: Path, max_file_bytes: int | None = None) -> None:
        self.root = root.resolve()
        self.max_file_bytes = max_file_bytes

    def _inside(self, parts: list[str], follow_last: bool = True) -> list[str]:
        """The components, relative to the root, of the path with links resolved."""
        if not parts:
            return []
        parent = self.root.joinpath(*parts[:-1]).resolve()
        target = parent / parts[-1]
        if follow_last:
            target = target.resolve()
        if not target.is_relative_to(self.root):
            raise WorkspaceError("forbidden", ESCAPE)
        return list(target.relative_to(self.root).parts)

    @contextmanager
    def _dir(self, parts: list[str], create: bool = False) -> Iterator[int]:
        fd = os.open(self.root, DIR_FLAGS)
        try:
            for name in parts:
                try:
                    next_fd = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(name, 0o755, dir_fd=fd)
                    next_fd = os.open(name, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = next_fd
            yield fd
        except OSError as exc:
            raise _error(exc) from None
        finally:
            os.close(fd)

    def list(self, path: str) -> list[WorkspaceEntry]:
        parts = self._inside(path_parts(path))
        entries = []
        with self._dir(parts) as fd:
            for entry in os.scandir(fd):
                info = entry.stat(follow_symlinks=False)
                kind: EntryType = ("symlink" if stat.S_ISLNK(info.st_mode) else "dir"
                        if stat.S_ISDIR(info.st_mode) else "file"
                        if stat.S_ISREG(info.st_mode) else "other")
                entries.append(WorkspaceEntry(
                    name=entry.name, path="/".join([*parts, entry.name]), type=kind,
                    size=info.st_size, modified=datetime.fromtimestamp(info.st_mtime, UTC),
                    protected=is_protected([*parts, entry.name])))
        return sorted(entries, key=lambda e: (e.type != "dir", e.name))

    def open_file(self, path: str) -> tuple[Iterator[bytes], int]:
        parts = not_the_root(self._inside(path_parts(path)))
        with self._dir(parts[:-1]) as dir_fd:
            try:
                # Non-blocking: opening a FIFO with no writer would wait forever.
                fd = os.open(parts[-1], READ_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                raise _error(exc) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise WorkspaceError("not_a_file", f"{path!r} is not a regular file")
        if self.max_file_bytes is not None and info.st_size > self.max_file_bytes:
            os.close(fd)
            raise WorkspaceError("too_large", f"{path!r} is larger than the "
                                 f"{self.max_file_bytes // (1 << 20)} MB limit "
                                 "(FLEET_MAX_WORKSPACE_FILE_MB)")
        # A file object, not the bare descriptor: closed even if nobody reads the chunks.
        return _chunks(os.fdopen(fd, "rb")), info.st_size

    def write(self, path: str, data: bytes) -> int:
        parts = not_the_root(self._inside(path_parts(path)))
        with self._dir(parts[:-1], create=True) as dir_fd:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(parts[-1], flags, 0o644, dir_fd=dir_fd)
            except OSError as exc:
                raise _error(exc) from None
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            except OSError as exc:
                with contextlib.suppress(OSError):  # no half-written file stays behind
                    os.unlink(parts[-1], dir_fd=dir_fd)
                raise _error(exc) from None
        return len(data)

    def delete(self, path: str) -> None:
        """A link is deleted itself, wherever it points."""
        parts = self._inside(path_parts(path), follow_last=False)
        check_deletable(parts)
        with self._dir(parts[:-1]) as dir_fd:
            try:
                info = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    os.rmdir(parts[-1], dir_fd=dir_fd)
                else:
                    os.unlink(parts[-1], dir_fd=dir_fd)
            except OSError as exc:
                raise _error(exc) from None


class WorkspaceIO:
    """Workspace calls for the event loop: on a bounded pool of their own, each with a timeout,
    so files the sandbox made (or a slow remote workspace) never starve the server's other
    work. A call that times out is a `timeout` WorkspaceError; its thread is left to finish."""

    def __init__(self, workers: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="workspace-io")

    async def run(self, call: Callable[..., T], *args: object) -> T:
        work = asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(call, *args))
        try:
            return await asyncio.wait_for(work, self.timeout_s)
        except TimeoutError:
            raise WorkspaceError("timeout", "the workspace did not answer within "
                                 f"{self.timeout_s:g} s") from None

    async def stream(self, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
        """The chunks of `open_file`, each read on the pool."""
        try:
            while (chunk := await self.run(next, chunks, None)) is not None:
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(CHUNK):
            yield chunk


def _error(exc: OSError) -> WorkspaceError:
    if exc.errno == errno.ENOENT:
        return WorkspaceError("not_found", "no such file or directory in the workspace")
    if exc.errno == errno.ELOOP:
        return WorkspaceError("forbidden", f"{ESCAPE} (a symbolic link)")
    if exc.errno == errno.ENOTDIR:
        return WorkspaceError("not_a_directory", "a part of the path is not a directory")
    if exc.errno == errno.EISDIR:
        return WorkspaceError("is_directory", "the path is a directory")
    if exc.errno in (errno.ENXIO, errno.ENODEV):  # a socket, or a device with no driver
        return WorkspaceError("not_a_file", "the path is not a regular file")
    if exc.errno == errno.ENOTEMPTY:
        return WorkspaceError("conflict", "the directory is not empty")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return WorkspaceError("no_space", "the workspace is full: its disk quota "
                              "(FLEET_SANDBOX_DISK_MB, FLEET_SANDBOX_DISK_FILES) is used up")
    return WorkspaceError("bad_path", f"{exc.strerror or exc}")
