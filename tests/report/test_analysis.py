"""Study statistics on hand-made trial rows."""

from __future__ import annotations

import pytest

from lorasweep.report import analysis


def row(method, b, lr, seed, value, state="completed", loss=1.0):
    return {
        "method": method,
        "batch_size": b,
        "lr": lr,
        "seed": seed,
        "state": state,
        "value": value if state == "completed" else None,
        "heldout_loss": loss,
    }


ROWS = [
    # lora: B=4 best at 1e-3 (interior), B=64 best at 1e-2 (edge)
    row("lora", 4, 1e-4, 0, 0.50),
    row("lora", 4, 1e-4, 1, 0.52),
    row("lora", 4, 1e-3, 0, 0.80),
    row("lora", 4, 1e-3, 1, 0.70),
    row("lora", 4, 1e-2, 0, 0.10),
    row("lora", 4, 1e-2, 1, None, state="diverged"),
    row("lora", 64, 1e-4, 0, 0.0, loss=2.0),
    row("lora", 64, 1e-4, 1, 0.0, loss=2.0),
    row("lora", 64, 1e-3, 0, 0.20),
    row("lora", 64, 1e-3, 1, 0.30),
    row("lora", 64, 1e-2, 0, 0.40),
    row("lora", 64, 1e-2, 1, 0.44),
    # pissa: one batch size only, diverges at the top LR on every seed
    row("pissa", 4, 1e-4, 0, 0.60),
    row("pissa", 4, 1e-4, 1, 0.62),
    row("pissa", 4, 1e-3, 0, 0.70),
    row("pissa", 4, 1e-3, 1, 0.76),
    row("pissa", 4, 1e-2, 0, None, "diverged"),
    row("pissa", 4, 1e-2, 1, None, "diverged"),
]


def test_cells_and_best_lrs():
    table = analysis.cells(ROWS)
    c = table[("lora", 4, 1e-3)]
    assert c.mean == pytest.approx(0.75) and c.values == (0.80, 0.70)
    assert table[("lora", 4, 1e-2)].n_diverged == 1 and not table[("lora", 4, 1e-2)].complete
    best = analysis.best_lrs(table)
    assert best[("lora", 4)].lr == 1e-3 and not best[("lora", 4)].at_edge
    assert best[("lora", 64)].lr == 1e-2 and best[("lora", 64)].at_edge
    assert best[("pissa", 4)].lr == 1e-3  # the diverged LR is never "best"
    assert ("pissa", 64) not in table


def test_ties_are_broken_by_heldout_loss():
    rows = [
        row("lora", 8, 1e-4, 0, 0.0, loss=3.0),
        row("lora", 8, 1e-3, 0, 0.0, loss=1.5),
        row("lora", 8, 1e-2, 0, 0.0, loss=2.5),
    ]
    assert analysis.best_lrs(analysis.cells(rows))[("lora", 8)].lr == 1e-3


def test_headline_is_the_largest_tuned_spread():
    h = analysis.headline(analysis.best_lrs(analysis.cells(ROWS)))
    assert h.method == "lora" and h.best_batch == 4 and h.worst_batch == 64
    assert h.points == pytest.approx(0.75 - 0.42)


def test_reference_vs_tuned():
    table = analysis.cells(ROWS)
    best = analysis.best_lrs(table)
    b, lr = analysis.reference_point([4, 64], [1e-4, 1e-3, 1e-2], None, None)
    assert (b, lr) == (64, 1e-3)  # no 128 swept: middle batch, middle LR
    out = {r["method"]: r for r in analysis.reference_vs_tuned(table, best, 4, 1e-4)}
    assert out["pissa"]["reference_wins"] and not out["lora"]["reference_wins"]
    assert out["lora"]["tuned"] == pytest.approx(0.75) and out["lora"]["tuned_wins"]
    assert out["pissa"]["tuned"] == pytest.approx(0.73)


def test_a_tie_has_no_winner():
    rows = [row("lora", 4, 1e-3, 0, 0.5), row("pissa", 4, 1e-3, 0, 0.5)]
    table = analysis.cells(rows)
    out = analysis.reference_vs_tuned(table, analysis.best_lrs(table), 4, 1e-3)
    assert not any(r["reference_wins"] or r["tuned_wins"] for r in out)
