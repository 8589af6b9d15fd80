"""Files of a session workspace, reached only inside it.

A path is relative, without `..`; it is resolved (symbolic links followed) and must stay inside
the workspace. The sandbox's code writes there and may swap a directory for a link at any time,
so the resolved path is then opened one component at a time relative to the workspace's own
descriptor, never following a link: a swap between the check and the open fails instead of
escaping.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from .errors import ApiError
from .schemas import WorkspaceEntry

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ESCAPE = "the path leads outside the session workspace"
# The session service keeps the session's saved python variables here (sessions.py).
PROTECTED = "meta"


def _protected(parts: list[str]) -> bool:
    return bool(parts) and parts[0] == PROTECTED


def _parts(path: str) -> list[str]:
    if "\0" in path:
        raise ApiError(400, "bad_path", "the path contains a NUL character")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise ApiError(400, "bad_path", f"absolute paths are not allowed: {path!r}; give a "
                       "path relative to the workspace")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if ".." in parts:
        raise ApiError(400, "bad_path", f"'..' is not allowed in a workspace path: {path!r}")
    return parts


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _inside(self, parts: list[str], follow_last: bool = True) -> list[str]:
        """The components, relative to the root, of the path with links resolved."""
        if not parts:
            return []
        parent = self.root.joinpath(*parts[:-1]).resolve()
        target = parent / parts[-1]
        if follow_last:
            target = target.resolve()
        if not target.is_relative_to(self.root):
            raise ApiError(403, "forbidden", ESCAPE)
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
        parts = self._inside(_parts(path))
        entries = []
        with self._dir(parts) as fd:
            for entry in os.scandir(fd):
                info = entry.stat(follow_symlinks=False)
                kind = ("symlink" if stat.S_ISLNK(info.st_mode) else "dir"
                        if stat.S_ISDIR(info.st_mode) else "file"
                        if stat.S_ISREG(info.st_mode) else "other")
                entries.append(WorkspaceEntry(
                    name=entry.name, path="/".join([*parts, entry.name]), type=kind,
                    size=info.st_size, modified=datetime.fromtimestamp(info.st_mtime, UTC),
                    protected=_protected([*parts, entry.name])))
        return sorted(entries, key=lambda e: (e.type != "dir", e.name))

    def open_file(self, path: str) -> tuple[int, int]:
        """A read descriptor on the file and its size; the caller closes the descriptor."""
        parts = self._inside(_parts(path))
        if not parts:
            raise ApiError(400, "is_directory", "the path is the workspace directory itself")
        with self._dir(parts[:-1]) as dir_fd:
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError as exc:
                raise _error(exc) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise ApiError(400, "not_a_file", f"{path!r} is not a regular file")
        return fd, info.st_size

    def write(self, path: str, data: bytes) -> int:
        parts = self._inside(_parts(path))
        if not parts:
            raise ApiError(400, "is_directory", "the path is the workspace directory itself")
        with self._dir(parts[:-1], create=True) as dir_fd:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(parts[-1], flags, 0o644, dir_fd=dir_fd)
            except OSError as exc:
                raise _error(exc) from None
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        return len(data)

    def delete(self, path: str) -> None:
        """A file or link (the link itself, wherever it points), or an empty directory."""
        parts = self._inside(_parts(path), follow_last=False)
        if not parts:
            raise ApiError(400, "is_directory", "the workspace directory itself cannot be deleted")
        if _protected(parts):
            raise ApiError(403, "protected", f"{PROTECTED}/ holds the session's saved variables "
                           "and is kept by the service: its files cannot be deleted")
        with self._dir(parts[:-1]) as dir_fd:
            try:
                info = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    os.rmdir(parts[-1], dir_fd=dir_fd)
                else:
                    os.unlink(parts[-1], dir_fd=dir_fd)
            except OSError as exc:
                raise _error(exc) from None


def _error(exc: OSError) -> ApiError:
    if exc.errno == errno.ENOENT:
        return ApiError(404, "not_found", "no such file or directory in the workspace")
    if exc.errno == errno.ELOOP:
        return ApiError(403, "forbidden", f"{ESCAPE} (a symbolic link)")
    if exc.errno == errno.ENOTDIR:
        return ApiError(400, "not_a_directory", "a part of the path is not a directory")
    if exc.errno == errno.EISDIR:
        return ApiError(400, "is_directory", "the path is a directory")
    if exc.errno == errno.ENOTEMPTY:
        return ApiError(409, "conflict", "the directory is not empty")
    return ApiError(400, "bad_path", f"{exc.strerror or exc}")
