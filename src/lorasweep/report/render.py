"""Write ``report/report.md`` and its figures from a run directory.

One section per reported metric (the study's ``report.metric`` first, then the primary metric of every
other evaluated task, MT-Bench included), each with the same figures and tables.
"""

from __future__ import annotations

from pathlib import Path

from lorasweep import results
from lorasweep.report import analysis, figures
from lorasweep.report.load import load_baseline, load_trials, unit


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def build_report(
    run_dir: Path, metrics: str | list[str], ref_b: int | None = None, ref_lr: float | None = None
) -> Path:
    metrics = [metrics] if isinstance(metrics, str) else list(dict.fromkeys(metrics))
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    lines = [f"# lorasweep report: {run_dir.name}", ""]
    for i, metric in enumerate(metrics):
        lines += _section(run_dir, out, metric, "" if i == 0 else f"_{metric.split('.')[0]}", ref_b, ref_lr)
    path = out / "report.md"
    results.atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _section(run_dir: Path, out: Path, metric: str, suffix: str, ref_b, ref_lr) -> list[str]:
    rows = load_trials(run_dir, metric)
    baseline = load_baseline(run_dir, metric)
    table = analysis.cells(rows)
    best = analysis.best_lrs(table)
    methods, batches, lrs = analysis.axes(table)
    label = f"{metric} ({unit(metric)})"
    figures.accuracy_vs_batch(best, baseline, label, out / f"accuracy_vs_batch{suffix}.png")
    for m in methods:
        figures.lr_batch_heatmap(table, m, label, out / f"heatmap_{m}{suffix}.png")
        figures.accuracy_per_lr(table, m, label, out / f"per_lr_{m}{suffix}.png")
    counts = {s: sum(r["state"] == s for r in rows) for s in results.STATES}
    lines = [f"## `{metric}`", ""]
    lines += [
        f"Mean over seeds, in {unit(metric)}; best LR chosen per method and batch size among LRs where every "
        "seed completed. Trials: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    ]
    if baseline is not None:
        lines += ["", f"Untrained base model: {_fmt(baseline)}"]
    h = analysis.headline(best)
    what = f"accuracy ({metric})" if unit(metric) == "%" else f"the score ({metric})"
    if h:
        lines += [
            "",
            f"**Batch size alone moves {what} by up to {h.points:.1f} {'points' if unit(metric) == '%' else ''}** "
            f"({h.method}: batch {h.best_batch} vs batch {h.worst_batch}, each at its best LR).",
        ]
    lines += ["", f"![{metric} vs batch size](accuracy_vs_batch{suffix}.png)", ""]
    lines += _best_lr_table(best, methods, batches, lrs)
    lines += _reference_table(table, best, batches, lrs, ref_b, ref_lr)
    lines += ["", "### Learning rate × batch size", ""]
    for m in methods:
        lines += [f"![{m} heatmap](heatmap_{m}{suffix}.png) ![{m} per LR](per_lr_{m}{suffix}.png)", ""]
    lines += _cells_table(table, methods)
    return lines + [""]


def _best_lr_table(best, methods, batches, lrs) -> list[str]:
    lines = ["### Best learning rate per batch size", ""]
    lines += ["| method | " + " | ".join(f"B={b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]
    warnings = []
    for m in methods:
        cells_txt = []
        for b in batches:
            bl = best.get((m, b))
            if bl is None or bl.cell is None:
                cells_txt.append("diverged/none")
                continue
            mark = " ⚠" if bl.at_edge else ""
            cells_txt.append(f"{_fmt(bl.cell.mean)} ± {bl.cell.std:.1f} @ {bl.lr:g}{mark}")
            if bl.at_edge:
                warnings.append(
                    f"{m}, B={b}: best LR {bl.lr:g} is at the edge of the grid "
                    f"[{lrs[0]:g}, {lrs[-1]:g}]; the optimum may lie outside it."
                )
        lines.append(f"| {m} | " + " | ".join(cells_txt) + " |")
    if warnings:
        lines += ["", "Warnings:", ""] + [f"- ⚠ {w}" for w in warnings]
    return lines


def _reference_table(table, best, batches, lrs, ref_b, ref_lr) -> list[str]:
    ref_b, ref_lr = analysis.reference_point(batches, lrs, ref_b, ref_lr)
    lines = ["", f"### Reference config (B={ref_b}, LR={ref_lr:g}) vs tuned", ""]
    lines += ["| method | reference | tuned (best B, LR) |", "|---|---|---|"]
    for r in analysis.reference_vs_tuned(table, best, ref_b, ref_lr):
        ref = _fmt(r["reference"]) + (" **(wins)**" if r["reference_wins"] else "")
        tuned = _fmt(r["tuned"])
        if r["tuned"] is not None:
            tuned += f" (B={r['tuned_batch']}, {r['tuned_lr']:g})"
        tuned += " **(wins)**" if r["tuned_wins"] else ""
        lines.append(f"| {r['method']} | {ref} | {tuned} |")
    return lines


def _cells_table(table, methods) -> list[str]:
    lines = ["### Every cell", "", "| method | B | LR | mean | seeds | diverged | failed |"]
    lines.append("|---|---|---|---|---|---|---|")
    for (m, b, lr), c in sorted(table.items(), key=lambda kv: (methods.index(kv[0][0]), kv[0][1], kv[0][2])):
        mean = "diverged" if c.mean is None and c.n_diverged else _fmt(c.mean)
        seeds = ", ".join(_fmt(v) for v in c.values)
        lines.append(f"| {m} | {b} | {lr:g} | {mean} | {seeds} | {c.n_diverged} | {c.n_failed} |")
    return lines
