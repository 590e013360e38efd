"""Study tables on hand-made trial rows: LRs chosen on validation values only."""

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
        # validation equals test here, except where a test below sets them apart
        "val_value": value if state == "completed" else None,
        "val_loss": loss,
        "id": f"{method}-b{b}-lr{lr:g}-s{seed}",
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


def test_the_choice_reads_validation_values_never_test_values():
    rows = [row("lora", 8, lr, 0, v) for lr, v in ((1e-4, 0.2), (1e-3, 0.5), (1e-2, 0.3))]
    rows[2]["value"] = 0.99  # the test value of LR 1e-2 is the highest: the choice must not see it
    best = analysis.best_lrs(analysis.cells(rows))[("lora", 8)]
    assert best.lr == 1e-3 and best.bracketed and best.reason == "grid: bracketed"


def test_an_edge_choice_says_so():
    best = analysis.best_lrs(analysis.cells(ROWS))[("lora", 64)]
    assert best.at_edge and "highest LR of the grid" in best.reason
