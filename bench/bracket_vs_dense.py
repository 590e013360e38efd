"""Check the bracketed LR search against a dense grid on the demo (one seed).

    python bench/bracket_vs_dense.py [--out runs/bracket-vs-dense] [--reuse runs/demo] [--half 5]

1. Runs the demo's bracketed search with one seed (``train.seeds=[0]``).
2. Runs a dense grid on every (method, batch size) cell: ``2 * half + 1`` quarter-decade LRs centred
   on the cell's starting LR, on the same lattice the search walks, so trials the two share are the
   same deterministic trial and run once.  The search never reads the grid's extra trials: it replays
   its own walk from round 1 (``bracket.decide``), so its answer is what it would be alone.
3. Writes ``bench/results/bracket_vs_dense.{md,json}``: per cell the dense grid's best LR (chosen on
   validation, like the study) with its test value and 95 % interval, the search's LR and test value,
   whether that lies inside the dense best's interval, and the trial counts.  Targets: the search uses
   <= 40 % of the dense grid's trials and lands inside the interval in >= 90 % of cells.

``--reuse DIR`` copies the seed-0 trials of an earlier run of the same config (e.g. ``make demo``'s
``runs/demo``) into the output first: a trial is a deterministic function of its config, and the run
directory refuses any trial whose stored config differs, so this only saves time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

from lorasweep import results, study
from lorasweep.config import load_config
from lorasweep.evals.suite import selection_metric
from lorasweep.report import analysis, tuned
from lorasweep.report.load import load_trials
from lorasweep.report.stats import mean_interval
from lorasweep.rundir import RunDir
from lorasweep.sweep.backends import run_sweep
from lorasweep.sweep.grid import Trial
from lorasweep.sweep.search import cell_states


def reuse(src: Path, out: Path, seeds: list[int]) -> int:
    n = 0
    for d in RunDir(src).trial_dirs():
        t = d.stored_trial()
        if t is not None and t.seed in seeds and d.state() in results.TERMINAL:
            dest = RunDir(out).trial(t).path
            if not dest.exists():
                shutil.copytree(d.path, dest)
                n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--out", default="runs/bracket-vs-dense")
    p.add_argument("--reuse", default=None, help="a finished run of the same config to copy trials from")
    p.add_argument("--half", type=int, default=5, help="dense LRs per cell: 2*half+1")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    out = Path(a.out)
    cfg = load_config(a.config, [f"output_dir={a.out}", "train.seeds=[0]", *a.overrides])
    t0 = time.time()
    if a.reuse:
        print(f"reused {reuse(Path(a.reuse), out, cfg.train.seeds)} finished trials from {a.reuse}")
    study.run(cfg)  # the bracketed search, one seed
    t_bracket = time.time() - t0

    dense: dict[tuple[str, int], list[float]] = {}
    for c in cell_states(cfg, out):  # every cell's start is known up front (predict_start: false)
        dense[(c.method, c.batch_size)] = [c.spec.lr(j) for j in range(-a.half, a.half + 1)]
    trials = [Trial(m, b, lr, s) for (m, b), lrs in dense.items() for lr in lrs for s in cfg.train.seeds]
    run_sweep(cfg, trials, out, {t.id: 0 for t in trials})
    t_total = time.time() - t0

    metric = cfg.report.metric
    table = analysis.cells(load_trials(out, metric, selection_metric(cfg)))
    res = tuned.build(cfg, out, metric, with_claims=False)
    r = cfg.report
    rows, inside, used = [], 0, 0
    for (m, b), lrs in dense.items():
        d_best = analysis.grid_choice(table, m, b, lrs)
        d_mat = tuned.matrix(out, d_best.cell, metric) if d_best.cell is not None else None
        d_est = mean_interval(d_mat, r.confidence, r.bootstrap) if d_mat is not None else None
        br = res.tuned[(m, b)]
        used += len(br.best.searched)
        ok = d_est is not None and br.estimate is not None and d_est.lo <= br.estimate.mean <= d_est.hi
        inside += ok
        rows.append(
            {
                "method": m,
                "batch_size": b,
                "dense_lrs": lrs,
                "dense_lr": d_best.lr,
                "dense_at_edge": d_best.lr in (lrs[0], lrs[-1]),
                "dense_test": d_est.as_dict() if d_est else None,
                "bracket_lr": br.best.lr,
                "bracket_bracketed": br.best.bracketed,
                "bracket_reason": br.best.reason,
                "bracket_test": br.estimate.as_dict() if br.estimate else None,
                "bracket_searched": list(br.best.searched),
                "inside_dense_interval": ok,
            }
        )
    n_dense = len(trials)
    summary = {
        "config": a.config,
        "overrides": a.overrides,
        "seeds": cfg.train.seeds,
        "machine": f"{platform.node()} ({platform.machine()}, {platform.processor() or 'cpu'})",
        "dense_trials": n_dense,
        "bracket_trials": used,
        "fraction": used / n_dense,
        "cells_inside": inside,
        "cells": len(rows),
        "wall_s": {"bracket": round(t_bracket), "total": round(t_total)},
        "rows": rows,
    }
    dest = Path("bench/results")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bracket_vs_dense.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# Bracketed search vs a dense grid (demo, seed 0)",
        "",
        f"`python bench/bracket_vs_dense.py --reuse runs/demo` on {summary['machine']}. "
        f"Dense grid: {n_dense} trials ({2 * a.half + 1} quarter-decade LRs per cell); bracketed "
        f"search: {used} trials ({used / n_dense:.0%}); the search's test value lies inside the dense "
        f"best's 95 % interval in {inside}/{len(rows)} cells. Both choose on validation; test values "
        "are `mean [95 % interval]` over 600 test items (one seed).",
        "",
        "| method | B | dense best LR | dense test | search LR | search test | searched | inside |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        dt, bt = row["dense_test"], row["bracket_test"]
        edge = " (grid edge)" if row["dense_at_edge"] else ""
        dtxt = f"{dt['mean']:.1f} [{dt['lo']:.1f}, {dt['hi']:.1f}]" if dt else "—"
        btxt = f"{bt['mean']:.1f}" if bt else "—"
        flag = "" if row["bracket_bracketed"] else " (unbracketed)"
        lines.append(
            f"| {row['method']} | {row['batch_size']} | {row['dense_lr']:g}{edge} | {dtxt} | "
            f"{row['bracket_lr']:g}{flag} | {btxt} | {len(row['bracket_searched'])} | "
            f"{'yes' if row['inside_dense_interval'] else 'no'} |"
        )
    (dest / "bracket_vs_dense.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
