"""train.bracket.predict_by: fit -- the bracketed search starts a batch size from the power law
through the bracketed cells so far, instead of the previous best LR scaled by batch_exponent."""

from __future__ import annotations

import math

from lorasweep.sweep import search
from tests.sweep import test_search_rounds as rounds

# best LR linear in B (k = 1), while the configured batch_exponent says 0.5
OPTIMA = {("lora", 8): 1e-3, ("lora", 32): 4e-3, ("lora", 128): 1.6e-2}
OPTIMA |= {("pissa", b): lr / 10 for (_, b), lr in OPTIMA.items()}


def searched(tmp_path, monkeypatch, predict_by: str):
    for k, v in OPTIMA.items():
        monkeypatch.setitem(rounds.OPTIMA, k, v)
    cfg = rounds.config(
        tmp_path / predict_by,
        **{
            "train.batch_sizes": "[8, 32, 128]",
            "train.bracket.start_lr": "{lora: 1e-3, pissa: 1e-4}",
            "train.bracket.predict_by": predict_by,
            "train.bracket.batch_exponent": 0.5,
        },
    )
    run_dir = tmp_path / predict_by / "run"
    ran: list[str] = []
    search.run_rounds(cfg, run_dir, rounds.fake_runner(cfg, run_dir, ran), log=lambda m: None)
    return {(c.method, c.batch_size): c for c in search.cell_states(cfg, run_dir)}, ran


def test_fit_starts_the_next_batch_size_nearer_its_optimum(tmp_path, monkeypatch):
    by_fit, ran_fit = searched(tmp_path, monkeypatch, "fit")
    by_prev, ran_prev = searched(tmp_path, monkeypatch, "previous")

    def miss(cells, key):
        return abs(math.log10(cells[key].spec.start) - math.log10(OPTIMA[key]))

    for m in ("lora", "pissa"):
        key = (m, 128)
        # fit through B=8, 32: 1e-2 (0.2 decades off); previous x sqrt(4): 5.6e-3 (0.45 decades off)
        assert miss(by_fit, key) + 0.2 < miss(by_prev, key)
        assert by_fit[key].decision.best == by_prev[key].decision.best  # the same answer either way
        # the first two batch sizes have no fit yet: identical starts
        assert by_fit[(m, 32)].spec.start == by_prev[(m, 32)].spec.start
    assert len(ran_fit) < len(ran_prev)  # fewer trials to bracket B=128
