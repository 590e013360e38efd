"""The trial grid (method x batch size x LR x seed) and the dry-run plan, as pure functions."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

from lorasweep.train import batching, schedule


@dataclass(frozen=True)
class Trial:
    method: str
    batch_size: int
    lr: float
    seed: int

    @property
    def id(self) -> str:
        return f"{self.method}-b{self.batch_size}-lr{self.lr:g}-s{self.seed}"

    def as_dict(self) -> dict:
        return asdict(self)


def expand(methods: list[str], batch_sizes: list[int], lrs: list[float], seeds: list[int]) -> list[Trial]:
    """Every combination, in grid order (method, batch size, LR, seed)."""
    return [Trial(*combo) for combo in itertools.product(methods, batch_sizes, lrs, seeds)]


def schedule_order(trials: list[Trial]) -> list[Trial]:
    """Run order for workers: smallest batches (most optimizer steps, longest) first, for load balance."""
    return sorted(trials, key=lambda t: (t.batch_size, t.seed, t.method, t.lr))


@dataclass(frozen=True)
class PlanRow:
    trial: Trial
    split: batching.BatchSplit
    steps: int
    warmup_steps: int
    examples: int
    dropped_examples: int
    tokens: int | None  # input tokens seen in training (None: data not available here)


def plan(
    trials: list[Trial],
    n_examples: int,
    epochs: int,
    warmup_ratio: float,
    max_micro: int,
    world: int,
    example_tokens: list[int] | None,
) -> list[PlanRow]:
    """Per trial: the exact batch split, optimizer steps, warmup and training tokens."""
    rows = []
    for t in trials:
        split = batching.derive_split(t.batch_size, max_micro, world)
        per_epoch = batching.steps_per_epoch(n_examples, t.batch_size)
        steps = per_epoch * epochs
        tokens = None
        if example_tokens is not None:
            tokens = 0
            for e in range(epochs):
                order = batching.example_order(n_examples, t.seed, e)[: per_epoch * t.batch_size]
                tokens += sum(example_tokens[i] for i in order)
        rows.append(
            PlanRow(
                t,
                split,
                steps,
                schedule.warmup_steps(steps, warmup_ratio),
                per_epoch * t.batch_size * epochs,
                batching.dropped_examples(n_examples, t.batch_size) * epochs,
                tokens,
            )
        )
    return rows
