"""The report of a benchmark directory: report.md with its tables, and two PNG plots.

Everything is computed from OUT/results.jsonl, so `fleet bench report OUT` rebuilds it at any time
(and from a run that is still going).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from statistics import mean
from typing import Any

from fleet_rlm.bench.results import load_results

REPORT = "report.md"
SCORE_PLOT = "score_vs_length.png"
COST_PLOT = "cost_hist.png"

# Table 1 of "Recursive Language Models" (Zhang, Kraska, Khattab, 2025; arXiv:2512.24601): GPT-5
# as the root model with GPT-5-mini sub-calls, as (score as a fraction, mean USD per task). RLM is
# our `rlm` mode, the base model our `direct` mode. OOLONG is trec_coarse at 131K tokens and
# OOLONG-Pairs at 32K. S-NIAH appears only in a plot there, so it has no figure here.
PAPER: dict[tuple[str, int, str], tuple[float, float]] = {
    ("oolong", 131_072, "rlm"): (0.565, 0.43),
    ("oolong", 131_072, "direct"): (0.440, 0.14),
    ("oolong_pairs", 32_768, "rlm"): (0.580, 0.33),
    ("oolong_pairs", 32_768, "direct"): (0.001, 0.16),
}
PAPER_NOTE = ("Table 1 of Recursive Language Models (Zhang, Kraska, Khattab, 2025), GPT-5 with "
              "GPT-5-mini sub-calls: score · mean cost per task. `rlm` is their RLM, `direct` "
              "their base model. Shown only for cells scored by the official rule on data built "
              "by the official definitions; a different model, so not a like-for-like result.")
# Where a record's tasks came from, per benchmark, for the figures above to be comparable.
OFFICIAL_SOURCES = {"oolong": {"official-data", "official-construction"},
                    "oolong_pairs": {"paper-queries"}}

_COLUMNS = ("n", "mean score", "mean cost (USD)", "mean calls", "mean seconds")

Record = dict[str, Any]


def latest(records: Iterable[Record]) -> list[Record]:
    """The last record of each (task, mode): a task retried after an error counts once."""
    return list({(r["task_id"], r["mode"]): r for r in records}.values())


def _stats(rows: list[Record]) -> list[str]:
    unknown = sum(r.get("usd_unknown_calls") or 0 for r in rows)
    cost = f"{mean(r.get('usd') or 0.0 for r in rows):.4f}" + ("*" if unknown else "")
    return [str(len(rows)), f"{mean(r['score'] for r in rows):.3f}", cost,
            f"{mean(r.get('calls') or 0 for r in rows):.1f}",
            f"{mean(r.get('seconds') or 0.0 for r in rows):.2f}"]


def _groups(records: list[Record], key: Callable[[Record], tuple]) -> dict[tuple, list[Record]]:
    """Records grouped by `key`, in key order (numbers numerically)."""
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: tuple(
        (0, k, "") if isinstance(k, int | float) else (1, 0, str(k)) for k in kv[0])))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def comparable(rows: list[Record]) -> bool:
    """Scored by the official rule, on tasks built by the official definitions."""
    return all(r.get("scorer", "official") == "official"
               and r.get("source") in OFFICIAL_SOURCES.get(r["benchmark"], ()) for r in rows)


def _lenient(rows: list[Record]) -> bool:
    return any(r.get("scorer") == "lenient" for r in rows)


def length_table(records: list[Record]) -> list[str]:
    rows = []
    for (bench, mode), group in _groups(records, lambda r: (r["benchmark"], r["mode"])).items():
        for (length,), cell in _groups(group, lambda r: (r["length"],)).items():
            rows.append([bench, mode, str(length), *_stats(cell)])
        rows.append([bench, mode, "**all**", *_stats(group)])
    return _table(["benchmark", "mode", "context length (tokens)", *_COLUMNS], rows)


def reference_lines(records: list[Record]) -> list[str]:
    """The paper's figures for the cells of this run that can stand beside them."""
    rows = []
    cells = _groups(records, lambda r: (r["benchmark"], r["length"], r["mode"]))
    for (bench, length, mode), cell in cells.items():
        if (figure := PAPER.get((bench, length, mode))) and comparable(cell):
            rows.append([bench, mode, str(length), f"{mean(r['score'] for r in cell):.3f}",
                         f"{figure[0]:.3f} · ${figure[1]:.2f}"])
    if not rows:
        return []
    return ["## Reference (different model, same benchmark definition)", "", PAPER_NOTE, "",
            *_table(["benchmark", "mode", "context length (tokens)", "this run", "paper"], rows),
            ""]


def head_lines(records: list[Record]) -> list[str]:
    """What the run was: model, scorer, data, size, lengths, cost and time, per mode."""
    rows = []
    for (bench, mode), g in _groups(records, lambda r: (r["benchmark"], r["mode"])).items():
        models = sorted({(r.get("model") or "no model") + (f" (sub {r['sub_model']})"
                                                           if r.get("sub_model") else "")
                         for r in g})
        # From the first task's start to the last task's end.
        elapsed = max(r["ts"] for r in g) - min(r["ts"] - (r.get("seconds") or 0) for r in g)
        rows.append([bench, mode, "; ".join(models),
                     ", ".join(sorted({r.get("scorer") or "official" for r in g})),
                     ", ".join(sorted({r.get("source") or "unrecorded" for r in g})),
                     str(len(g)), ", ".join(str(x) for x in sorted({r["length"] for r in g})),
                     f"${sum(r.get('usd') or 0.0 for r in g):.4f}", f"{elapsed:.0f} s"])
    return _table(["benchmark", "mode", "model", "scorer", "data", "n", "lengths (tokens)",
                   "cost", "wall time"], rows)


def family_table(records: list[Record]) -> list[str]:
    rows = [[bench, mode, str(family), *_stats(group)] for (bench, mode, family), group in
            _groups(records, lambda r: (r["benchmark"], r["mode"], r.get("family") or "")).items()]
    return _table(["benchmark", "mode", "question type", *_COLUMNS], rows)


def _code_only_lines(records: list[Record]) -> list[str]:
    from fleet_rlm.bench.baseline import needs_labels

    rows = [r for r in records if r["mode"] == "code-only" and r["benchmark"] == "oolong"]
    if not rows:
        return []
    label = [r["score"] for r in rows if needs_labels(r.get("family") or "")]
    free = [r["score"] for r in rows if not needs_labels(r.get("family") or "")]
    parts = [f"{name} questions {mean(s):.3f} (n={len(s)})"
             for name, s in (("label", label), ("label-free", free)) if s]
    return ["", "Code-only on OOLONG (no model; labels guessed at random): " + ", ".join(parts)
            + "."]


def render(records: list[Record]) -> str:
    records = latest(records)
    lines = ["# Benchmark report", "",
             f"{len(records)} tasks from `results.jsonl`, {time.strftime('%Y-%m-%d %H:%M')}.", ""]
    if not records:
        return "\n".join([*lines, "No results yet."]) + "\n"
    lines += [*head_lines(records), ""]
    if _lenient(records):
        lines += ["**Scorer: lenient** (case, punctuation and number formats forgiven). These "
                  "scores are not the published OOLONG metric and are not comparable with it.",
                  ""]
    lines += ["## By context length", "",
              *length_table(records), "", "## By question type", "",
              *family_table(records), "", *reference_lines(records), "## Status", ""]
    for (bench, mode), group in _groups(records, lambda r: (r["benchmark"], r["mode"])).items():
        counts = Counter(r["status"] for r in group)
        lines.append(f"- {bench} / {mode}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if any(r.get("usd_unknown_calls") for r in records):
        lines += ["", "\\* some calls had no known price and count as $0: set FLEET_PRICES."]
    lines += _code_only_lines(records)
    lines += ["", f"![score against context length]({SCORE_PLOT})", "",
              f"![cost per task]({COST_PLOT})"]
    return "\n".join(lines) + "\n"


def _pyplot() -> Any:
    """matplotlib's pyplot, drawing to files; matplotlib is the bench extra."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise ImportError("the benchmark report's plots need the bench extra: "
                          "pip install 'fleet-rlm[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scores(records: list[Record], path: Path) -> None:
    plt = _pyplot()

    benches = sorted({r["benchmark"] for r in records}) or ["(no results)"]
    fig, axes = plt.subplots(1, len(benches), figsize=(5 * len(benches), 4), squeeze=False)
    for ax, bench in zip(axes[0], benches, strict=True):
        rows = [r for r in records if r["benchmark"] == bench]
        for (mode,), group in _groups(rows, lambda r: (r["mode"],)).items():
            points = _groups(group, lambda r: (r["length"],))
            ax.plot([k[0] for k in points], [mean(r["score"] for r in g) for g in points.values()],
                    marker="o", label=mode)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set(title=bench, xlabel="context length (tokens)", ylabel="mean score")
        ax.grid(alpha=0.3)
        if rows:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_costs(records: list[Record], path: Path) -> None:
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    by_mode = _groups(records, lambda r: (r["mode"],))
    costs = [r.get("usd") or 0.0 for r in records]
    top = max(costs, default=0.0)
    bins = [top * i / 20 for i in range(21)] if top > 0 else 10
    for (mode,), group in by_mode.items():
        ax.hist([r.get("usd") or 0.0 for r in group], bins=bins, alpha=0.6, label=mode)
    ax.set(title="cost per task", xlabel="USD", ylabel="tasks")
    ax.set_xlim(left=0)
    if by_mode:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path) -> Path:
    """Write OUT/report.md and the plots beside it; returns the report's path."""
    records = latest(load_results(out))
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT
    path.write_text(render(records), encoding="utf-8")
    plot_scores(records, out / SCORE_PLOT)
    plot_costs(records, out / COST_PLOT)
    return path


def summary_line(records: list[Record]) -> str:
    records = latest(records)
    if not records:
        return "no results"
    cost = sum(r.get("usd") or 0.0 for r in records)
    score = mean(r["score"] for r in records)
    label = " (lenient scorer)" if _lenient(records) else ""
    return f"{len(records)} tasks, mean score {score:.3f}{label}, total cost ${cost:.4f}"
