"""The wall-time watchdog: one thread for every budget of the process."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .budget import Budget

log = logging.getLogger(__name__)


class Watchdog:
    """One thread that stops every budget's run at its wall limit, whatever the run is doing
    (a cell that sleeps, a call in flight): the budget's cancel token kills or interrupts the
    run's sandboxes and the run ends with BudgetExceeded("wall_s")."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._budgets: weakref.WeakSet[Budget] = weakref.WeakSet()
        self._thread: threading.Thread | None = None

    def watch(self, budget: Budget) -> None:
        """Start watching `budget`, or look again at its deadline (it moved)."""
        with self._wake:
            self._budgets.add(budget)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="budget-watchdog",
                                                daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                due = [b for b in self._budgets if b.deadline <= now]
                for budget in due:
                    self._budgets.discard(budget)
                if not due:
                    nearest = min((b.deadline for b in self._budgets), default=now + 3600)
                    self._wake.wait(nearest - now)
            for budget in due:  # outside the lock: the cancel callbacks kill sandboxes
                try:
                    budget.expire()
                except Exception:  # the watchdog must outlive any one budget
                    log.exception("stopping a run at its wall limit failed")


_watchdog = Watchdog()
watch = _watchdog.watch
