"""``report/summary.json``: the report's numbers, machine-readable (documented in the README).

Per (method, batch size): the LR chosen on validation, whether it is bracketed and why the search
stopped, the LRs searched, the test mean and interval, optimizer steps and training tokens; the
baseline; the reference config; each claim with its verdict and numbers.
"""

from __future__ import annotations

from pathlib import Path

from lorasweep import results
from lorasweep.config import StudyConfig
from lorasweep.report import insight
from lorasweep.report.tuned import StudyResults

SUMMARY_VERSION = 1


def as_dict(cfg: StudyConfig, res: StudyResults, ins=None) -> dict:
    from lorasweep.evals.suite import validation_source

    cells = []
    for (m, b), t in sorted(res.tuned.items(), key=lambda kv: (res.methods.index(kv[0][0]), kv[0][1])):
        c = t.best.cell
        cells.append(
            {
                "method": m,
                "batch_size": b,
                "lr": t.best.lr,
                "bracketed": t.best.bracketed,
                "reason": t.best.reason,
                "searched_lrs": list(t.best.searched),
                "validation_mean": c.val_mean if c is not None else None,
                "test": t.estimate.as_dict() if t.estimate is not None else None,
                "test_per_seed": list(c.values) if c is not None else [],
                "steps": t.steps,
                "tokens": t.tokens,
            }
        )
    ref_b, ref_lr = res.ref_point
    return {
        "version": SUMMARY_VERSION,
        "study": cfg.name,
        "metric": res.metric,
        "selection": {
            "chosen_on": f"validation: {validation_source(cfg)}",
            "reported_on": "test",
            "lr_search": cfg.train.lr_search,
        },
        "interval": {
            "level": cfg.report.confidence,
            "bootstrap": cfg.report.bootstrap,
            "over": "test items and seeds",
        },
        "baseline": res.baseline.as_dict() if res.baseline is not None else None,
        "cells": cells,
        "reference": {
            "batch_size": ref_b,
            "lr": ref_lr,
            "test": {m: t.estimate.as_dict() for m, t in res.reference.items() if t.estimate is not None},
        },
        "claims": [
            {
                "claim": c.key,
                "text": c.text,
                "verdict": c.verdict,
                "evidence": c.evidence,
                "numbers": c.numbers,
            }
            for c in res.claims
        ],
        "insight": insight.as_dict(ins) if ins is not None else None,
        "provenance": results.provenance(),
    }


def write(path: Path, cfg: StudyConfig, res: StudyResults, ins=None) -> None:
    """``ins``: ``insight.Insight`` (noise scale, curvature, LR vs batch, cost frontier) or None."""
    results.atomic_write_json(path, as_dict(cfg, res, ins))
