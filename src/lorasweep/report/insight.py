"""The report beyond the claims: *why* batch size matters and *what to pick*.

- gradient noise scale B_simple per tuned cell (``train/noise_scale.py``), beside the best batch size;
- curvature at initialisation (λmax, ``lorasweep curvature``) beside each method's chosen LR;
- best LR against batch size: a power law over the bracketed cells (``analysis/lr_batch.py``);
- the cost frontier and the cheapest batch size within ``report.cost_tolerance`` (``cost.py``);
- held-out loss at equal optimizer steps and at equal data (``same_step.py``).
Built from the run directory only, like the rest of the report.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from lorasweep import results
from lorasweep.analysis import lr_batch
from lorasweep.config import StudyConfig
from lorasweep.report import cost, same_step
from lorasweep.report.stats import Estimate, diff_interval
from lorasweep.report.tuned import StudyResults

CURVATURE_FILE = Path("analysis") / "curvature.json"
PROXY_FILE = Path("analysis") / "proxy.json"  # written by ``lorasweep proxy`` into the target's run dir


@dataclass
class NoiseCell:
    values: list[float]  # B_simple per seed (whole-trial average), examples
    reason: str | None = None  # why not estimable


@dataclass
class Insight:
    best_batch: dict[str, int] = field(default_factory=dict)  # on validation
    noise: dict[tuple[str, int], NoiseCell] = field(default_factory=dict)
    curvature: dict | None = None
    proxy: dict | None = None  # ``proxy.run_proxy``'s result, when a proxy study was checked against this one
    lr_points: dict[str, list[tuple[int, float, bool]]] = field(default_factory=dict)  # (B, LR, bracketed)
    lr_fit: dict[str, lr_batch.PowerLaw | None] = field(default_factory=dict)
    cost: dict[str, list[cost.CostPoint]] = field(default_factory=dict)
    recommendation: dict[str, cost.Recommendation | None] = field(default_factory=dict)
    axis: str = "steps"
    tolerance: float = 0.0
    level: float = 0.95
    same_step: same_step.Curves | None = None


def build(cfg: StudyConfig, run_dir: Path, res: StudyResults) -> Insight:
    r = cfg.report
    ins = Insight(axis=r.cost_axis, tolerance=r.cost_tolerance, level=r.confidence)
    by_id = {row["id"]: row for row in res.rows}

    def diff(x, y):
        return diff_interval(x, y, r.confidence, r.bootstrap)

    for m in res.methods:
        cells = [(b, res.tuned[(m, b)]) for b in res.batches if (m, b) in res.tuned]
        done = [(b, t) for b, t in cells if t.estimate is not None and t.best.cell is not None]
        if done:
            ins.best_batch[m] = max(done, key=lambda bt: (bt[1].best.cell.val_mean or 0.0, -bt[0]))[0]
        ins.lr_points[m] = [(b, t.best.lr, t.best.bracketed) for b, t in done]
        ins.lr_fit[m] = lr_batch.fit_power_law(
            [(b, lr) for b, lr, ok in ins.lr_points[m] if ok], r.confidence
        )
        points = []
        for b, t in done:
            trains = [by_id[i].get("train", {}) for i in t.best.cell.ids if i in by_id]
            ins.noise[(m, b)] = _noise(trains)
            points.append(_cost_point(m, b, t, trains))
        ins.cost[m] = points
        ins.recommendation[m] = (
            cost.recommend(points, r.cost_tolerance, r.cost_axis, diff) if points else None
        )
    ins.same_step = same_step.load(run_dir, res)
    path = run_dir / CURVATURE_FILE
    ins.curvature = results.read_json(path) if path.exists() else None
    path = run_dir / PROXY_FILE
    ins.proxy = results.read_json(path) if path.exists() else None
    return ins


def _noise(trains: list[dict]) -> NoiseCell:
    summaries = [t.get("noise_scale") for t in trains if t.get("noise_scale")]
    values = [s["b_simple"] for s in summaries if s.get("estimable") and s.get("b_simple") is not None]
    reasons = [s.get("reason") for s in summaries if not s.get("estimable")]
    if not summaries:
        return NoiseCell([], "not recorded (trials written before the noise scale was logged)")
    return NoiseCell(values, None if values else reasons[0] if reasons else "no positive |G|² estimate")


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _cost_point(m: str, b: int, t, trains: list[dict]) -> cost.CostPoint:
    seconds = [
        tr["input_tokens"] / tr["tokens_per_second"]
        for tr in trains
        if tr.get("input_tokens") and tr.get("tokens_per_second")
    ]
    tokens = trains[0].get("input_tokens") if trains else t.tokens
    flops = (
        cost.train_flops(tokens, trains[0].get("frozen_parameters"), trains[0].get("trainable_parameters"))
        if trains
        else None
    )
    return cost.CostPoint(
        m,
        b,
        t.best.lr,
        t.best.cell.val_mean or 0.0,
        t.estimate,
        t.matrix,
        t.steps,
        tokens,
        _mean(seconds),
        flops,
    )


# ---------------------------------------------------------------- Markdown


def markdown(ins: Insight, res: StudyResults, unit: str) -> list[str]:
    lines = []
    lines += _noise_lines(ins, res)
    lines += _curvature_lines(ins, res)
    lines += _lr_lines(ins)
    lines += _cost_lines(ins, unit)
    lines += _proxy_lines(ins)
    return lines


def _noise_lines(ins: Insight, res: StudyResults) -> list[str]:
    lines = [
        "## Why batch size matters: gradient noise scale",
        "",
        "B_simple = tr(Σ)/|G|² (McCandlish et al., arXiv 1812.06162), estimated during training from the "
        "micro-batch and accumulated gradients (in examples; mean over the trial, [min, max] over seeds). "
        "Batch sizes well below B_simple waste little data per step; well above it, extra examples per "
        "step buy little.",
        "",
        "| method | best B (validation) | " + " | ".join(f"B={b}" for b in res.batches) + " |",
        "|---|---|" + "---|" * len(res.batches),
    ]
    reasons: dict[str, set[int]] = {}  # why not estimable -> the batch sizes it applies to
    for m in res.methods:
        row = []
        for b in res.batches:
            n = ins.noise.get((m, b))
            if n is None:
                row.append("—")
            elif n.values:
                row.append(f"{statistics.fmean(n.values):.3g} [{min(n.values):.3g}, {max(n.values):.3g}]")
            else:
                row.append("not estimable")
                # runs written before this report named the micro-batch size in the reason: one line per kind
                why = re.sub(
                    r" \((micro-batch = effective batch \d+|the micro-batch is the whole batch)\)",
                    "",
                    n.reason or "",
                )
                reasons.setdefault(why or "no estimate", set()).add(b)
        lines.append(f"| {m} | {ins.best_batch.get(m, '—')} | " + " | ".join(row) + " |")
    for reason, batches in sorted(reasons.items()):
        at = ", ".join(str(b) for b in sorted(batches))
        lines += ["", f"Not estimable at B = {at}: {reason}."]
    return lines + [""]


def _curvature_lines(ins: Insight, res: StudyResults) -> list[str]:
    lines = ["## Curvature at initialisation", ""]
    cur = ins.curvature
    if not cur:
        return lines + ["Not computed: run `lorasweep curvature CONFIG` to add λmax per method.", ""]
    lines += [
        f"Largest Hessian eigenvalue of the training loss w.r.t. the adapter at init (Lanczos on "
        f"Hessian-vector products, {cur['examples']} training examples), beside the LR chosen on validation "
        "at each method's best batch size. Stability of gradient descent suggests LR ∝ 1/λmax "
        "(arXiv 2602.04998).",
        "",
        "| method | λmax | λmax / first method's | chosen LR (best B) | LR / first method's | λmax × LR |",
        "|---|---|---|---|---|---|",
    ]
    first = None
    for m in res.methods:
        c = cur["methods"].get(m)
        b = ins.best_batch.get(m)
        lr = res.tuned[(m, b)].best.lr if b is not None else None
        if c is None:
            continue
        first = first or (c["lambda_max"], lr)
        lam_ratio = c["lambda_max"] / first[0] if first[0] else None
        lr_ratio = lr / first[1] if lr and first[1] else None
        lines.append(
            f"| {m} | {c['lambda_max']:.4g}{'' if c['converged'] else ' (not converged)'} | "
            f"{_g(lam_ratio)} | {_g(lr)} (B={b}) | {_g(lr_ratio)} | {_g(c['lambda_max'] * lr if lr else None)} |"
        )
    return lines + [""]


def _g(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def _lr_lines(ins: Insight) -> list[str]:
    level = f"{ins.level:.0%}"
    lines = [
        "## Best learning rate against batch size",
        "",
        f"Power law LR = c·B^k fitted to the validation-chosen LRs of the bracketed cells (OLS in log-log; "
        f"{level} t-interval on k). The square-root (k = 0.5) and linear (k = 1) rules are drawn through the "
        "same points for comparison; rms = residual in decades.",
        "",
        "![best LR vs batch size](lr_vs_batch.png)",
        "",
        "| method | cells (bracketed) | k [interval] | rms fit | rms √ rule | rms linear rule |",
        "|---|---|---|---|---|---|",
    ]
    for m, pts in ins.lr_points.items():
        fit = ins.lr_fit.get(m)
        ok = [(b, lr) for b, lr, br in pts if br]
        rules = {name: lr_batch.rule_line(ok, k) for name, k in lr_batch.RULES.items()}
        if fit is None:
            lines.append(f"| {m} | {len(pts)} ({len(ok)}) | — (needs two bracketed cells) | — | — | — |")
            continue
        k = (
            f"{fit.exponent:.2f} [{fit.lo:.2f}, {fit.hi:.2f}]"
            if fit.lo is not None
            else f"{fit.exponent:.2f} [—]"
        )
        lines.append(
            f"| {m} | {len(pts)} ({len(ok)}) | {k} | {fit.rms_log10:.2f} | "
            f"{rules['square-root'].rms_log10:.2f} | {rules['linear'].rms_log10:.2f} |"
        )
    return lines + [""]


def _cost_lines(ins: Insight, unit: str) -> list[str]:
    lines = [
        "## Cost frontier (fixed data budget)",
        "",
        "Tuned test value against the cost of one trial at each batch size: optimizer steps, training "
        "tokens, training wall seconds (mean over seeds; this machine, under its load) and FLOPs = tokens × "
        "(4·N_frozen + 6·N_trainable) (forward + backward through the frozen base, weight gradients for "
        "the adapter only).",
        "",
        "![cost frontier](cost_frontier.png)",
        "",
        f"Recommendation: per method, the cheapest batch size (by {ins.axis}) whose **validation** score is "
        f"within {ins.tolerance:g} points of that method's best; its test value and its paired test "
        "difference to the best batch size follow.",
        "",
        f"| method | recommended B | test ({unit}) | best B | test ({unit}) | difference (test) | {ins.axis} saved |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, rec in ins.recommendation.items():
        if rec is None:
            lines.append(f"| {m} | — | — | — | — | — | — |")
            continue
        saved = f"{rec.saving:.2g}x" if rec.saving else "—"
        lines.append(
            f"| {m} | {rec.chosen.batch_size} | {rec.chosen.test.fmt()} | {rec.best.batch_size} | "
            f"{rec.best.test.fmt()} | {rec.difference.fmt()} | {saved} |"
        )
    lines += [
        "",
        "| method | B | steps | tokens | train seconds | FLOPs | test |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, pts in ins.cost.items():
        for p in pts:
            secs = f"{p.seconds:.1f}" if p.seconds is not None else "—"
            flops = f"{p.flops:.3g}" if p.flops is not None else "—"
            lines.append(
                f"| {m} | {p.batch_size} | {p.steps} | {p.tokens} | {secs} | {flops} | {p.test.fmt()} |"
            )
    return lines + [""]


def _proxy_lines(ins: Insight) -> list[str]:
    lines = ["## Proxy tuning", ""]
    px = ins.proxy
    if not px or not px.get("transfer"):
        return lines + [
            "Not run: `lorasweep proxy CONFIG` tunes the batch size at a cheap proxy (rank 1, one seed) "
            "and checks here whether its recommendation transfers.",
            "",
        ]
    p = px["proxy"]
    ratio = px.get("compute_ratio")
    secs = px.get("seconds_ratio")
    lines += [
        f"The same study at a proxy (adapter rank {p['rank']}, model {p['model']}"
        + (f" (its first {p['layers']} decoder layers)" if p.get("layers") else "")
        + f", seeds {p['seeds']}, no "
        "refinement step, no reference config) recommended a batch size per method by the cost rule "
        "above; *transferred* = this study's tuned test value at that batch size lies inside the interval "
        f"of this study's best batch size (chosen on validation). Proxy compute ÷ this study's: "
        f"{_pct(ratio)} of the training FLOPs, {_pct(secs)} of the trial seconds.",
        "",
        "| method | proxy's B (LR) | test here at that B | best B here | test at best B | transferred "
        "| proxy's best B: transferred |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, rec in px["recommendation"].items():
        t = px["transfer"].get(m) or {}
        if t.get("transferred") is None:
            lines.append(
                f"| {m} | {rec['batch_size']} ({rec['lr']:.3g}) | — | — | — | — ({t.get('why', '')}) | — |"
            )
            continue
        best_t = t.get("proxy_best_transferred")
        lines.append(
            f"| {m} | {rec['batch_size']} ({rec['lr']:.3g}) | {_est(t['target_test_at_recommended'])} | "
            f"{t['target_best_batch_size']} | {_est(t['target_best_test'])} | "
            f"{'yes' if t['transferred'] else '**no**'} | "
            f"{'—' if best_t is None else ('yes' if best_t else '**no**')} (B={rec.get('best_batch_size', '—')}) |"
        )
    return lines + [""]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _est(d: dict) -> str:
    return Estimate(**d).fmt()


# ---------------------------------------------------------------- summary.json


def as_dict(ins: Insight) -> dict:
    def fit(f: lr_batch.PowerLaw | None) -> dict | None:
        if f is None:
            return None
        return {
            "exponent": f.exponent,
            "interval": [f.lo, f.hi] if f.lo is not None else None,
            "lr_at_batch_1": f.predict(1),
            "cells": f.n,
            "rms_log10": f.rms_log10,
            "excludes_square_root": f.excludes(0.5),
            "excludes_linear": f.excludes(1.0),
        }

    def rec(x: cost.Recommendation | None) -> dict | None:
        if x is None:
            return None
        return {
            "batch_size": x.chosen.batch_size,
            "lr": x.chosen.lr,
            "test": x.chosen.test.as_dict(),
            "best_batch_size": x.best.batch_size,
            "best_test": x.best.test.as_dict(),
            "difference": x.difference.as_dict(),
            "axis": x.axis,
            "tolerance": x.tolerance,
            "saving": x.saving,
        }

    return {
        "same_step": same_step.as_dict(ins.same_step) if ins.same_step is not None else None,
        "noise_scale": [
            {
                "method": m,
                "batch_size": b,
                "b_simple": _mean(n.values),
                "per_seed": n.values,
                "reason": n.reason,
            }
            for (m, b), n in ins.noise.items()
        ],
        "best_batch_size": ins.best_batch,
        "curvature": ins.curvature,
        "proxy": ins.proxy,
        "lr_vs_batch": {m: fit(f) for m, f in ins.lr_fit.items()},
        "cost": {
            "flops_formula": "input tokens x (4 x frozen parameters + 6 x trainable parameters)",
            "points": [p.as_dict() for pts in ins.cost.values() for p in pts],
            "recommendation": {m: rec(x) for m, x in ins.recommendation.items()},
        },
    }
