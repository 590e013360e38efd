"""A verdict on each claim of the study (arXiv 2602.09492), from tuned cells, as pure functions.

Input: per method, per batch size, the cell chosen on validation data (its validation score and its
seeds x test-items score matrix), and per method the reference config's matrix.  Every candidate
(which batch size is best, which is worst, where a peak might be) is picked on validation scores; the
test matrices only measure it, through paired bootstrap intervals (``stats.diff_interval``).  A
verdict is "supported" or "contradicted" only when the interval says so; otherwise "inconclusive".
Values are in display units (points for accuracies).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lorasweep.report.stats import Estimate, diff_interval

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_APPLICABLE = "supported", "contradicted", "inconclusive", "n/a"


@dataclass(frozen=True)
class TunedCell:
    lr: float
    validation: float  # validation score that chose this cell (mean over seeds)
    test: np.ndarray  # seeds x items, display units


@dataclass
class Claim:
    key: str
    text: str
    verdict: str
    evidence: list[str] = field(default_factory=list)  # one sentence each, with numbers and intervals
    numbers: dict = field(default_factory=dict)


Curves = dict[str, dict[int, TunedCell]]  # method -> batch size -> tuned cell
Diff = Callable[[np.ndarray, np.ndarray], Estimate]


def _best_batch(curve: dict[int, TunedCell]) -> int:
    return max(curve, key=lambda b: (curve[b].validation, -b))


def _worst_batch(curve: dict[int, TunedCell]) -> int:
    return min(curve, key=lambda b: (curve[b].validation, b))


def edge_note(batch: int, searched) -> str:
    """Said in the same sentence as a best batch size that is an end of the searched grid."""
    if len(searched) > 1 and batch == min(searched):
        return f" (B={batch} is the smallest batch size searched: a smaller one may do better)"
    if len(searched) > 1 and batch == max(searched):
        return f" (B={batch} is the largest batch size searched: a larger one may do better)"
    return ""


def batch_spread(curves: Curves, threshold: float, diff: Diff) -> Claim:
    """(a) Batch size alone (LR tuned per batch size) moves accuracy by more than ``threshold``."""
    c = Claim(
        "a",
        f"batch size alone (LR tuned per batch size) moves accuracy by more than {threshold:g} points",
        "",
    )
    any_above, all_below = False, True
    for m, curve in curves.items():
        if len(curve) < 2:
            continue
        hi, lo = _best_batch(curve), _worst_batch(curve)
        d = diff(curve[hi].test, curve[lo].test)
        c.numbers[m] = {"best_batch": hi, "worst_batch": lo, "difference": d.as_dict()}
        c.evidence.append(
            f"{m}: B={hi} vs B={lo} (best vs worst on validation): {d.fmt()} points on test"
            + edge_note(hi, curve)
        )
        any_above |= d.lo > threshold
        # contradicted needs every pair of batch sizes within the threshold (intersection-union test)
        pairs = [diff(curve[a].test, curve[b].test) for a, b in itertools.combinations(sorted(curve), 2)]
        all_below &= all(-threshold < e.lo and e.hi < threshold for e in pairs)
    c.verdict = SUPPORTED if any_above else CONTRADICTED if all_below and c.numbers else INCONCLUSIVE
    return c


def lora_matches(curves: Curves, margin: float, diff: Diff, reference: str = "lora") -> Claim:
    """(b) At their tuned best, vanilla LoRA matches (or beats) every other method within ``margin``."""
    c = Claim(
        "b", f"at their tuned best, vanilla LoRA matches the other methods (margin {margin:g} points)", ""
    )
    if reference not in curves or len(curves) < 2:
        c.verdict = NOT_APPLICABLE
        c.evidence.append(f"needs {reference!r} and at least one other method")
        return c
    top = {m: _best_batch(curve) for m, curve in curves.items() if curve}
    best = {m: curves[m][b] for m, b in top.items()}
    verdicts = []
    for m in curves:
        if m == reference:
            continue
        d = diff(best[reference].test, best[m].test)
        c.numbers[m] = {"difference": d.as_dict()}
        c.evidence.append(
            f"{reference} (B={top[reference]}) - {m} (B={top[m]}), each at its best (B, LR) on "
            f"validation: {d.fmt()} points"
            + "".join(sorted({edge_note(top[k], curves[k]) for k in (reference, m)}))
        )
        verdicts.append(SUPPORTED if d.lo > -margin else CONTRADICTED if d.hi < -margin else INCONCLUSIVE)
    c.verdict = (
        CONTRADICTED
        if CONTRADICTED in verdicts
        else SUPPORTED
        if all(v == SUPPORTED for v in verdicts)
        else INCONCLUSIVE
    )
    return c


def non_monotone(curves: Curves, diff: Diff) -> Claim:
    """(c) Accuracy is not monotone in batch size: an interior peak (or plateau) or dip that stands out
    from both sides by more than its uncertainty."""
    c = Claim(
        "c", "accuracy is not monotone in batch size (an interior peak, plateau or dip beyond noise)", ""
    )
    found, all_monotone = False, True
    for m, curve in curves.items():
        bs = sorted(curve)
        if len(bs) < 3:
            all_monotone = False
            c.evidence.append(f"{m}: needs at least 3 batch sizes")
            continue
        inner = bs[1:-1]
        val = {b: curve[b].validation for b in bs}
        peak = max(inner, key=lambda b: (val[b], -b))
        dip = min(inner, key=lambda b: (val[b], b))
        left_lo = min(bs[: bs.index(peak)], key=lambda b: (val[b], b))
        right_lo = min(bs[bs.index(peak) + 1 :], key=lambda b: (val[b], b))
        left_hi = max(bs[: bs.index(dip)], key=lambda b: (val[b], -b))
        right_hi = max(bs[bs.index(dip) + 1 :], key=lambda b: (val[b], -b))
        p1, p2 = diff(curve[peak].test, curve[left_lo].test), diff(curve[peak].test, curve[right_lo].test)
        d1, d2 = diff(curve[left_hi].test, curve[dip].test), diff(curve[right_hi].test, curve[dip].test)
        c.numbers[m] = {
            "peak": {"batch": peak, "vs_left": [left_lo, p1.as_dict()], "vs_right": [right_lo, p2.as_dict()]},
            "dip": {"batch": dip, "left": [left_hi, d1.as_dict()], "right": [right_hi, d2.as_dict()]},
        }
        is_peak, is_dip = p1.lo > 0 and p2.lo > 0, d1.lo > 0 and d2.lo > 0
        if is_peak:
            c.evidence.append(
                f"{m}: interior peak at B={peak}: +{p1.fmt()} over B={left_lo}, +{p2.fmt()} over B={right_lo}"
            )
        if is_dip:
            c.evidence.append(
                f"{m}: interior dip at B={dip}: {d1.fmt()} below B={left_hi}, {d2.fmt()} below B={right_hi}"
            )
        if not (is_peak or is_dip):
            c.evidence.append(
                f"{m}: best interior B={peak} vs B={left_lo} {p1.fmt()}, vs B={right_lo} {p2.fmt()}; "
                f"worst interior B={dip} vs B={left_hi} {d1.fmt()}, vs B={right_hi} {d2.fmt()}"
            )
        found |= is_peak or is_dip
        # monotone: the best interior point is clearly below one end and the worst clearly above the other
        ends = (curve[bs[0]].test, curve[bs[-1]].test)
        below_an_end = any(diff(curve[peak].test, e).hi < 0 for e in ends)
        above_an_end = any(diff(curve[dip].test, e).lo > 0 for e in ends)
        all_monotone &= below_an_end and above_an_end
    c.verdict = SUPPORTED if found else CONTRADICTED if all_monotone and c.numbers else INCONCLUSIVE
    return c


def collapse(curves: Curves, points: float, diff: Diff) -> Claim:
    """(d) Accuracy collapses at the largest batch size: it falls more than ``points`` below the best."""
    c = Claim(
        "d", f"accuracy collapses at the largest batch size (a drop of more than {points:g} points)", ""
    )
    verdicts = []
    for m, curve in curves.items():
        if len(curve) < 2:
            continue
        top, largest = _best_batch(curve), max(curve)
        d = diff(curve[top].test, curve[largest].test)
        c.numbers[m] = {"best_batch": top, "largest_batch": largest, "drop": d.as_dict()}
        c.evidence.append(
            f"{m}: B={top} (best on validation) - B={largest}: {d.fmt()} points" + edge_note(top, curve)
        )
        verdicts.append(SUPPORTED if d.lo > points else CONTRADICTED if d.hi < points else INCONCLUSIVE)
    c.verdict = (
        SUPPORTED
        if verdicts and all(v == SUPPORTED for v in verdicts)
        else CONTRADICTED
        if verdicts and all(v == CONTRADICTED for v in verdicts)
        else INCONCLUSIVE
    )
    return c


def ranking_changes(curves: Curves, reference: dict[str, np.ndarray], ref_label: str, diff: Diff) -> Claim:
    """(e) The methods' ranking at one reference (batch, LR) differs from their ranking when tuned."""
    c = Claim("e", f"the methods rank differently at the reference config ({ref_label}) than when tuned", "")
    methods = [m for m in curves if m in reference and curves[m]]
    if len(methods) < 2:
        c.verdict = NOT_APPLICABLE
        c.evidence.append("needs two methods with reference and tuned results")
        return c
    best = {m: curves[m][_best_batch(curves[m])].test for m in methods}
    flipped, all_same = False, True
    for a, b in itertools.combinations(methods, 2):
        r, t = diff(reference[a], reference[b]), diff(best[a], best[b])
        c.numbers[f"{a} - {b}"] = {"reference": r.as_dict(), "tuned": t.as_dict()}
        c.evidence.append(f"{a} - {b}: at the reference {r.fmt()}, tuned {t.fmt()} points")
        sig_r, sig_t = r.excludes(0), t.excludes(0)
        flipped |= sig_r and sig_t and (r.mean > 0) != (t.mean > 0)
        all_same &= sig_r and sig_t and (r.mean > 0) == (t.mean > 0)
    c.verdict = SUPPORTED if flipped else CONTRADICTED if all_same else INCONCLUSIVE
    return c


def all_claims(
    curves: Curves,
    reference: dict[str, np.ndarray],
    ref_label: str,
    *,
    spread: float = 10.0,
    margin: float = 3.0,
    collapse_points: float = 10.0,
    level: float = 0.95,
    n_boot: int = 2000,
) -> list[Claim]:
    def diff(x, y):
        return diff_interval(x, y, level, n_boot)

    return [
        batch_spread(curves, spread, diff),
        lora_matches(curves, margin, diff),
        non_monotone(curves, diff),
        collapse(curves, collapse_points, diff),
        ranking_changes(curves, reference, ref_label, diff),
    ]
