"""Learning-rate schedules as pure functions of the optimizer step (0-based)."""

from __future__ import annotations

import math


def warmup_steps(total: int, ratio: float) -> int:
    return math.ceil(ratio * total)


def lr_factor(step: int, total: int, warmup: int, kind: str) -> float:
    """Multiplier of the peak LR for the update at ``step``.

    Warmup is linear over steps ``0 .. warmup-1`` at ``(step+1)/(warmup+1)`` of the peak, so the last
    warmup step runs at ``warmup/(warmup+1)`` and the peak LR is first used one step later, at step
    ``warmup`` (where the decay starts); unlike HF's schedulers the first update does not run at LR 0
    (which would waste a sixth of a 6-step budget at batch 512).  Cosine and linear then decay towards
    0 at step ``total``.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if kind == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if kind == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown schedule {kind!r}; valid: cosine, linear, constant")
