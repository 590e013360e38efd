"""Batch semantics, the variable under study (docs/method.md, Batch semantics and loss normalisation).

effective batch = micro-batch x accumulation steps x world size, always exactly: the split is derived
from a maximum micro-batch and asserted, never floored or clamped.  Example order depends only on the
seed (and epoch), never on the batch size, so for one seed every batch size sees the same examples in
the same order; step k of batch size B consumes positions [k·B, (k+1)·B) of that order.  Trials sharing
(batch size, seed) therefore see identical micro-batches, which keeps open training several adapters
(LRs, methods) in one pass over a shared frozen base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BatchSplit:
    effective: int
    micro: int
    accumulation: int
    world: int

    def __post_init__(self) -> None:
        if self.micro * self.accumulation * self.world != self.effective:
            raise AssertionError(f"inexact batch split: {self.describe()}")

    def describe(self) -> str:
        return (
            f"effective batch {self.effective} = micro-batch {self.micro} x accumulation "
            f"{self.accumulation} x world {self.world}"
        )

    def halved(self) -> BatchSplit:
        """Same effective batch with half the micro-batch (the OOM fallback)."""
        if self.micro == 1 or self.micro % 2:
            raise ValueError(f"cannot halve micro-batch {self.micro}")
        return BatchSplit(self.effective, self.micro // 2, self.accumulation * 2, self.world)

    def smaller(self) -> BatchSplit:
        """The OOM fallback: half the micro-batch when it is even, else micro-batch 1; the effective
        batch, its examples and their order unchanged."""
        if self.micro % 2 == 0:
            return self.halved()
        return BatchSplit(self.effective, 1, self.accumulation * self.micro, self.world)


def derive_split(effective: int, max_micro: int, world: int = 1) -> BatchSplit:
    """Largest micro-batch <= ``max_micro`` that divides the per-device batch exactly."""
    if effective % world:
        raise ValueError(f"effective batch {effective} is not divisible by world size {world}")
    per_device = effective // world
    micro = max(d for d in range(1, min(max_micro, per_device) + 1) if per_device % d == 0)
    return BatchSplit(effective, micro, per_device // micro, world)


def example_order(n: int, seed: int, epoch: int = 0) -> list[int]:
    """The order in which a trial with this seed visits the ``n`` examples in ``epoch``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def steps_per_epoch(n: int, effective: int) -> int:
    """Optimizer steps in one epoch; a final partial batch is dropped (``dropped_examples`` says how
    many) so that every step has exactly ``effective`` examples."""
    return n // effective


def dropped_examples(n: int, effective: int) -> int:
    return n % effective


def step_indices(order: list[int], step: int, split: BatchSplit) -> list[int]:
    return order[step * split.effective : (step + 1) * split.effective]


def rank_micro_batches(
    indices: list[int], split: BatchSplit, rank: int, lengths: Sequence[int] | None = None
) -> list[list[int]]:
    """The micro-batches process ``rank`` runs for one step's ``indices`` (contiguous shards).

    With ``lengths`` (token count per example index) the process's share of the step is grouped by
    length before it is cut into micro-batches (``train.group_by_length``): the step trains on the same
    examples with the same token-normalised loss (docs/method.md, "Batch semantics"), each micro-batch
    pads to a closer length, and only float rounding differs from the ungrouped split."""
    per_device = split.micro * split.accumulation
    mine = indices[rank * per_device : (rank + 1) * per_device]
    if lengths is not None:
        mine = sorted(mine, key=lambda i: lengths[i])  # stable: equal lengths keep the data order
    return [mine[i : i + split.micro] for i in range(0, per_device, split.micro)]
