"""Bootstrap intervals: coverage on synthetic data with a known mean, pairing, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from lorasweep.report.stats import diff_interval, mean_interval


def coverage(draw, truth: float, n_draws: int = 1000) -> float:
    hits = 0
    for r in range(n_draws):
        e = mean_interval(draw(np.random.default_rng(r)), n_boot=500, seed=r)
        hits += e.lo <= truth <= e.hi
    return hits / n_draws


def test_coverage_over_items_is_95_percent():
    # one seed, 300 test items answered right with probability 0.6
    cov = coverage(lambda rng: (rng.random(300) < 0.6).astype(float), 0.6)
    assert 0.92 <= cov <= 0.98, cov


def test_coverage_over_items_and_seeds_is_95_percent():
    # five seeds whose accuracies vary (sd 5 points) around 0.6, 300 items each
    def draw(rng):
        p = 0.6 + rng.normal(0, 0.05, 5)
        return (rng.random((5, 300)) < p[:, None]).astype(float)

    cov = coverage(draw, 0.6)
    assert 0.92 <= cov <= 0.98, cov


def test_paired_difference_is_narrower_than_unpaired_and_centred():
    rng = np.random.default_rng(0)
    hard = rng.random(400) < 0.5  # items both cells get right or wrong together, mostly
    x = (hard | (rng.random(400) < 0.1)).astype(float)[None, :]
    y = hard.astype(float)[None, :]
    d = diff_interval(x, y)
    assert d.mean == pytest.approx(x.mean() - y.mean())
    assert d.lo > 0  # the paired difference is clearly positive
    unpaired = diff_interval(x, y[:, rng.permutation(400)])  # break the pairing
    assert d.half_width < unpaired.half_width


def test_intervals_are_deterministic_and_exact_for_constant_data():
    x = np.ones((2, 50))
    assert mean_interval(x).as_dict() == {"mean": 1.0, "lo": 1.0, "hi": 1.0}
    rng = np.random.default_rng(3)
    y = (rng.random((2, 100)) < 0.3).astype(float)
    assert mean_interval(y) == mean_interval(y)


def test_mismatched_items_are_refused():
    with pytest.raises(ValueError, match="same items"):
        diff_interval(np.ones((1, 10)), np.ones((1, 11)))
