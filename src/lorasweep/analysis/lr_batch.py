"""Best learning rate against batch size: a power law lr = c·B^k fitted to the validation-chosen LRs,
with an interval on the exponent, and the square-root (k = 1/2) and linear (k = 1) rules beside it.

Pure functions.  The fit is ordinary least squares on (log B, log lr) over the *bracketed* cells only
(an unbracketed best LR is a bound, not an estimate); the interval on k is Student's t with n − 2
degrees of freedom around the OLS slope, so it needs three cells (two give the line, no interval).
The lattice the search walks has half-steps of factor^(1/2) (≈ 10^(1/4) by default), so each point
carries about ±1/8 decade of rounding; with few batch sizes the interval is wide, and says so.
For Adam the large-batch literature expects k between 1/2 and 1 below the critical batch size and a
fall beyond it (arXiv 2405.14578): a single power law is a summary over the swept range only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

RULES = {"square-root": 0.5, "linear": 1.0}


@dataclass(frozen=True)
class PowerLaw:
    exponent: float
    lo: float | None  # interval on the exponent (None with two points)
    hi: float | None
    log_c: float  # natural log of the LR at B = 1
    n: int
    rms_log10: float  # residual root-mean-square, in decades

    def predict(self, batch: float) -> float:
        return math.exp(self.log_c + self.exponent * math.log(batch))

    def excludes(self, k: float) -> bool | None:
        return None if self.lo is None else not self.lo <= k <= self.hi


def fit_power_law(points: Sequence[tuple[float, float]], level: float = 0.95) -> PowerLaw | None:
    """OLS fit of log lr on log B over ``points`` = [(batch size, lr)]; None with fewer than two
    distinct batch sizes."""
    pts = [(math.log(b), math.log(lr)) for b, lr in points if b > 0 and lr > 0]
    n = len(pts)
    if n < 2 or len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    k = sum((x - mx) * (y - my) for x, y in pts) / sxx
    c = my - k * mx
    resid = [y - (c + k * x) for x, y in pts]
    rms = math.sqrt(sum(r * r for r in resid) / n) / math.log(10)
    if n < 3:
        return PowerLaw(k, None, None, c, n, rms)
    se = math.sqrt(sum(r * r for r in resid) / (n - 2) / sxx)
    t = t_quantile(1 - (1 - level) / 2, n - 2)
    return PowerLaw(k, k - t * se, k + t * se, c, n, rms)


def rule_line(points: Sequence[tuple[float, float]], exponent: float) -> PowerLaw | None:
    """The line of slope ``exponent`` through the points' log-mean (a scaling rule, not a fit)."""
    pts = [(math.log(b), math.log(lr)) for b, lr in points if b > 0 and lr > 0]
    if not pts:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    c = my - exponent * mx
    rms = math.sqrt(sum((y - c - exponent * x) ** 2 for x, y in pts) / len(pts)) / math.log(10)
    return PowerLaw(exponent, None, None, c, len(pts), rms)


@functools.lru_cache(maxsize=64)
def t_quantile(p: float, dof: int) -> float:
    """Student's t quantile (bisection on the CDF, the density integrated by Simpson's rule)."""
    if not 0.5 <= p < 1:
        raise ValueError(f"p must be in [0.5, 1), got {p}")
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (dof + 1) / 2 * math.log1p(x * x / dof))

    def cdf_above_half(x: float, steps: int = 2000) -> float:  # P(0 < T < x)
        h = x / steps
        s = density(0) + density(x) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
        return s * h / 3

    lo, hi = 0.0, 1.0
    while cdf_above_half(hi) < p - 0.5:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf_above_half(mid) < p - 0.5 else (lo, mid)
    return (lo + hi) / 2
