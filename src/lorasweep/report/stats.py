"""Bootstrap intervals over test items and seeds, as pure functions of per-item score matrices.

A trial's test result is a row of per-item scores (1/0 for exact match); a cell (method, batch size,
LR) stacks its seeds: a matrix seeds x items.  The interval of a cell's mean resamples seeds and items
independently (a two-level bootstrap); a comparison of two cells on the same test items resamples the
items jointly (paired) and each side's seeds on their own.  Percentile intervals (Efron & Tibshirani,
"An Introduction to the Bootstrap", ch. 13); a fixed generator seed makes every report reproducible.
With two seeds the seed level is only crudely estimated: docs/method.md says what that means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEED = 20260209  # fixed: the same results give the same intervals


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def excludes(self, value: float) -> bool:
        return self.lo > value or self.hi < value

    def fmt(self, digits: int = 1) -> str:
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi}


def _matrix(x) -> np.ndarray:
    m = np.asarray(x, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"expected a non-empty seeds x items matrix, got shape {m.shape}")
    return m


def _resampled_means(m: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean of ``m`` over resampled seeds (drawn here) and the given resampled item indices."""
    n_boot = items.shape[0]
    seeds = rng.integers(0, m.shape[0], (n_boot, m.shape[0]))
    return m[seeds[:, :, None], items[:, None, :]].mean(axis=(1, 2))


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    lo, hi = np.quantile(samples, [a, 1 - a])
    return float(lo), float(hi)


def mean_interval(x, level: float = 0.95, n_boot: int = 2000, seed: int = SEED) -> Estimate:
    """Mean over seeds and items of ``x`` (seeds x items, or one row) with its bootstrap interval."""
    m = _matrix(x)
    rng = np.random.default_rng(seed)
    items = rng.integers(0, m.shape[1], (n_boot, m.shape[1]))
    return Estimate(float(m.mean()), *_interval(_resampled_means(m, items, rng), level))


def diff_interval(x, y, level: float = 0.95, n_boot: int = 2000, seed: int = SEED) -> Estimate:
    """mean(x) - mean(y) for two cells scored on the same test items, paired over items."""
    mx, my = _matrix(x), _matrix(y)
    if mx.shape[1] != my.shape[1]:
        raise ValueError(f"paired comparison needs the same items: {mx.shape[1]} vs {my.shape[1]}")
    rng = np.random.default_rng(seed)
    items = rng.integers(0, mx.shape[1], (n_boot, mx.shape[1]))
    d = _resampled_means(mx, items, rng) - _resampled_means(my, items, rng)
    return Estimate(float(mx.mean() - my.mean()), *_interval(d, level))
