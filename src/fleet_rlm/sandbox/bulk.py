"""Large values cross between host and sandbox as files, not through the driver's pipes.

Into the sandbox (the inbox): the host writes a value to a file of a directory the sandbox sees
read-only, a slice at a time (`write_text`, in `value_file`'s layout), and a set_var request
names it; the driver reads it once and keeps the value. A large text input is kept there for the
sandbox's life, so that the host may link it into another sandbox (shared.py).

Out of the sandbox (the outbox, `Outbox`): the driver writes a large callback argument, SUBMIT
value or get_var value to a file of OUTBOX, a directory under its working directory (so under
the workspace's own disk quota), and its frame names the file instead of holding the value
(driver.py, "Large values leave as files").

The outbox is written by hostile code, so a name is only ever a plain file name the driver
could have made (`value_file_name`), opened relative to a descriptor of the workspace the host
opened itself, never following a link (O_NOFOLLOW on the directory and on the file), without
blocking (O_NONBLOCK: a FIFO cannot stall the host), and read only when it is a regular file
with one link, of at most the host's cap in bytes. Anything else is refused with the reason
(`RefusedFile`) and nothing of it is read.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator

from .driver import BULK_FIELDS, CHUNK, TEXT_AT, value_file_name

OUTBOX = ".fleet-out"  # under the sandbox's working directory (the workspace)
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class RefusedFile(ValueError):
    """A value file the host will not read: the reason is the message."""


def text_chunks(text: str) -> Iterator[bytes]:
    """`text` as UTF-8 (a lone surrogate passes as itself), a slice at a time: a large value
    is never held twice."""
    for start in range(0, len(text), CHUNK):
        yield text[start:start + CHUNK].encode("utf-8", "surrogatepass")


def value_file(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of a value file: TEXT_AT bytes of room, the value, one byte more. Every value
    file the host writes has this layout (the driver reads the value between them): an ASCII
    text then becomes a str laid over the file's pages in place (driver.mapped_ascii), shared
    by every sandbox the file is linked into."""
    yield bytes(TEXT_AT)
    yield from chunks
    yield b"\0"


def write_text(path: str | os.PathLike[str], chunks: Iterator[bytes], mode: int = 0o644) -> None:
    """A new file at `path` (never an existing one) holding `chunks`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with open(fd, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    os.chmod(path, mode)  # whatever the umask took away


class Outbox:
    """The host's side of one sandbox's outbox: `work_dir` (the host's path of the sandbox's
    working directory) is opened once, and every file is taken relative to it."""

    def __init__(self, work_dir: str | os.PathLike[str], max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._work = os.open(work_dir, OPEN_DIR)

    def close(self) -> None:
        if self._work >= 0:
            os.close(self._work)
            self._work = -1

    def _directory(self) -> int | None:
        try:
            return os.open(OUTBOX, OPEN_DIR, dir_fd=self._work)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RefusedFile(f"{OUTBOX} is not a directory of the sandbox's own "
                              f"({exc.strerror})") from None

    def take(self, name: object) -> bytearray:
        """The bytes of value file `name`, which is then removed."""
        if not value_file_name(name):
            raise RefusedFile(f"{str(name)[:80]!r} is not the name of a value file")
        assert isinstance(name, str)
        directory = self._directory()
        if directory is None:
            raise RefusedFile(f"there is no {OUTBOX} directory for {name}")
        try:
            data = self._read(directory, name)
            os.unlink(name, dir_fd=directory)
            return data
        finally:
            os.close(directory)

    def _read(self, directory: int, name: str) -> bytearray:
        try:
            seen = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except OSError as exc:
            raise RefusedFile(f"{name}: {exc.strerror}") from None
        self._check(name, seen)
        try:
            fd = os.open(name, OPEN_FILE, dir_fd=directory)
        except OSError as exc:  # a link put there since: O_NOFOLLOW refuses it (ELOOP)
            raise RefusedFile(f"{name}: {exc.strerror}") from None
        try:
            opened = os.fstat(fd)
            self._check(name, opened)
            if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
                raise RefusedFile(f"{name} was replaced while it was opened")
            data = bytearray(opened.st_size + 1)  # one byte more: a file that grew is seen
            view, got = memoryview(data), 0
            while got < len(data) and (count := os.readv(fd, [view[got:]])):
                got += count
            if got > opened.st_size:
                raise RefusedFile(f"{name} grew while it was read")
            del view
            del data[got:]
            return data
        finally:
            os.close(fd)

    def _check(self, name: str, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            raise RefusedFile(f"{name} is not a regular file")
        if info.st_nlink != 1:
            raise RefusedFile(f"{name} has {info.st_nlink} links")
        if info.st_size > self.max_bytes:
            raise RefusedFile(f"{name} holds {info.st_size} bytes, more than the "
                              f"{self.max_bytes} a value may")

    def clear(self) -> None:
        """Remove what a sandbox that ended left in the outbox (its entries, not followed; an
        outbox that is not a directory, a link say, is removed itself)."""
        try:
            directory = self._directory()
        except RefusedFile:
            os.unlink(OUTBOX, dir_fd=self._work)
            return
        if directory is None:
            return
        try:
            for name in os.listdir(directory):
                try:
                    os.unlink(name, dir_fd=directory)
                except OSError:
                    continue
        finally:
            os.close(directory)


def merge(frame: dict, data: bytes | bytearray) -> None:
    """Put the fields of a value file into its frame (the fields its type may take from one,
    which the frame does not hold itself)."""
    try:
        fields = json.loads(data)
    except ValueError as exc:
        raise RefusedFile(f"the value file is not JSON: {exc}") from None
    allowed = BULK_FIELDS.get(frame["type"], ())
    if not isinstance(fields, dict) or not fields or any(
            key not in allowed or key in frame for key in fields):
        raise RefusedFile(f"a {frame['type']} frame cannot take the fields "
                          f"{sorted(fields) if isinstance(fields, dict) else type(fields)}")
    frame.update(fields)
