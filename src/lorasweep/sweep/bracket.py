"""The bracketed learning-rate search of one (method, batch size) cell, as a pure function.

A cell's LRs lie on a log lattice ``start * factor**(j/2)``: the coarse search walks whole steps
(``j`` even offsets from the start), the one refinement takes a half step.  ``decide`` looks only at
the scores already observed and says which LRs to evaluate next or that the cell is done and why, so
a search is deterministic and resumes from whatever finished (docs/method.md, "Learning-rate search").

Rules:
- round 1 evaluates the start and its two coarse neighbours (those inside the bounds);
- while the best coarse LR sits at the edge of what was evaluated, step one coarse point further that
  way; a diverged LR counts as worse than any completed one, so a divergence cliff brackets the best;
- once the best has a worse neighbour on both sides, evaluate once at the geometric midpoint between
  the best and its better neighbour, and take the best of everything evaluated;
- a bound (``min_lr``/``max_lr``) or the point limit ends the search unbracketed, and says so.
Every trial runs its full schedule (no early stopping: arXiv 1803.02021's short-horizon bias).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DIVERGED = "diverged"
FAILED = "failed"

# A score compares as a tuple (higher is better): (validation metric, -validation loss).  DIVERGED is
# worse than any score; FAILED (a crashed trial) stops the cell until the trial is re-run.
Score = tuple[float, ...] | str


def lattice_lr(x: float) -> float:
    """LRs are stored to 4 significant digits so that trial ids are short and lattices coincide."""
    return float(f"{x:.4g}")


@dataclass(frozen=True)
class SearchSpec:
    anchor: float  # the lattice is anchor * factor**(k/2) for integer k (shared by a method's cells)
    factor: float
    min_lr: float
    max_lr: float
    refine: bool = True
    max_points: int = 10
    offset: int = 0  # this cell starts ``offset`` half-steps from the anchor

    @property
    def start(self) -> float:
        return self.lr(0)

    def lr(self, j: int) -> float:
        """The LR ``j`` half-steps from this cell's start."""
        return lattice_lr(self.anchor * self.factor ** ((self.offset + j) / 2))

    def inside(self, j: int) -> bool:
        lr = self.lr(j)
        return self.min_lr * (1 - 1e-9) <= lr <= self.max_lr * (1 + 1e-9)

    def worst_case_points(self) -> int:
        """The most LRs this search can evaluate: every coarse point inside the bounds, plus one."""
        lo = math.floor(math.log(self.min_lr / self.start, self.factor)) - 1
        hi = math.ceil(math.log(self.max_lr / self.start, self.factor)) + 1

        coarse = sum(self.inside(2 * i) for i in range(lo, hi + 1))
        return min(self.max_points, coarse + (1 if self.refine else 0))


@dataclass(frozen=True)
class Decision:
    needed: tuple[float, ...]  # LRs to evaluate next (empty when done or blocked)
    done: bool
    best: float | None
    bracketed: bool  # the best has an evaluated, worse LR on both sides
    reason: str
    searched: tuple[float, ...]  # every lattice LR evaluated so far, ascending
    neighbours: tuple[float | None, float | None] = (None, None)  # evaluated LRs around the best
    step: tuple[float, ...] = ()  # the LRs of the step in progress, finished ones included (the
    # first step asks for three at once): a packed group is formed from the whole step (packing.groups)
    first_step: bool = False  # the step in progress is the search's first


def snap(anchor: float, factor: float, target: float) -> int:
    """The offset (in half steps of ``factor`` from ``anchor``) of the lattice point nearest ``target``."""
    return round(2 * math.log(target / anchor, factor))


def _key(score: Score) -> tuple:
    if score == DIVERGED:
        return (0,)
    return (1, *score)


def decide(spec: SearchSpec, observed: dict[float, Score]) -> Decision:
    """The next step of the search given the scores observed so far (by LR).

    The search is replayed from round 1, taking from ``observed`` only the LRs it would itself have
    asked for, in the order it would have asked; any other observation (a grid run into the same
    directory, a neighbouring cell's trial) is ignored, so extra trials on disk never change an answer.
    """
    first = [j for j in (-2, 0, 2) if spec.inside(j)]
    if not first:
        return Decision((), True, None, False, "no LR of the lattice lies inside [min_lr, max_lr]", ())
    at: dict[int, Score] = {j: observed[spec.lr(j)] for j in first if spec.lr(j) in observed}

    def result(needed=(), done=False, best=None, bracketed=False, reason="", jb=None, step=None):
        nb = _nb(spec, at, jb) if jb is not None else (None, None)
        searched = tuple(sorted(spec.lr(j) for j in at))
        first_step = step is not None
        step = tuple(needed) if step is None else step
        return Decision(tuple(needed), done, best, bracketed, reason, searched, nb, step, first_step)

    def blocked() -> Decision | None:
        failed = [spec.lr(j) for j in sorted(at) if at[j] == FAILED]
        if failed:
            return result(reason=f"blocked: the trial at LR {failed[0]:g} failed (re-run to retry)")
        return None

    if stop := blocked():
        return stop
    missing = [spec.lr(j) for j in first if j not in at]
    if missing:
        return result(needed=missing, reason="in progress", step=tuple(spec.lr(j) for j in first))
    while True:  # the coarse walk: one step per round toward the better side
        nxt, why = _next_coarse(spec, at)
        if nxt is None:
            break
        if spec.lr(nxt) not in observed:
            return result(needed=[spec.lr(nxt)], reason=why)
        at[nxt] = observed[spec.lr(nxt)]
        if stop := blocked():
            return stop
    coarse = sorted(at)
    keys = {j: _key(at[j]) for j in coarse}
    if all(at[j] == DIVERGED for j in coarse):
        return result(done=True, reason="every searched LR diverged")
    if len(set(keys.values())) == 1:
        mid = coarse[len(coarse) // 2]
        return result(done=True, best=spec.lr(mid), reason="flat: every searched LR scored the same", jb=mid)
    jb = max(coarse, key=lambda j: (keys[j], -j))  # ties: the lower LR
    for edge, step, name, bound in (
        (coarse[-1], 2, "upper", spec.max_lr),
        (coarse[0], -2, "lower", spec.min_lr),
    ):
        if jb != edge:
            continue
        if not spec.inside(edge + step):
            why = f"best at the {name} bound {bound:g}: the optimum may lie beyond it"
        else:
            why = f"point limit {spec.max_points} reached with the best at the {name} edge"
        return result(done=True, best=spec.lr(jb), reason=why, jb=jb)
    below, above = at[jb - 2], at[jb + 2]  # both worse than the best: bracketed
    why = "bracketed"
    if DIVERGED in (below, above):
        why += f" ({'upper' if above == DIVERGED else 'lower'} neighbour diverged)"
    if spec.refine:
        jr = jb + (1 if _key(above) > _key(below) else -1)  # toward the better neighbour (tie: lower)
        if spec.lr(jr) in observed:
            at[jr] = observed[spec.lr(jr)]
            if stop := blocked():
                return stop
            why += ", refined"
        elif len(at) >= spec.max_points:
            why += "; point limit reached before refining"
        else:
            return result(needed=[spec.lr(jr)], reason="in progress (refining)")
    jbest = max(at, key=lambda j: (_key(at[j]), -j))
    return result(done=True, best=spec.lr(jbest), bracketed=True, reason=why, jb=jbest)


def _next_coarse(spec: SearchSpec, at: dict[int, Score]) -> tuple[int | None, str]:
    """The coarse point the search evaluates next, or None when the walk is over."""
    coarse = sorted(at)
    lo, hi = coarse[0], coarse[-1]
    if len(at) >= spec.max_points:
        return None, ""
    if all(at[j] == DIVERGED for j in coarse):
        return (lo - 2, "in progress (every LR so far diverged)") if spec.inside(lo - 2) else (None, "")
    keys = {j: _key(at[j]) for j in coarse}
    if len(set(keys.values())) == 1:
        return None, ""
    jb = max(coarse, key=lambda j: (keys[j], -j))
    if jb == hi and spec.inside(hi + 2):
        return hi + 2, "in progress (stepping upper)"
    if jb == lo and spec.inside(lo - 2):
        return lo - 2, "in progress (stepping lower)"
    return None, ""


def _nb(spec: SearchSpec, at: dict[int, Score], j: int) -> tuple[float | None, float | None]:
    lower = [k for k in at if k < j]
    upper = [k for k in at if k > j]
    return (spec.lr(max(lower)) if lower else None, spec.lr(min(upper)) if upper else None)
