"""The study's results as the report states them: per (method, batch size) the LR chosen on
validation, its test value with a bootstrap interval, the search that found it; the reference config;
the claims.  Built from the run directory only; ``render.py`` and ``summary.py`` print it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lorasweep.config import StudyConfig
from lorasweep.report import analysis, claims
from lorasweep.report.load import item_scores, load_baseline, load_baseline_items, load_trials, unit
from lorasweep.report.stats import Estimate, mean_interval
from lorasweep.rundir import RunDir


@dataclass
class Tuned:
    best: analysis.Best
    estimate: Estimate | None  # test value (display units) with its interval
    matrix: np.ndarray | None  # seeds x items, test
    steps: int | None = None
    tokens: int | None = None


@dataclass
class StudyResults:
    metric: str
    rows: list[dict]
    table: dict
    tuned: dict[tuple[str, int], Tuned]
    methods: list[str]
    batches: list[int]
    baseline: Estimate | None
    reference: dict[str, Tuned] = field(default_factory=dict)
    ref_point: tuple[int, float] | None = None
    claims: list[claims.Claim] = field(default_factory=list)


def matrix(run_dir: Path, cell: analysis.Cell, metric: str) -> np.ndarray | None:
    """seeds x items test scores of a cell's completed seeds (None: no per-item scores)."""
    rows = [item_scores(RunDir(run_dir).trial(tid).eval, metric) for tid in cell.ids]
    if not rows or any(r is None for r in rows) or len({len(r) for r in rows}) != 1:
        if cell.values:  # no items: the interval covers seeds only
            return np.asarray(cell.values, dtype=float)[:, None]
        return None
    return np.asarray(rows, dtype=float)


def choices(cfg: StudyConfig, run_dir: Path, table) -> dict[tuple[str, int], analysis.Best]:
    """The LR of every (method, batch size): the bracketed search's answer, or the grid's best."""
    if cfg.train.lr_search == "grid":
        lrs = sorted(cfg.train.learning_rates)
        return {
            (m, b): analysis.grid_choice(table, m, b, lrs)
            for m in cfg.adapter.methods
            for b in cfg.train.batch_sizes
        }
    from lorasweep.sweep.search import cell_states

    out = {}
    for c in cell_states(cfg, run_dir):
        d = c.decision
        if d is None:
            out[(c.method, c.batch_size)] = analysis.Best(
                c.method, c.batch_size, None, None, False, "not searched yet"
            )
            continue
        cell = table.get((c.method, c.batch_size, d.best)) if d.best is not None else None
        reason = d.reason if d.done else f"search unfinished ({d.reason})"
        out[(c.method, c.batch_size)] = analysis.Best(
            c.method, c.batch_size, d.best, cell, d.bracketed and d.done, reason, d.searched
        )
    return out


def build(cfg: StudyConfig, run_dir: Path, metric: str, with_claims: bool = True) -> StudyResults:
    from lorasweep.evals.suite import selection_metric
    from lorasweep.sweep.search import reference_point

    rows = load_trials(run_dir, metric, selection_metric(cfg))
    table = analysis.cells(rows)
    r = cfg.report

    def estimate(m: np.ndarray | None) -> Estimate | None:
        return mean_interval(m, r.confidence, r.bootstrap) if m is not None else None

    by_id = {row["id"]: row for row in rows}
    tuned = {}
    for key, best in choices(cfg, run_dir, table).items():
        m = matrix(run_dir, best.cell, metric) if best.cell is not None else None
        first = by_id.get(best.cell.ids[0]) if best.cell is not None and best.cell.ids else None
        tuned[key] = Tuned(
            best,
            estimate(m),
            m,
            first.get("steps") if first else None,
            first.get("tokens") if first else None,
        )
    base_items = load_baseline_items(run_dir, metric)
    base_value = load_baseline(run_dir, metric)
    baseline = (
        estimate(np.asarray(base_items))
        if base_items
        else (Estimate(base_value, base_value, base_value) if base_value is not None else None)
    )
    res = StudyResults(
        metric, rows, table, tuned, list(cfg.adapter.methods), sorted(cfg.train.batch_sizes), baseline
    )
    ref_b, ref_lr = reference_point(cfg)
    res.ref_point = (ref_b, ref_lr)
    for meth in cfg.adapter.methods if r.reference_config else []:
        cell = table.get((meth, ref_b, ref_lr))
        if cell is not None and cell.complete:
            m = matrix(run_dir, cell, metric)
            res.reference[meth] = Tuned(
                analysis.Best(meth, ref_b, ref_lr, cell, False, "reference"), estimate(m), m
            )
    if with_claims:
        res.claims = study_claims(cfg, res)
    return res


def study_claims(cfg: StudyConfig, res: StudyResults) -> list[claims.Claim]:
    curves: claims.Curves = {}
    for (m, b), t in res.tuned.items():
        if t.matrix is not None and t.best.cell is not None and t.best.cell.val_mean is not None:
            curves.setdefault(m, {})[b] = claims.TunedCell(t.best.lr, t.best.cell.val_mean, t.matrix)
    reference = {m: t.matrix for m, t in res.reference.items() if t.matrix is not None}
    r = cfg.report
    ref_b, ref_lr = res.ref_point
    return claims.all_claims(
        curves,
        reference,
        f"B={ref_b}, LR={ref_lr:g}",
        spread=r.spread_points,
        margin=r.equivalence_margin,
        collapse_points=r.collapse_points,
        level=r.confidence,
        n_boot=r.bootstrap,
    )


def percent(metric: str) -> bool:
    return unit(metric) == "%"
