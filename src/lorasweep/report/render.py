"""Write ``report/report.md``, its figures and ``report/summary.json`` from a run directory.

The report opens with the verdict on each claim of the study, then one section per reported metric
(the study's ``report.metric`` first, then the primary metric of every other evaluated task).  Every
LR and batch-size choice was made on validation rows; every number printed is measured on test rows
and carries its bootstrap interval (``stats.py``); a chosen LR that is not bracketed says so beside it.
"""

from __future__ import annotations

from pathlib import Path

from lorasweep import results
from lorasweep.config import StudyConfig
from lorasweep.report import claims, figures, html, insight, same_step, summary, tuned
from lorasweep.report.load import unit
from lorasweep.rundir import RunDir


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def report_metrics(cfg: StudyConfig) -> list[str]:
    """The study's report metric, then the primary metric of every other evaluated task."""
    from lorasweep.evals.registry import EVALUATORS

    return [cfg.report.metric] + [f"{t}.{EVALUATORS[t].metrics[0]}" for t in cfg.eval.tasks]


STUDY_SPAN = 128  # the study's own batch-size grid, 4 ... 512 (arXiv 2602.09492)


def span_sentence(batches: list[int]) -> str:
    """What span of batch sizes was searched, said against the study's own 128x."""
    lo, hi = min(batches), max(batches)
    text = f"Batch sizes searched: {', '.join(map(str, sorted(batches)))} (a {hi // lo}x span"
    if hi // lo >= STUDY_SPAN:
        return text + f"; the study's own grid spans {STUDY_SPAN}x)."
    return text + (
        f", narrower than the study's {STUDY_SPAN}x, 4 ... 512: claims about the largest batch sizes hold for "
        f"B <= {hi} only; a wider span needs a data budget that gives the largest batch enough steps)."
    )


def build_report(run_dir: Path, cfg: StudyConfig, metrics: list[str] | None = None) -> Path:
    """The report of ``run_dir`` (its study config ``cfg``); metrics default to the study's."""
    from lorasweep.evals.suite import selection_metric, validation_source

    metrics = list(dict.fromkeys(metrics or report_metrics(cfg)))
    out = RunDir(run_dir).report
    out.mkdir(exist_ok=True)
    primary = tuned.build(cfg, run_dir, metrics[0])
    level = f"{cfg.report.confidence:.0%}"
    lines = [
        f"# lorasweep report: {run_dir.name}",
        "",
        f"Every choice (the LR of each batch size, the best batch size) was made on **validation** rows "
        f"({validation_source(cfg)}, {cfg.eval.selection.num_examples or 'all'} rows, metric `{selection_metric(cfg)}`); "
        f"every number below is measured on **test** rows, which no choice saw. Brackets are {level} "
        f"bootstrap intervals over test items and seeds ({cfg.report.bootstrap} resamples); comparisons are "
        "paired over test items.",
        "",
        span_sentence(cfg.train.batch_sizes),
        "",
        "## Claims of the study",
        "",
        "| claim | verdict | evidence (test, points, with intervals) |",
        "|---|---|---|",
    ]
    for c in primary.claims:
        lines.append(f"| ({c.key}) {c.text} | **{c.verdict}** | {'<br>'.join(c.evidence)} |")
    lines.append("")
    for i, metric in enumerate(metrics):
        res = primary if i == 0 else tuned.build(cfg, run_dir, metric, with_claims=False)
        lines += _section(res, out, "" if i == 0 else f"_{metric.split('.')[0]}", level)
    ins = insight.build(cfg, run_dir, primary)
    figures.lr_vs_batch(ins, out / "lr_vs_batch.png")
    figures.cost_frontier(ins, f"{primary.metric} ({unit(primary.metric)})", out / "cost_frontier.png")
    lines += insight.markdown(ins, primary, unit(primary.metric))
    for view in ("step", "data"):
        same_step.figure(ins.same_step, primary, out / f"same_{view}.png", view)
    lines += same_step.markdown(ins.same_step, primary)
    lines += [
        "The same report, interactive (hover values, method and seed toggles): [report.html](report.html)"
    ]
    path = out / "report.md"
    results.atomic_write_text(path, "\n".join(lines) + "\n")
    summary.write(out / "summary.json", cfg, primary, ins)
    html.write(out / "report.html", cfg, primary, ins)
    return path


def _section(res: tuned.StudyResults, out: Path, suffix: str, level: str) -> list[str]:
    metric, label = res.metric, f"{res.metric} ({unit(res.metric)})"
    figures.accuracy_vs_batch(res, label, out / f"accuracy_vs_batch{suffix}.png")
    for m in res.methods:
        figures.lr_batch_heatmap(res.table, m, label, out / f"heatmap_{m}{suffix}.png")
        figures.accuracy_per_lr(res.table, m, label, out / f"per_lr_{m}{suffix}.png")
    counts = {s: sum(r["state"] == s for r in res.rows) for s in results.STATES}
    lines = [f"## `{metric}`", "", "Trials: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)]
    if res.baseline is not None:
        lines += ["", f"Untrained base model (test): {res.baseline.fmt()}"]
    lines += ["", f"![{metric} vs batch size](accuracy_vs_batch{suffix}.png)", ""]
    lines += _tuned_table(res, level)
    lines += _search_table(res)
    lines += _reference_table(res)
    lines += ["", "### Learning rate × batch size (test, mean over seeds)", ""]
    for m in res.methods:
        lines += [f"![{m} heatmap](heatmap_{m}{suffix}.png) ![{m} per LR](per_lr_{m}{suffix}.png)", ""]
    lines += _cells_table(res)
    return lines + [""]


def _tuned_table(res: tuned.StudyResults, level: str) -> list[str]:
    lines = [
        f"### Test value at the LR chosen on validation (mean [{level} interval] @ LR)",
        "",
        "| method | " + " | ".join(f"B={b}" for b in res.batches) + " |",
        "|---|" + "---|" * len(res.batches),
    ]
    notes = []
    for m in res.methods:
        row = []
        for b in res.batches:
            t = res.tuned.get((m, b))
            if t is None or t.best.cell is None or t.estimate is None:
                row.append(f"none ({t.best.reason})" if t else "—")
                continue
            text = f"{t.estimate.fmt()} @ {t.best.lr:g}"
            if not t.best.bracketed:
                text += f" ⚠ not bracketed: {t.best.reason}"
                notes.append(f"{m}, B={b}: LR {t.best.lr:g} is not bracketed ({t.best.reason}).")
            row.append(text)
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    if notes:
        lines += ["", "Not bracketed (the best LR may lie outside what was searched):", ""]
        lines += [f"- ⚠ {n}" for n in notes]
    return lines


def _search_table(res: tuned.StudyResults) -> list[str]:
    lines = [
        "",
        "### Learning-rate search (validation score per LR; * = chosen)",
        "",
        "| method | B | LRs searched | stopped because |",
        "|---|---|---|---|",
    ]
    for m in res.methods:
        for b in res.batches:
            t = res.tuned.get((m, b))
            if t is None:
                continue
            parts = []
            for lr in t.best.searched:
                c = res.table.get((m, b, lr))
                v = c.val_mean if c is not None and c.val_score is not None else None
                shown = _fmt(v) if v is not None else ("diverged" if c is not None and c.n_diverged else "—")
                parts.append(f"{lr:g}{'*' if lr == t.best.lr else ''}: {shown}")
            lines.append(f"| {m} | {b} | {', '.join(parts) or '—'} | {t.best.reason} |")
    return lines


def _reference_table(res: tuned.StudyResults) -> list[str]:
    if res.ref_point is None:
        return []
    ref_b, ref_lr = res.ref_point
    lines = [
        "",
        f"### Reference config (B={ref_b}, LR={ref_lr:g}) vs tuned (test)",
        "",
        "| method | reference | tuned (best B and LR on validation) |",
        "|---|---|---|",
    ]
    for m in res.methods:
        ref = res.reference.get(m)
        ref_txt = ref.estimate.fmt() if ref is not None and ref.estimate is not None else "—"
        cands = [t for (mm, _), t in res.tuned.items() if mm == m and t.estimate is not None and t.best.cell]
        top = max(cands, key=lambda t: (t.best.cell.val_mean or 0.0, -t.best.batch_size), default=None)
        top_txt = (
            f"{top.estimate.fmt()} (B={top.best.batch_size}, {top.best.lr:g})"
            + claims.edge_note(top.best.batch_size, res.batches)
            if top
            else "—"
        )
        lines.append(f"| {m} | {ref_txt} | {top_txt} |")
    lines += ["", "Which method ranks where, with paired intervals: claim (e) above."]
    return lines


def _cells_table(res: tuned.StudyResults) -> list[str]:
    lines = [
        "### Every cell",
        "",
        "| method | B | LR | validation mean | test mean | test per seed | diverged | failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate(res.methods)}
    for (m, b, lr), c in sorted(
        res.table.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1], kv[0][2])
    ):
        mean = "diverged" if c.mean is None and c.n_diverged else _fmt(c.mean)
        seeds = ", ".join(_fmt(v) for v in c.values)
        lines.append(
            f"| {m} | {b} | {lr:g} | {_fmt(c.val_mean)} | {mean} | {seeds} | {c.n_diverged} | {c.n_failed} |"
        )
    return lines
