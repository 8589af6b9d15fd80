"""The benchmarks' table: medians of ours beside stock, each goal printed as met or missed.

    report = Report("Engine: ours vs stock - medians")
    report.row("10 MB, 5 iterations: wall", ours_s, stock_s, Goal.fraction_of_stock(1 / 5))
    report.row("fan-out cell", ours_s, stock_s, Goal.at_most(0.88, "<= 0.88 s (1.10x ideal)"))
    report.row("  floor: plain client", floor_s)           # a figure to read, no goal
    report.print(console)                                    # table, notes, goals met/missed

Values are seconds, or bytes shown with `show=mib` (None where a side was not measured). A
goal that needs stock's figure and has none prints "?" and counts as not shown met.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def mib(size: float | None) -> str:
    """Bytes as MiB, for rows of memory: `report.row(..., show=mib)`."""
    return "-" if size is None else f"{size / (1 << 20):.3g} MiB"


def times(ratio: float) -> str:
    return f"1/{1 / ratio:.3g}" if ratio < 1 else f"{ratio:.3g}x"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


@dataclass(frozen=True)
class Goal:
    """What a row must show: `text` for the goal column, `check(ours, stock)` -> met, or None
    when it cannot tell (stock not measured)."""

    text: str
    check: Callable[[float, float | None], bool | None]

    @classmethod
    def fraction_of_stock(cls, fraction: float) -> Goal:
        """Ours at most `fraction` of stock's figure."""
        return cls(f"ours <= {times(fraction)} stock",
                   lambda ours, stock: None if stock is None else ours <= stock * fraction)

    @classmethod
    def at_most(cls, limit: float, text: str | None = None) -> Goal:
        """Ours at most `limit` (seconds unless `text` says otherwise), whatever stock does."""
        return cls(text or f"<= {fmt(limit)}", lambda ours, stock: ours <= limit)


MET, MISSED, UNKNOWN = "met", "[bold red]MISSED[/bold red]", "? (no stock figure)"


@dataclass
class Report:
    title: str
    sides: tuple[str, str] = ("ours", "stock")
    extra: Sequence[str] = ()  # further columns a script fills per row
    notes: list[str] = field(default_factory=list)
    verdicts: list[tuple[str, bool | None]] = field(default_factory=list)
    _rows: list[list[str]] = field(default_factory=list)

    def row(self, label: str, ours: float | None, stock: float | None = None,
            goal: Goal | None = None, note: str = "", extra: Sequence[str] = (),
            show: Callable[[float | None], str] = fmt) -> bool | None:
        """Adds a row (values shown by `show`: seconds by default, `mib` for bytes); returns
        whether its goal was met (None: no goal, or cannot tell)."""
        ratio = "-" if ours is None or not stock else times(ours / stock)
        met = None if goal is None or ours is None else goal.check(ours, stock)
        result = note
        if goal is not None:
            verdict = UNKNOWN if met is None else MET if met else MISSED
            result = f"{note}, {verdict}" if note else verdict
            self.verdicts.append((label.strip(), met))
        self._rows.append([label, show(ours), show(stock), ratio,
                           goal.text if goal else "-", result, *extra])
        return met

    def print(self, console: Console) -> bool:
        """Prints the table, the notes and one line per goal; True when every goal was met."""
        table = Table(title=self.title)
        for column in ("case", *self.sides, f"{self.sides[0]}/{self.sides[1]}", "goal", "result",
                       *self.extra):
            table.add_column(column, justify="left" if column in ("case", "goal") else "right")
        for cells in self._rows:
            table.add_row(*cells)
        console.print(table)
        for note in self.notes:
            console.print(f"[yellow]{note}[/yellow]")
        for label, met in self.verdicts:
            console.print(f"goal {MET if met else MISSED if met is False else UNKNOWN}: {label}")
        console.print(load_average())
        return all(met for _, met in self.verdicts)
