"""Study tables as pure functions of the trial rows: cells (method, batch size, LR) and the LR chosen
for every (method, batch size) on validation scores.

A cell's validation score is the mean over seeds of the selection metric on the validation rows, ties
broken by the lower validation held-out loss; only cells where every seed completed compete (an LR at
which a seed diverged is not a tuned setting: our protocol, since the draft does not say).  Test
values are carried along for reporting and are never read by a choice (docs/method.md, "Selection").
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    method: str
    batch_size: int
    lr: float
    values: tuple[float, ...]  # test metric, one per completed seed (reported, never chosen on)
    losses: tuple[float, ...]  # test held-out loss per completed seed
    n_seeds: int
    n_diverged: int
    n_failed: int
    val_values: tuple[float, ...] = ()  # validation metric per completed seed (chooses)
    val_losses: tuple[float, ...] = ()  # validation held-out loss per completed seed (breaks ties)
    ids: tuple[str, ...] = ()  # trial ids of the completed seeds, in seed order

    @property
    def complete(self) -> bool:
        return bool(self.values) and len(self.values) == self.n_seeds

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def val_mean(self) -> float | None:
        return statistics.fmean(self.val_values) if self.val_values else None

    @property
    def val_score(self) -> tuple[float, float] | None:
        """(validation metric, -validation loss) when every seed completed with validation metrics."""
        if not self.complete or len(self.val_values) != self.n_seeds:
            return None
        loss = statistics.fmean(self.val_losses) if len(self.val_losses) == self.n_seeds else 0.0
        return (statistics.fmean(self.val_values), -loss)


def cells(rows: list[dict]) -> dict[tuple[str, int, float], Cell]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["batch_size"], r["lr"])].append(r)
    out = {}
    for key, rs in groups.items():
        done = sorted(
            (r for r in rs if r["state"] == "completed" and r["value"] is not None), key=lambda r: r["seed"]
        )
        out[key] = Cell(
            *key,
            values=tuple(r["value"] for r in done),
            losses=tuple(r["heldout_loss"] for r in done if r.get("heldout_loss") is not None),
            n_seeds=len(rs),
            n_diverged=sum(r["state"] == "diverged" for r in rs),
            n_failed=sum(r["state"] == "failed" for r in rs),
            val_values=tuple(r["val_value"] for r in done if r.get("val_value") is not None),
            val_losses=tuple(r["val_loss"] for r in done if r.get("val_loss") is not None),
            ids=tuple(r["id"] for r in done if "id" in r),
        )
    return out


def axes(table: dict[tuple[str, int, float], Cell]) -> tuple[list[str], list[int], list[float]]:
    methods = list(dict.fromkeys(k[0] for k in table))
    return methods, sorted({k[1] for k in table}), sorted({k[2] for k in table})


@dataclass(frozen=True)
class Best:
    method: str
    batch_size: int
    lr: float | None
    cell: Cell | None
    bracketed: bool  # an evaluated, worse LR on both sides of the chosen one
    reason: str  # why the search stopped / how the LR was chosen
    searched: tuple[float, ...] = ()

    @property
    def at_edge(self) -> bool:
        return self.cell is not None and not self.bracketed


def grid_choice(table: dict[tuple[str, int, float], Cell], method: str, batch: int, lrs: list[float]) -> Best:
    """The grid's best LR of one (method, batch size) on validation; bracketed when both grid
    neighbours were evaluated and score lower."""
    scored = [(lr, table[(method, batch, lr)]) for lr in lrs if (method, batch, lr) in table]
    ok = [(lr, c) for lr, c in scored if c.val_score is not None]
    searched = tuple(lr for lr, _ in scored)
    if not ok:
        return Best(method, batch, None, None, False, "no LR completed on every seed", searched)
    lr, cell = max(ok, key=lambda lc: (lc[1].val_score, -lc[0]))
    i = searched.index(lr)
    below = table[(method, batch, searched[i - 1])] if i > 0 else None
    above = table[(method, batch, searched[i + 1])] if i + 1 < len(searched) else None

    def worse(c: Cell | None) -> bool:
        return c is not None and (c.val_score is None or c.val_score < cell.val_score)

    if worse(below) and worse(above):
        return Best(method, batch, lr, cell, True, "grid: bracketed", searched)
    edge = "lowest" if i == 0 else "highest" if i == len(searched) - 1 else "a tie with a neighbour"
    where = f"the {edge} LR of the grid" if i in (0, len(searched) - 1) else edge
    return Best(
        method, batch, lr, cell, False, f"grid: best at {where}; the optimum may lie beyond it", searched
    )


def best_lrs(
    table: dict[tuple[str, int, float], Cell], lrs: list[float] | None = None
) -> dict[tuple[str, int], Best]:
    """Grid choice for every (method, batch size) in ``table`` (LRs: the grid, default every LR seen)."""
    methods, batches, seen = axes(table)
    return {(m, b): grid_choice(table, m, b, sorted(lrs or seen)) for m in methods for b in batches}
