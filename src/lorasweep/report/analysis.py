"""Study statistics as pure functions of the trial rows: best LR per (method, batch), tuned curves,
the batch-size headline, and reference-vs-tuned.

Best-LR selection uses the mean over seeds of the report metric, and only cells where every seed
completed: an LR at which some seed diverged is not a tuned setting (the draft's protocol picks the
best LR per batch size; it does not say how divergence counts, so we state ours).  Ties in the metric
(common at 0 % when a budget is too small to learn the task) are broken by the lower held-out loss.
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
    values: tuple[float, ...]  # one per completed seed
    losses: tuple[float, ...]  # held-out loss per completed seed (tie-break)
    n_seeds: int
    n_diverged: int
    n_failed: int

    @property
    def complete(self) -> bool:
        return bool(self.values) and len(self.values) == self.n_seeds

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def mean_loss(self) -> float:
        return statistics.fmean(self.losses) if self.losses else float("inf")

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def cells(rows: list[dict]) -> dict[tuple[str, int, float], Cell]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["batch_size"], r["lr"])].append(r)
    out = {}
    for key, rs in groups.items():
        out[key] = Cell(
            *key,
            values=tuple(r["value"] for r in rs if r["state"] == "completed" and r["value"] is not None),
            losses=tuple(
                r["heldout_loss"]
                for r in rs
                if r["state"] == "completed" and r.get("heldout_loss") is not None
            ),
            n_seeds=len(rs),
            n_diverged=sum(r["state"] == "diverged" for r in rs),
            n_failed=sum(r["state"] == "failed" for r in rs),
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
    at_edge: bool  # the best LR is the smallest or largest of the grid


def best_lrs(table: dict[tuple[str, int, float], Cell]) -> dict[tuple[str, int], Best]:
    methods, batches, lrs = axes(table)
    out = {}
    for m in methods:
        for b in batches:
            candidates = [
                table[(m, b, lr)] for lr in lrs if (m, b, lr) in table and table[(m, b, lr)].complete
            ]
            if not candidates:
                out[(m, b)] = Best(m, b, None, None, False)
                continue
            best = max(candidates, key=lambda c: (c.mean, -c.mean_loss, -c.lr))
            edge = len(lrs) > 1 and best.lr in (lrs[0], lrs[-1])
            out[(m, b)] = Best(m, b, best.lr, best, edge)
    return out


@dataclass(frozen=True)
class Headline:
    points: float
    method: str
    best_batch: int
    worst_batch: int


def headline(best: dict[tuple[str, int], Best]) -> Headline | None:
    """The largest spread, over batch sizes, of the tuned metric within one method (display units)."""
    spreads = []
    for m in dict.fromkeys(k[0] for k in best):
        tuned = [(b.cell.mean, b.batch_size) for (mm, _), b in best.items() if mm == m and b.cell]
        if len(tuned) >= 2:
            hi, lo = max(tuned), min(tuned)
            spreads.append(Headline(hi[0] - lo[0], m, hi[1], lo[1]))
    return max(spreads, key=lambda h: h.points, default=None)


def reference_point(batches: list[int], lrs: list[float], ref_b: int | None, ref_lr: float | None):
    """The reference config: the named one, else batch 128 (PiSSA's) if swept and the middle LR."""
    b = ref_b if ref_b is not None else (128 if 128 in batches else batches[len(batches) // 2])
    lr = ref_lr if ref_lr is not None else lrs[len(lrs) // 2]
    return b, lr


def reference_vs_tuned(table, best, ref_b: int, ref_lr: float) -> list[dict]:
    rows = []
    for m in axes(table)[0]:
        ref = table.get((m, ref_b, ref_lr))
        tuned = [b for (mm, _), b in best.items() if mm == m and b.cell]
        top = max(tuned, key=lambda b: b.cell.mean, default=None)
        rows.append(
            {
                "method": m,
                "reference": ref.mean if ref and ref.complete else None,
                "tuned": top.cell.mean if top else None,
                "tuned_batch": top.batch_size if top else None,
                "tuned_lr": top.lr if top else None,
            }
        )
    for col in ("reference", "tuned"):
        vals = [r[col] for r in rows if r[col] is not None]
        top = max(vals, default=None)
        unique = vals.count(top) == 1  # a tie has no winner
        for r in rows:
            r[f"{col}_wins"] = unique and r[col] == top
    return rows
