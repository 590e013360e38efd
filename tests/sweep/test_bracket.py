"""The bracketed LR search on synthetic objectives with known answers."""

from __future__ import annotations

import math

import pytest

from lorasweep.sweep import bracket
from lorasweep.sweep.bracket import DIVERGED, SearchSpec, decide

SPEC = SearchSpec(anchor=1e-3, factor=10**0.5, min_lr=1e-5, max_lr=1.0)


def search(spec: SearchSpec, objective) -> tuple[bracket.Decision, list[list[float]]]:
    """Run the search to the end; returns the final decision and the LRs of each round."""
    observed: dict[float, bracket.Score] = {}
    rounds = []
    for _ in range(50):
        d = decide(spec, observed)
        if d.done:
            return d, rounds
        assert d.needed, d
        rounds.append(list(d.needed))
        for lr in d.needed:
            assert lr not in observed, "a finished LR is never asked for again"
            observed[lr] = objective(lr)
    raise AssertionError("search did not end")


def peak(at: float, cliff: float | None = None):
    """Validation accuracy peaking at ``at`` (log-quadratic); DIVERGED above ``cliff``."""

    def f(lr: float):
        if cliff is not None and lr > cliff:
            return DIVERGED
        return (1.0 - (math.log10(lr) - math.log10(at)) ** 2 / 4, 0.0)

    return f


def test_optimum_inside_is_bracketed_and_refined():
    d, rounds = search(SPEC, peak(3e-3))
    assert rounds[0] == [3.162e-4, 1e-3, 3.162e-3]  # round 1: start and its two neighbours, in parallel
    assert d.bracketed and d.reason == "bracketed, refined"
    assert d.best == 3.162e-3
    lo, hi = d.neighbours
    assert lo < d.best < hi  # evaluated on both sides
    assert len(d.searched) == 5  # 3 + one step up + one refinement


def test_refinement_takes_the_half_step_toward_the_better_neighbour():
    d, _ = search(SPEC, peak(1.5e-3))
    assert d.bracketed
    assert 1.778e-3 in d.searched  # between 1e-3 (best) and 3.162e-3 (better neighbour)
    assert d.best == 1.778e-3


def test_optimum_beyond_the_bound_says_so():
    spec = SearchSpec(anchor=1e-3, factor=10**0.5, min_lr=1e-5, max_lr=1e-2)
    d, _ = search(spec, peak(1.0))
    assert not d.bracketed
    assert d.best == 1e-2
    assert "upper bound" in d.reason and "beyond" in d.reason


def test_divergence_cliff_brackets_the_best():
    d, _ = search(SPEC, peak(1.0, cliff=5e-3))  # better and better until training diverges
    assert d.bracketed
    assert "upper neighbour diverged" in d.reason
    assert d.best <= 5e-3 and d.neighbours[1] > 5e-3


def test_every_lr_diverging_walks_down_then_stops_at_the_bound():
    spec = SearchSpec(anchor=1e-3, factor=10**0.5, min_lr=1e-4, max_lr=1.0)
    d, rounds = search(spec, lambda lr: DIVERGED)
    assert d.best is None and d.reason == "every searched LR diverged"
    assert min(d.searched) == 1e-4


def test_flat_objective_stops_and_says_flat():
    d, rounds = search(SPEC, lambda lr: (0.0, -1.0))
    assert len(rounds) == 1 and not d.bracketed
    assert d.reason.startswith("flat") and d.best == 1e-3


def test_point_limit_ends_an_unbracketed_search():
    spec = SearchSpec(anchor=1e-3, factor=10**0.5, min_lr=1e-8, max_lr=1e3, max_points=4)
    d, _ = search(spec, peak(10.0))
    assert not d.bracketed and "point limit" in d.reason and len(d.searched) == 4


def test_a_failed_trial_blocks_the_cell():
    d = decide(SPEC, {3.162e-4: (0.1, 0.0), 1e-3: bracket.FAILED, 3.162e-3: (0.2, 0.0)})
    assert not d.done and not d.needed and "failed" in d.reason


def test_deterministic_and_independent_of_observation_order():
    f = peak(2e-2)
    a, ra = search(SPEC, f)
    b, rb = search(SPEC, f)
    assert a == b and ra == rb
    observed = {lr: f(lr) for lr in reversed(a.searched)}
    assert decide(SPEC, observed) == a  # a finished search decides the same from its results alone


def test_lattice_is_shared_and_snapping_is_exact():
    spec = SearchSpec(
        anchor=1e-3, factor=10**0.5, min_lr=1e-6, max_lr=1.0, offset=bracket.snap(1e-3, 10**0.5, 2e-2)
    )
    assert spec.start == 1.778e-2  # the nearest quarter-decade point to 2e-2
    assert spec.lr(-1) == 1e-2 and spec.lr(2) == 5.623e-2


def test_worst_case_points_counts_the_lattice_inside_the_bounds():
    spec = SearchSpec(anchor=1e-3, factor=10.0, min_lr=1e-5, max_lr=1e-1)
    assert spec.worst_case_points() == 5 + 1  # 1e-5 .. 1e-1 coarse, plus the refinement


@pytest.mark.parametrize("at", [1e-5, 3e-5, 2e-4, 1e-3, 7e-3, 4e-2, 0.3])
def test_search_finds_the_lattice_point_nearest_the_optimum(at):
    d, _ = search(SPEC, peak(at))
    grid = [SPEC.lr(j) for j in range(-20, 20) if SPEC.inside(j)]
    nearest = min(grid, key=lambda lr: abs(math.log10(lr) - math.log10(at)))
    assert d.best == nearest
    assert d.bracketed == (SPEC.min_lr < nearest < SPEC.max_lr)


@pytest.mark.parametrize(
    "objective",
    [peak(3e-3), peak(2e-4), peak(1.0, cliff=5e-3), lambda lr: DIVERGED, lambda lr: (0.0, -1.0)],
    ids=["inside", "low", "cliff", "diverged", "flat"],
)
def test_extra_observations_never_change_the_answer(objective):
    """A dense grid on disk (e.g. a grid run into the same directory) is not absorbed by the search:
    it decides exactly what it decided alone, from only the LRs it would have asked for."""
    alone, _ = search(SPEC, objective)
    dense = {SPEC.lr(j): objective(SPEC.lr(j)) for j in range(-12, 13) if SPEC.inside(j)}
    assert decide(SPEC, dense) == alone


def test_a_bumpy_objective_with_a_dense_grid_keeps_the_local_bracket():
    """Round 1 brackets a local optimum; a better LR far away on disk must not be taken."""

    def bumpy(lr: float):
        return (1.0 if lr == 1e-3 else 0.5 if lr < 0.05 else 2.0, 0.0)

    alone, _ = search(SPEC, bumpy)
    assert alone.best == 1e-3 and alone.bracketed
    dense = {SPEC.lr(j): bumpy(SPEC.lr(j)) for j in range(-12, 13) if SPEC.inside(j)}
    assert decide(SPEC, dense).best == 1e-3
