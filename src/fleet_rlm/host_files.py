"""Files of this machine that a tool reads for a caller (MCP `rlm_query(paths=...)`): only under
the configured roots, only regular files, and never through a link that leads out of them.

The check is made on what was opened, not on the name: the file is opened without following a
final symlink, and the path the kernel reports for the open descriptor must lie under a root, so
a link swapped in between a check and the open cannot lead anywhere else.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from .documents import DocumentError


def resolve_roots(roots: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The roots as real absolute directories (a root that is no directory is an error)."""
    resolved = []
    for root in roots:
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"the root {root} is not a directory")
        resolved.append(path)
    return resolved


def _refused(shown: str, why: str, roots: list[Path]) -> DocumentError:
    allowed = ", ".join(map(str, roots)) or "none are configured (FLEET_MCP_ROOTS)"
    return DocumentError(f"refused to read {shown}: {why}; readable roots: {allowed}",
                         "outside_roots", name=Path(shown).name)


def read_under_roots(path: str, roots: list[Path], max_bytes: int) -> tuple[str, bytes]:
    """The name and bytes (at most `max_bytes` + 1, so the parser can tell it is too large) of
    the file at `path` (relative paths: from the first root), if it is a regular file under one
    of `roots` (see `resolve_roots`); DocumentError with a clear message if not. The bytes are
    parsed, like uploads, in the bounded parser process (extraction.py)."""
    if not roots:
        raise _refused(path, "this server reads no files", roots)
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    real = Path(os.path.realpath(candidate))
    if not any(real.is_relative_to(root) for root in roots):
        raise _refused(path, "it is outside the roots (links are followed to where they lead)",
                       roots)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DocumentError(f"no such file: {path}", "not_found", name=real.name) from None
    except OSError as exc:  # ELOOP: a link swapped in after the check
        raise _refused(path, f"it cannot be opened as a file ({exc.strerror})", roots) from None
    try:
        info = os.fstat(fd)
        opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not any(opened.is_relative_to(root) for root in roots):
            raise _refused(path, "it is outside the roots", roots)
        if stat.S_ISDIR(info.st_mode):
            raise DocumentError(f"{path} is a directory; give the files in it one by one",
                                "is_directory", name=real.name)
        if not stat.S_ISREG(info.st_mode):
            raise _refused(path, "it is not a regular file", roots)
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(max_bytes + 1)
    finally:
        os.close(fd)
    return real.name, data
