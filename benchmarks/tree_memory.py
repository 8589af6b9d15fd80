"""Peak memory of this process and every process under it (its sandboxes), sampled.

PSS (proportional set size) from /proc/PID/smaps_rollup: a page shared by n processes counts
1/n in each, so the sum counts it once. A process under this one still running this one's
executable is a fork on its way to exec: subprocess starts programs with vfork, which shares
this process's memory outright, so it is left out rather than counted twice. Reading another
uid's sandbox processes needs root (or CAP_SYS_PTRACE); a process that cannot be read, or is
gone, counts nothing (its RSS would count the pages it shares again).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += map(int, task.read_text().split())
        except OSError:
            continue
    return found


def _kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as lines:
            for line in lines:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_bytes(root: int | None = None) -> int:
    """PSS of `root` (this process) and all its descendants, in bytes."""
    root = root or os.getpid()
    own = _exe(root)
    todo, total = [root], _kib(root) * 1024
    while todo:
        for child in _children(todo.pop()):
            if _exe(child) != own:
                total += _kib(child) * 1024
            todo.append(child)
    return total


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


class TreeMemory:
    """`with TreeMemory() as m: ...` then `m.peak_above_start`: the most the tree held above
    what it held when the block began."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, tree_bytes())

    def __enter__(self) -> TreeMemory:
        self.start = self.peak = tree_bytes()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_bytes())

    @property
    def peak_above_start(self) -> int:
        return self.peak - self.start
