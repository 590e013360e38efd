"""Cost frontier under a fixed data budget, and the cheapest batch size within a tolerance of the best.

Per (method, batch size), the tuned cell (LR chosen on validation) costs what one of its trials cost:
optimizer steps, training tokens, wall seconds of training (mean over seeds; machine- and load-
dependent) and FLOPs.  FLOPs per training token ≈ 4·N_frozen + 6·N_trainable: the forward pass costs
2 FLOPs per parameter, the backward pass 2 more for the activation gradients through every layer
(the frozen ones included, to reach earlier adapters) and 2 more for the weight gradients of the
trainable parameters only (the 6N rule of Kaplan et al., arXiv 2001.08361, with the frozen weights'
gradient term removed; attention-score FLOPs ignored).

The recommendation is a choice, so it reads validation scores only: among batch sizes whose
validation score lies within ``tolerance`` points of the method's best, the cheapest on ``axis``.
Its test value and its paired test difference to the best batch size are then reported with
intervals.  Pure functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lorasweep.report.stats import Estimate

AXES = ("steps", "tokens", "seconds", "flops")


def train_flops(tokens: float | None, frozen: float | None, trainable: float | None) -> float | None:
    """Training FLOPs of one trial: tokens x (4·N_frozen + 6·N_trainable)."""
    if tokens is None or frozen is None or trainable is None:
        return None
    return float(tokens) * (4.0 * frozen + 6.0 * trainable)


@dataclass(frozen=True)
class CostPoint:
    method: str
    batch_size: int
    lr: float
    validation: float  # validation score of the tuned cell (chooses)
    test: Estimate  # test value with its interval (reported)
    matrix: np.ndarray  # seeds x items, for paired comparisons
    steps: int | None
    tokens: int | None
    seconds: float | None
    flops: float | None

    def cost(self, axis: str) -> float | None:
        value = getattr(self, axis)
        return None if value is None else float(value)

    def as_dict(self) -> dict:
        """What summary.json and report.html show of the point."""
        return {
            "method": self.method,
            "batch_size": self.batch_size,
            "steps": self.steps,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "flops": self.flops,
            "test": self.test.as_dict(),
        }


@dataclass(frozen=True)
class Recommendation:
    method: str
    axis: str
    tolerance: float
    chosen: CostPoint
    best: CostPoint  # highest validation score
    difference: Estimate  # test: chosen - best, paired over items
    saving: float | None  # cost(best) / cost(chosen)


def frontier(points: list[CostPoint], axis: str) -> list[CostPoint]:
    """The Pareto front on (cost, validation score): no other point is cheaper and at least as good."""
    costed = sorted(
        (p for p in points if p.cost(axis) is not None), key=lambda p: (p.cost(axis), -p.validation)
    )
    front, best = [], -np.inf
    for p in costed:
        if p.validation > best:
            front.append(p)
            best = p.validation
    return front


def recommend(
    points: list[CostPoint], tolerance: float, axis: str, diff: Callable[[np.ndarray, np.ndarray], Estimate]
) -> Recommendation | None:
    """The cheapest batch size (on ``axis``) whose validation score is within ``tolerance`` of the best."""
    if axis not in AXES:
        raise ValueError(f"unknown cost axis {axis!r}; valid: {', '.join(AXES)}")
    costed = [p for p in points if p.cost(axis) is not None]
    if not costed:
        return None
    best = max(costed, key=lambda p: (p.validation, -p.cost(axis)))
    near = [p for p in costed if p.validation >= best.validation - tolerance]
    chosen = min(near, key=lambda p: (p.cost(axis), -p.validation))
    saving = best.cost(axis) / chosen.cost(axis) if chosen.cost(axis) else None
    # the best batch size itself: the difference is exactly zero (resampling its seeds twice would
    # give it a width)
    same = chosen is best
    difference = Estimate(0.0, 0.0, 0.0) if same else diff(chosen.matrix, best.matrix)
    return Recommendation(chosen.method, axis, tolerance, chosen, best, difference, saving)
