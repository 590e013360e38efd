"""Gradient noise scale (arXiv 1812.06162, appendix A): the two-batch estimator, its smoothing, and
the probe in the training loop (no extra backward pass, no change to training)."""

from __future__ import annotations

import math

import pytest
import torch
from accelerate import Accelerator

from lorasweep.train import batching, loop, noise_scale
from tests.train.test_accumulation import lora_model, variable_examples


@pytest.mark.parametrize(
    "g2, trace, b, big",
    [(1.0, 20.0, 4, 64), (0.3, 0.3, 1, 2), (5.0, 1000.0, 8, 16), (2.0, 0.0, 2, 128)],
)
def test_two_batch_estimates_invert_the_expectations(g2, trace, b, big):
    small_sq, big_sq = g2 + trace / b, g2 + trace / big  # E|G_b|² = |G|² + tr(Σ)/b
    est_g2, est_trace = noise_scale.two_batch_estimates(small_sq, b, big_sq, big)
    assert est_g2 == pytest.approx(g2, rel=1e-12, abs=1e-12)
    assert est_trace == pytest.approx(trace, rel=1e-12, abs=1e-9)


def test_two_batch_estimates_need_two_sizes():
    with pytest.raises(ValueError, match="b_small < b_big"):
        noise_scale.two_batch_estimates(1.0, 8, 1.0, 8)


def test_effective_count_of_a_token_weighted_mean():
    assert noise_scale.effective_count([7, 7, 7, 7]) == pytest.approx(4.0)
    assert noise_scale.effective_count([1, 3]) == pytest.approx(16 / 10)  # (Σn)²/Σn²
    assert noise_scale.effective_count([]) == 0.0


def test_ema_smooths_numerator_and_denominator_separately():
    ema = noise_scale.Ema(0.5)
    assert ema.b_simple is None
    ema = ema.update(1.0, 10.0).update(3.0, 10.0)
    # |G|²: 0.5·(0.5·1) + 0.5·3 = 1.75; tr(Σ): 0.5·5 + 5 = 7.5 (the bias corrections cancel)
    assert ema.g2 == pytest.approx(1.75) and ema.trace == pytest.approx(7.5)
    assert ema.b_simple == pytest.approx(7.5 / 1.75)  # not the mean of the per-step ratios (10, 3.33)


def linear_regression_run(weights: list[int] | None, steps: int, b: int, big: int, seed: int = 0):
    """Squared-error regression, y = x·w* + s·ε, x ~ N(0, I_d), at a fixed w = w* + δ, measured by
    the probe exactly as the loop measures it: micro-batch backward passes into one accumulated
    gradient, the loss a weighted sum divided by the step's total weight ("label tokens")."""
    d, s = 10, 1.0
    g = torch.Generator().manual_seed(seed)
    delta = torch.zeros(d, dtype=torch.float64)
    delta[0] = 1.0
    w_star = torch.randn(d, generator=g, dtype=torch.float64)
    w = torch.nn.Parameter(w_star + delta)
    probe = noise_scale.MicroGradProbe([w])
    records = []
    for step in range(steps):
        x = torch.randn(big, d, generator=g, dtype=torch.float64)
        y = x @ w_star + s * torch.randn(big, generator=g, dtype=torch.float64)
        n = weights[step % len(weights)] if weights else [1] * big
        n = torch.tensor(n, dtype=torch.float64)
        total = int(n.sum())
        probe.begin(total, 1, big // b)
        w.grad = None
        for i in range(0, big, b):
            sl = slice(i, i + b)
            # example loss = its per-"token" mean (x·w − y)², weighted by its token count in the sum
            (((x[sl] @ w - y[sl]) ** 2 * n[sl]).sum() / total).backward()
            probe.after_backward([int(v) for v in n[sl]], last=i + b == big)
        records.append(probe.observe(float(w.grad.norm()), [int(v) for v in n]))
    # per-example gradient 2x(x·δ − sε): G = 2δ, tr(Σ) = 4((d+1)|δ|² + d s²) (Isserlis), so
    truth = ((d + 1) * float(delta @ delta) + d * s * s) / float(delta @ delta)
    return noise_scale.summarize(records), records, truth


def test_synthetic_linear_regression_within_20_percent():
    """Acceptance (issue 11): the estimate lies within 20 % of the known tr(Σ)/|G|² (= 21 here)."""
    summary, records, truth = linear_regression_run(None, steps=400, b=4, big=32)
    assert truth == 21.0
    assert summary["estimable"] and summary["steps"] == 400
    assert summary["b_small"] == 4 and summary["b_big"] == 32
    assert abs(summary["b_simple"] / truth - 1) < 0.20, summary
    assert abs(summary["b_simple_final"] / truth - 1) < 0.20, summary  # the smoothed, last-step value
    assert records[-1]["b_simple"] == pytest.approx(summary["b_simple_final"])


def test_unequal_token_counts_use_the_effective_count():
    """Examples carrying 1..6 label tokens: the token-weighted batches are worth fewer examples; with
    the effective count the estimate stays on the truth."""
    g = torch.Generator().manual_seed(3)
    weights = [torch.randint(1, 7, (32,), generator=g).tolist() for _ in range(7)]
    summary, _, truth = linear_regression_run(weights, steps=400, b=4, big=32, seed=1)
    assert summary["b_big"] < 32 and summary["b_small"] < 4
    assert abs(summary["b_simple"] / truth - 1) < 0.20, summary


def test_one_size_is_not_estimable_and_says_why():
    split = batching.derive_split(16, 16)
    out = noise_scale.summarize_trial([{}, {}], split)
    assert out == {"estimable": False, "reason": out["reason"]}
    assert "one micro-batch per step" in out["reason"] and "train.max_micro_batch" in out["reason"]


def _train(monkeypatch, max_micro: int, probe: bool):
    if not probe:
        monkeypatch.setattr(noise_scale, "MicroGradProbe", lambda params: None)
    records = []
    spec = loop.TrainSpec(split=batching.derive_split(8, max_micro), lr=1e-2, seed=0)
    result = loop.train(
        lora_model(), variable_examples(16, seed=1), spec, 0, Accelerator(cpu=True), records.append
    )
    return result, records


def test_the_loop_logs_b_simple_per_step_and_summarises_it(monkeypatch):
    result, records = _train(monkeypatch, max_micro=2, probe=True)  # micro 2 x accumulation 4
    assert all(r["noise_b_small"] == pytest.approx(2.0, rel=0.3) for r in records)
    assert all(math.isfinite(r["noise_g2"]) and math.isfinite(r["noise_trace"]) for r in records)
    assert records[-1]["b_simple"] == pytest.approx(result.noise_scale["b_simple_final"])
    assert result.noise_scale["estimable"] and result.noise_scale["steps"] == 2


def test_the_probe_does_not_change_training(monkeypatch):
    with_probe, _ = _train(monkeypatch, max_micro=2, probe=True)
    without, _ = _train(monkeypatch, max_micro=2, probe=False)
    assert with_probe.losses == without.losses  # bit for bit: the probe only reads gradients
    assert without.noise_scale["estimable"] is False


def test_accumulation_one_records_not_estimable(monkeypatch):
    result, records = _train(monkeypatch, max_micro=8, probe=True)
    assert not any("b_simple" in r for r in records)
    assert result.noise_scale["estimable"] is False
    assert "only one batch size" in result.noise_scale["reason"]
