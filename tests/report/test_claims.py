"""Claim verdicts on synthetic result tables with known answers."""

from __future__ import annotations

import numpy as np

from lorasweep.report import claims
from lorasweep.report.claims import CONTRADICTED, INCONCLUSIVE, SUPPORTED, TunedCell

N = 600  # test items
BATCHES = [4, 8, 16, 32, 64, 128]


def cell(p: float, seed: int, val: float | None = None, seeds: int = 2) -> TunedCell:
    """A tuned cell whose true accuracy is ``p``; its validation score is ``val`` (default p + noise)."""
    rng = np.random.default_rng(seed)
    test = 100.0 * (rng.random((seeds, N)) < p).astype(float)
    v = 100 * p + rng.normal(0, 1) if val is None else val
    return TunedCell(1e-3, v, test)


def curve(ps: list[float], seed: int = 0) -> dict[int, TunedCell]:
    return {b: cell(p, seed * 100 + i) for i, (b, p) in enumerate(zip(BATCHES, ps, strict=True))}


def diff(x, y):
    return claims.diff_interval(x, y, 0.95, 1000)


def test_a_clear_peak_is_found_and_noise_alone_is_not():
    peaked = {"lora": curve([0.40, 0.55, 0.70, 0.72, 0.55, 0.35])}
    assert claims.non_monotone(peaked, diff).verdict == SUPPORTED
    flat = {"lora": curve([0.5] * 6, seed=1), "pissa": curve([0.5] * 6, seed=2)}
    assert claims.non_monotone(flat, diff).verdict != SUPPORTED


def test_a_clear_dip_is_found():
    dipped = {"lora": curve([0.70, 0.60, 0.40, 0.42, 0.62, 0.71], seed=3)}
    c = claims.non_monotone(dipped, diff)
    assert c.verdict == SUPPORTED and "dip" in " ".join(c.evidence)


def test_a_monotone_decline_contradicts_non_monotonicity():
    declining = {"lora": curve([0.80, 0.70, 0.60, 0.50, 0.40, 0.30], seed=4)}
    assert claims.non_monotone(declining, diff).verdict == CONTRADICTED


def test_batch_spread_supported_contradicted_and_inconclusive():
    big = {"lora": curve([0.70, 0.65, 0.60, 0.50, 0.40, 0.30], seed=5)}
    assert claims.batch_spread(big, 10.0, diff).verdict == SUPPORTED
    same = {"lora": curve([0.5] * 6, seed=6)}
    assert claims.batch_spread(same, 10.0, diff).verdict == CONTRADICTED
    near = {"lora": curve([0.60, 0.60, 0.60, 0.60, 0.60, 0.50], seed=7)}  # 10 points: cannot tell
    assert claims.batch_spread(near, 10.0, diff).verdict == INCONCLUSIVE


def test_lora_matches_within_the_margin_and_loses_beyond_it():
    matched = {"lora": curve([0.6] * 6, seed=8), "pissa": curve([0.6] * 6, seed=9)}
    assert claims.lora_matches(matched, 8.0, diff).verdict == SUPPORTED  # 2 seeds: wide
    worse = {"lora": curve([0.4] * 6, seed=10), "pissa": curve([0.6] * 6, seed=11)}
    assert claims.lora_matches(worse, 5.0, diff).verdict == CONTRADICTED
    assert claims.lora_matches({"pissa": curve([0.6] * 6)}, 5.0, diff).verdict == claims.NOT_APPLICABLE


def test_collapse_at_the_largest_batch():
    collapsing = {"lora": curve([0.7, 0.7, 0.7, 0.6, 0.5, 0.2], seed=12)}
    assert claims.collapse(collapsing, 10.0, diff).verdict == SUPPORTED
    steady = {"lora": curve([0.7, 0.7, 0.7, 0.7, 0.7, 0.7], seed=13)}
    assert claims.collapse(steady, 10.0, diff).verdict == CONTRADICTED


def test_ranking_flip_between_reference_and_tuned():
    tuned = {"lora": curve([0.7] * 6, seed=14), "pissa": curve([0.5] * 6, seed=15)}
    flipped_ref = {"lora": cell(0.3, 16).test, "pissa": cell(0.6, 17).test}
    assert claims.ranking_changes(tuned, flipped_ref, "B=128", diff).verdict == SUPPORTED
    same_ref = {"lora": cell(0.6, 18).test, "pissa": cell(0.3, 19).test}
    assert claims.ranking_changes(tuned, same_ref, "B=128", diff).verdict == CONTRADICTED
    noisy_ref = {"lora": cell(0.5, 20).test, "pissa": cell(0.5, 21).test}
    assert claims.ranking_changes(tuned, noisy_ref, "B=128", diff).verdict == INCONCLUSIVE


def test_candidates_come_from_validation_not_test():
    # validation says B=4 is best and B=128 worst; the test data disagree. The claim measures the
    # validation-chosen pair on test and does not go looking for the test's own extremes.
    c = {b: cell(0.5, i, val=100.0 - i) for i, b in enumerate(BATCHES)}
    c[16] = cell(0.9, 99, val=10.0)
    out = claims.batch_spread({"lora": c}, 10.0, diff)
    assert out.numbers["lora"]["best_batch"] == 4 and out.numbers["lora"]["worst_batch"] == 16


def test_a_best_batch_size_at_the_end_of_the_grid_is_said_in_the_same_sentence():
    falling = {
        "lora": curve([0.9, 0.8, 0.7, 0.6, 0.5, 0.1], seed=5),
        "pissa": curve([0.5, 0.6, 0.7, 0.8, 0.85, 0.9], seed=6),
    }
    for c in (claims.batch_spread(falling, 10, diff), claims.collapse(falling, 10, diff)):
        lora = next(e for e in c.evidence if e.startswith("lora"))
        assert "B=4 is the smallest batch size searched" in lora
    spread = claims.batch_spread(falling, 10, diff)
    pissa = next(e for e in spread.evidence if e.startswith("pissa"))
    assert "B=128 is the largest batch size searched" in pissa
    b = claims.lora_matches(falling, 3, diff)
    assert "smallest" in b.evidence[0] and "largest" in b.evidence[0]
    interior = {"lora": curve([0.5, 0.9, 0.6, 0.5, 0.4, 0.3], seed=7)}
    assert "searched" not in claims.batch_spread(interior, 10, diff).evidence[0]


def test_the_report_says_how_wide_the_batch_size_span_is():
    from lorasweep.report.render import span_sentence

    narrow = span_sentence([2, 4, 8, 16, 32, 64])
    assert "a 32x span, narrower than the study's 128x" in narrow and "B <= 64 only" in narrow
    assert "narrower" not in span_sentence([4, 8, 16, 64, 128, 512])
