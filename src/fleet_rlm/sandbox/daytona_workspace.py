"""A session's workspace on Daytona: its volume, reached through the session's sandbox (which
mounts it at /work) with the SDK's file-system calls, under the same path rules as a local
workspace (fleet_rlm.workspace).

A Daytona volume has no file API of its own, so browsing a session that has no sandbox yet
starts one. The volume is an S3 bucket under a FUSE mount, which holds no symbolic links: the
toolbox follows links, but there are none on /work to lead anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from ..workspace import (
    EntryType,
    WorkspaceEntry,
    WorkspaceError,
    WorkspaceErrorReason,
    check_deletable,
    is_protected,
    not_the_root,
    path_parts,
)
from .base import SandboxError
from .daytona import DaytonaSandbox
from .daytona_admin import WORK_DIR, explain
from .daytona_admin import retrying as _retrying
from .daytona_admin import sdk as _sdk

T = TypeVar("T")


class DaytonaWorkspace:
    """The workspace of the session whose sandbox `sandbox()` gives (see the module docstring).
    """

    def __init__(self, sandbox: Callable[[], DaytonaSandbox]) -> None:
        self._sandbox = sandbox

    def _call(self, action: str, steps: Callable[[Any], T],
              bad_request: WorkspaceErrorReason = "bad_path") -> T:
        """`steps(fs)` on the file system of the session's started sandbox, sent again after a
        rate limit (nothing reached the sandbox); the toolbox's 400 becomes `bad_request`."""
        sdk = _sdk()
        try:
            box = self._sandbox()
            fs = box.files()
            return _retrying(lambda: steps(fs))
        except SandboxError as exc:
            raise WorkspaceError("unavailable", str(exc)) from None
        except sdk.DaytonaError as exc:
            status = exc.status_code
            if status == 404:
                raise WorkspaceError("not_found", "no such file or directory in the "
                                     "workspace") from None
            if status == 403:
                raise WorkspaceError("forbidden", f"the sandbox refused to {action}") from None
            if status == 400:
                raise WorkspaceError(bad_request, f"could not {action}: {exc.message}") from None
            raise WorkspaceError("unavailable",
                                 str(explain(exc, box.settings, action))) from None

    def list(self, path: str) -> list[WorkspaceEntry]:
        parts = path_parts(path)
        infos = self._call(f"list {path or 'the workspace'}",
                           lambda fs: fs.list_files(_remote(parts)), "not_a_directory")
        entries = [WorkspaceEntry(
            name=info.name, path="/".join([*parts, info.name]), type=_kind(info),
            size=info.size, modified=datetime.fromisoformat(info.modified_at or info.mod_time),
            protected=is_protected([*parts, info.name])) for info in infos]
        return sorted(entries, key=lambda e: (e.type != "dir", e.name))

    def open_file(self, path: str) -> tuple[Iterator[bytes], int]:
        remote = _remote(not_the_root(path_parts(path)))

        def start(fs: Any) -> tuple[Iterator[bytes], int]:
            info = fs.get_file_info(remote)
            if _kind(info) != "file":
                raise WorkspaceError("not_a_file", f"{path!r} is not a regular file")
            return fs.download_file_stream(remote), info.size  # read as it is sent

        return self._call(f"read {path}", start)

    def write(self, path: str, data: bytes) -> int:
        remote = _remote(not_the_root(path_parts(path)))
        self._call(f"write {path}", lambda fs: fs.upload_file(data, remote))
        return len(data)

    def delete(self, path: str) -> None:
        parts = path_parts(path)
        check_deletable(parts)
        remote = _remote(parts)

        def delete(fs: Any) -> None:
            info = fs.get_file_info(remote)
            # The toolbox deletes a directory only with all it holds: refuse one not empty.
            if info.is_dir and fs.list_files(remote):
                raise WorkspaceError("conflict", "the directory is not empty")
            fs.delete_file(remote, recursive=info.is_dir)

        self._call(f"delete {path}", delete)


def _remote(parts: list[str]) -> str:
    return "/".join([WORK_DIR, *parts])


def _kind(info: Any) -> EntryType:
    """From the mode as Go prints it: -rw-r--r--, drwxr-xr-x, Lrwxrwxrwx, ..."""
    if info.is_dir:
        return "dir"
    kinds: dict[str, EntryType] = {"-": "file", "L": "symlink"}
    return kinds.get(info.mode[:1], "other")
