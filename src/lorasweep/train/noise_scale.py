"""Gradient noise scale B_simple = tr(Σ) / |G|² during training, from gradients a step already has.

McCandlish et al., "An Empirical Model of Large-Batch Training" (arXiv 1812.06162, appendix A): the
squared norm of a mean gradient over ``b`` independent examples has expectation ``|G|² + tr(Σ)/b``
(``G`` the true gradient, ``Σ`` the per-example gradient covariance).  Two batch sizes ``b < B`` give
two equations and so unbiased estimates of both unknowns::

    |G|²  ≈ (B·|G_B|² − b·|G_b|²) / (B − b)
    tr(Σ) ≈ (|G_b|² − |G_B|²) / (1/b − 1/B)

With gradient accumulation both sizes are free: every micro-batch's contribution to the accumulated
gradient is a small-batch gradient, the accumulated gradient (whose norm the step computes for
clipping) is the big one.  Each estimate is noisy (either may be negative at one step), so, as in the
paper, numerator and denominator are smoothed separately with an exponential moving average and the
ratio is taken of the averages.

Batch sizes are counted in examples.  The loss is a token mean over the step (``loop.py``), so a
(micro-)batch gradient is a label-token-weighted mean of per-example gradients; its variance is that of
a plain mean over ``(Σ nₑ)² / Σ nₑ²`` examples (the effective count, ``effective_count``), which equals
the number of examples when they carry the same number of label tokens.

Not estimable: a step made of one micro-batch on one process observes only one batch size (use a
``train.max_micro_batch`` below the batch size to get an estimate: same examples, same loss, slower).
Under data parallelism only the micro-batches before the synchronising one are local small batches.
The pure functions come first; ``MicroGradProbe`` is the hook ``loop.py`` calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

EMA_DECAY = 0.95  # ~20-step memory: the demo's shortest trials have 32 steps


def effective_count(label_tokens: Sequence[int]) -> float:
    """Examples a token-weighted mean is worth: (Σ n)² / Σ n² (= len when all n are equal)."""
    total = float(sum(label_tokens))
    squares = float(sum(n * n for n in label_tokens))
    return total * total / squares if squares > 0 else 0.0


def two_batch_estimates(small_sq: float, b_small: float, big_sq: float, b_big: float) -> tuple[float, float]:
    """Unbiased (|G|², tr(Σ)) from E|G_b|² at batch ``b_small`` and |G_B|² at ``b_big`` (b < B)."""
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got {b_small} and {b_big}")
    g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


@dataclass(frozen=True)
class Ema:
    """Bias-corrected exponential moving averages of |G|² and tr(Σ) (separately, as the paper does)."""

    decay: float = EMA_DECAY
    g2: float = 0.0
    trace: float = 0.0
    n: int = 0

    def update(self, g2: float, trace: float) -> Ema:
        d = self.decay
        return Ema(d, d * self.g2 + (1 - d) * g2, d * self.trace + (1 - d) * trace, self.n + 1)

    @property
    def b_simple(self) -> float | None:
        """tr(Σ)/|G|² of the averages (None before the first step or while |G|² is not positive)."""
        if self.n == 0 or self.g2 <= 0:
            return None
        return self.trace / self.g2  # the bias corrections (1 - d^n) cancel in the ratio


def summarize(records: Sequence[dict], decay: float = EMA_DECAY) -> dict:
    """A trial's noise scale from its per-step records (``MicroGradProbe.observe`` output).

    ``b_simple``: the ratio of the run-wide means of the two estimates (the whole trial's average);
    ``b_simple_final``: the smoothed value at the last step (where training ended).
    """
    obs = [r for r in records if r.get("noise_g2") is not None]
    if not obs:
        return {"estimable": False}
    g2 = sum(r["noise_g2"] for r in obs) / len(obs)
    trace = sum(r["noise_trace"] for r in obs) / len(obs)
    ema = Ema(decay)
    for r in obs:
        ema = ema.update(r["noise_g2"], r["noise_trace"])
    return {
        "estimable": True,
        "steps": len(obs),
        "b_simple": trace / g2 if g2 > 0 else None,
        "b_simple_final": ema.b_simple,
        "grad_sq": g2,
        "trace_sigma": trace,
        "b_small": sum(r["noise_b_small"] for r in obs) / len(obs),
        "b_big": sum(r["noise_b_big"] for r in obs) / len(obs),
        "ema_decay": decay,
        "unit": "examples",
    }


def not_estimable_reason(micro: int, accumulation: int, world: int) -> str:
    if accumulation == 1 and world == 1:
        return (
            "one micro-batch per step (the micro-batch is the whole batch): only one batch size is "
            "observed; set train.max_micro_batch below the batch size to estimate it"
        )
    return "no step gave an estimate (fp16 loss scaling, or non-finite gradient norms)"


def summarize_trial(records: Sequence[dict], split) -> dict:
    """``summarize``, or ``{"estimable": False, "reason": ...}`` saying why not (``split``: a
    ``batching.BatchSplit``, the one the trial ended with)."""
    out = summarize(records)
    if not out["estimable"]:
        out["reason"] = not_estimable_reason(split.micro, split.accumulation, split.world)
    return out


class MicroGradProbe:
    """Squared norms of each micro-batch's gradient, read from the accumulated ``.grad`` between
    backward passes (a copy of the trainable gradients per micro-batch; no extra backward pass).

    ``loop.accumulate_step`` calls ``begin`` and then ``after_backward`` after each micro-batch; the
    loop calls ``observe`` with the step's clipped-before norm.  Fully-sharded gradients are not
    supported (each process would see only its shard).
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float = EMA_DECAY):
        self.params = list(params)
        self.ema = Ema(decay)
        self.begin(1, 1, 1)

    def begin(self, step_tokens: int, world: int, n_micro: int) -> None:
        self._prev: list[torch.Tensor] | None = None
        self._small: list[tuple[float, float]] = []  # (|G_b|², effective count) per local micro-batch
        self._scale = step_tokens / world  # .grad holds world/T x the token-loss sum
        self._world = world
        self._active = n_micro > 1  # one micro-batch: nothing to compare (and nothing to copy)

    @torch.no_grad()
    def after_backward(self, label_tokens: Sequence[int], last: bool) -> None:
        if not self._active:
            return
        grads = [p.grad.detach() for p in self.params if p.grad is not None]
        if not grads:
            return
        deltas = grads if self._prev is None else [g - q for g, q in zip(grads, self._prev, strict=True)]
        delta_sq = float(torch.stack([d.float().pow(2).sum() for d in deltas]).sum())  # one device sync
        if not last:
            self._prev = [g.clone() for g in grads]
        self.record(delta_sq, label_tokens, last)

    def record(self, delta_sq: float, label_tokens: Sequence[int], last: bool) -> None:
        """One micro-batch's squared gradient norm ``delta_sq`` (as ``.grad`` holds it: world/T x the
        token-loss sum) and its examples' label tokens."""
        if not self._active:
            return
        n = sum(label_tokens)
        if last and self._world > 1:
            return  # the synchronising backward mixes every process's gradient: not a local batch
        if n > 0:
            # this micro-batch's contribution is (world/T)·Σ∇ℓ; its own token mean is that x T/(world·n)
            self._small.append((delta_sq * (self._scale / n) ** 2, effective_count(label_tokens)))

    def observe(self, grad_norm: float, step_label_tokens: Sequence[int]) -> dict:
        """Per-step fields for the step log: this step's estimates and the smoothed B_simple."""
        self._prev = None
        b_big = effective_count(step_label_tokens)
        if not self._small or not math.isfinite(grad_norm):
            return {}
        # E|G_b|² = |G|² + tr(Σ)·mean(1/bᵢ): the small size is the harmonic mean of the counts
        b_small = len(self._small) / sum(1.0 / b for _, b in self._small)
        small_sq = sum(s for s, _ in self._small) / len(self._small)
        if not (b_small < b_big and math.isfinite(small_sq)):
            return {}
        g2, trace = two_batch_estimates(small_sq, b_small, grad_norm**2, b_big)
        self.ema = self.ema.update(g2, trace)
        return {
            "noise_g2": g2,
            "noise_trace": trace,
            "noise_b_small": b_small,
            "noise_b_big": b_big,
            "b_simple": self.ema.b_simple,
        }


class StackedGradProbe:
    """``MicroGradProbe`` for the K members of a packed pass (``train/packed.py``): their gradients are
    the rows of one (K, P) buffer, so each micro-batch's per-member squared norms are one reduction,
    and each member keeps its own estimate (its own tokens, its own smoothing)."""

    def __init__(self, k: int, decay: float = EMA_DECAY):
        self.members = [MicroGradProbe([], decay) for _ in range(k)]
        self._prev: torch.Tensor | None = None
        self._active = False

    def keep(self, positions: Sequence[int]) -> None:
        self.members = [self.members[i] for i in positions]

    def begin(self, step_tokens: Sequence[int], n_micro: int) -> None:
        for m, t in zip(self.members, step_tokens, strict=True):
            m.begin(t, 1, n_micro)
        self._prev = None
        self._active = n_micro > 1

    @torch.no_grad()
    def after_backward(self, grad: torch.Tensor, label_tokens: Sequence[Sequence[int]], last: bool) -> None:
        """``grad``: the (K, P) gradient buffer after a micro-batch; ``label_tokens[k]``: member k's
        label tokens per example of that micro-batch."""
        if not self._active:
            return
        delta = grad if self._prev is None else grad - self._prev
        sq = delta.float().pow(2).sum(1).tolist()  # one device sync for all members
        self._prev = None if last else grad.clone()
        for m, s, tokens in zip(self.members, sq, label_tokens, strict=True):
            m.record(s, tokens, last)

    def observe(self, norms: Sequence[float], step_label_tokens: Sequence[Sequence[int]]) -> list[dict]:
        return [m.observe(n, t) for m, n, t in zip(self.members, norms, step_label_tokens, strict=True)]
