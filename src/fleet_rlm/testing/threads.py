"""Thread helpers for tests that look for races."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def eager_thread_switching() -> Iterator[None]:
    """Switch threads constantly, so a race (a missing lock) shows up as a failure."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)
