"""Check the bracketed LR search against a dense grid on the demo (one seed).

    python bench/bracket_vs_dense.py [--out runs/bracket-vs-dense] [--lrs 13] [key=value ...]

1. Runs the demo with ``lr_search: grid`` over a dense grid: ``--lrs`` quarter-decade LRs on each
   method's own lattice (the same lattice the bracketed search walks), one seed.
2. Runs the bracketed search (the demo's settings) into the same run directory: trials it shares with
   the grid (same id = same deterministic trial) are found finished; the rest run.
3. Writes ``bench/results/bracket_vs_dense.md`` and ``.json``: per cell the dense grid's best LR (on
   validation) and its test interval, the bracket's chosen LR and its test value, whether that value
   lies inside the dense best's interval, and the trial counts (target: the search uses <= 40 % of the
   dense grid's trials and lands inside the interval in >= 90 % of cells).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lorasweep import study
from lorasweep.config import load_config
from lorasweep.report import tuned
from lorasweep.sweep import bracket, search


def dense_lrs(cfg, method: str, n: int) -> list[float]:
    br = cfg.train.bracket
    spec = bracket.SearchSpec(search.start_lr(cfg, method), br.factor, br.min_lr, br.max_lr)
    half = n // 2
    return [spec.lr(j) for j in range(-half, n - half)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/bracket-vs-dense")
    p.add_argument("--lrs", type=int, default=13)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    common = [f"output_dir={a.out}", "train.seeds=[0]", *a.overrides]
    base = load_config("configs/demo.yaml", common)
    rows, by_method = [], {}
    for m in base.adapter.methods:  # one grid run per method: each method has its own lattice
        lrs = dense_lrs(base, m, a.lrs)
        by_method[m] = lrs
        grid_cfg = load_config(
            "configs/demo.yaml",
            [*common, "train.lr_search=grid", f"adapter.methods=[{m}]", f"train.learning_rates={lrs}"],
        )
        study.run(grid_cfg)
        res = tuned.build(grid_cfg, Path(a.out), grid_cfg.report.metric, with_claims=False)
        for (mm, b), t in res.tuned.items():
            rows.append({"method": mm, "batch_size": b, "dense": t})
    dense_trials = sum(len(v) for v in by_method.values()) * len(base.train.batch_sizes)
    bracket_cfg = load_config("configs/demo.yaml", common)
    study.run(bracket_cfg)
    res = tuned.build(bracket_cfg, Path(a.out), bracket_cfg.report.metric, with_claims=False)
    used = sum(len(t.best.searched) for t in res.tuned.values())
    out = []
    inside = 0
    for r in rows:
        d, b = r["dense"], res.tuned[(r["method"], r["batch_size"])]
        ok = (
            d.estimate is not None
            and b.estimate is not None
            and d.estimate.lo <= b.estimate.mean <= d.estimate.hi
        )
        inside += ok
        out.append(
            {
                "method": r["method"],
                "batch_size": r["batch_size"],
                "dense_lr": d.best.lr,
                "dense_test": d.estimate.as_dict() if d.estimate else None,
                "bracket_lr": b.best.lr,
                "bracket_test": b.estimate.as_dict() if b.estimate else None,
                "bracket_searched": list(b.best.searched),
                "inside_dense_interval": ok,
            }
        )
    summary = {
        "dense_trials": dense_trials,
        "bracket_trials": used,
        "fraction": used / dense_trials,
        "cells_inside": inside,
        "cells": len(out),
        "rows": out,
    }
    dest = Path("bench/results")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bracket_vs_dense.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# Bracketed search vs a dense grid (demo, seed 0)",
        "",
        f"Dense grid: {dense_trials} trials; bracketed search: {used} ({used / dense_trials:.0%}); "
        f"bracket inside the dense best's interval in {inside}/{len(out)} cells.",
        "",
        "| method | B | dense best LR | dense test | bracket LR | bracket test | inside |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in out:
        dt = r["dense_test"]
        bt = r["bracket_test"]
        lines.append(
            f"| {r['method']} | {r['batch_size']} | {r['dense_lr']} | "
            f"{dt['mean']:.1f} [{dt['lo']:.1f}, {dt['hi']:.1f}] | {r['bracket_lr']} | "
            f"{bt['mean']:.1f} | {'yes' if r['inside_dense_interval'] else 'no'} |"
            if dt and bt
            else f"| {r['method']} | {r['batch_size']} | — | — | — | — | no |"
        )
    (dest / "bracket_vs_dense.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
