"""Write ``report/report.md`` and its figures from a run directory."""

from __future__ import annotations

from pathlib import Path

from lorasweep import results
from lorasweep.report import analysis, figures
from lorasweep.report.load import load_baseline, load_trials


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def build_report(run_dir: Path, metric: str, ref_b: int | None = None, ref_lr: float | None = None) -> Path:
    rows = load_trials(run_dir, metric)
    baseline = load_baseline(run_dir, metric)
    table = analysis.cells(rows)
    best = analysis.best_lrs(table)
    methods, batches, lrs = analysis.axes(table)
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    figures.accuracy_vs_batch(best, baseline, metric, out / "accuracy_vs_batch.png")
    for m in methods:
        figures.lr_batch_heatmap(table, m, metric, out / f"heatmap_{m}.png")
        figures.accuracy_per_lr(table, m, metric, out / f"per_lr_{m}.png")

    counts = {s: sum(r["state"] == s for r in rows) for s in results.STATES}
    lines = [f"# lorasweep report: {run_dir.name}", ""]
    lines += [
        f"Metric: `{metric}` (mean over seeds; best LR chosen per method and batch size among LRs "
        "where every seed completed). Trials: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    ]
    if baseline is not None:
        lines += ["", f"Untrained base model: {_pct(baseline)}"]
    h = analysis.headline(best)
    if h:
        lines += [
            "",
            f"**Batch size alone moves accuracy by up to {h.points:.1f} points** "
            f"({h.method}: batch {h.best_batch} vs batch {h.worst_batch}, each at its best LR).",
        ]
    lines += [
        "",
        "![accuracy vs batch size](accuracy_vs_batch.png)",
        "",
        "## Best learning rate per batch size",
        "",
    ]
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
            cells_txt.append(f"{_pct(bl.cell.mean)} ± {100 * bl.cell.std:.1f} @ {bl.lr:g}{mark}")
            if bl.at_edge:
                warnings.append(
                    f"{m}, B={b}: best LR {bl.lr:g} is at the edge of the grid "
                    f"[{lrs[0]:g}, {lrs[-1]:g}]; the optimum may lie outside it."
                )
        lines.append(f"| {m} | " + " | ".join(cells_txt) + " |")
    if warnings:
        lines += ["", "Warnings:", ""] + [f"- ⚠ {w}" for w in warnings]

    ref_b, ref_lr = analysis.reference_point(batches, lrs, ref_b, ref_lr)
    lines += [
        "",
        f"## Reference config (B={ref_b}, LR={ref_lr:g}) vs tuned",
        "",
        "| method | reference | tuned (best B, LR) |",
        "|---|---|---|",
    ]
    for r in analysis.reference_vs_tuned(table, best, ref_b, ref_lr):
        ref = _pct(r["reference"]) + (" **(wins)**" if r["reference_wins"] else "")
        tuned = _pct(r["tuned"]) + (
            f" (B={r['tuned_batch']}, {r['tuned_lr']:g})" if r["tuned"] is not None else ""
        )
        tuned += " **(wins)**" if r["tuned_wins"] else ""
        lines.append(f"| {r['method']} | {ref} | {tuned} |")

    lines += ["", "## Learning rate × batch size", ""]
    for m in methods:
        lines += [f"![{m} heatmap](heatmap_{m}.png) ![{m} per LR](per_lr_{m}.png)", ""]
    lines += [
        "## Every cell",
        "",
        "| method | B | LR | mean | seeds | diverged | failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for (m, b, lr), c in sorted(table.items(), key=lambda kv: (methods.index(kv[0][0]), kv[0][1], kv[0][2])):
        mean = "diverged" if c.mean is None and c.n_diverged else _pct(c.mean)
        lines.append(
            f"| {m} | {b} | {lr:g} | {mean} | {', '.join(_pct(v) for v in c.values)} | "
            f"{c.n_diverged} | {c.n_failed} |"
        )
    path = out / "report.md"
    results.atomic_write_text(path, "\n".join(lines) + "\n")
    return path
