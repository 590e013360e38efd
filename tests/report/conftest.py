"""A synthetic bracketed study with a built report, shared by the report tests (built once)."""

from __future__ import annotations

import math

import pytest

from lorasweep import results
from lorasweep.report import render
from lorasweep.sweep import search
from tests.sweep import test_search_rounds as rounds


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """Two methods x B = 8, 32, 128, LR optima linear in B, with the fields a real trial writes."""
    tmp = tmp_path_factory.mktemp("insight")
    optima = {("lora", 8): 1e-3, ("lora", 32): 4e-3, ("lora", 128): 1.6e-2}
    optima |= {("pissa", b): lr / 10 for (_, b), lr in optima.items()}
    saved = dict(rounds.OPTIMA)
    rounds.OPTIMA.update(optima)
    try:
        cfg = rounds.config(
            tmp,
            **{
                "train.batch_sizes": "[8, 32, 128]",
                "train.bracket.start_lr": "{lora: 1e-3, pissa: 1e-4}",
                "report.reference_batch_size": 32,
                "report.cost_tolerance": 100.0,
            },
        )
        run_dir = tmp / "run"
        search.run_rounds(cfg, run_dir, rounds.fake_runner(cfg, run_dir, []), log=lambda m: None)
    finally:
        rounds.OPTIMA.clear()
        rounds.OPTIMA.update(saved)
    for d in (run_dir / "trials").iterdir():  # what a real trial's metrics.json carries
        metrics = results.read_json(d / "metrics.json")
        b = results.read_json(d / "config.json")["trial"]["batch_size"]
        metrics["train"] |= {
            "tokens_per_second": 500.0 * math.sqrt(b),
            "trainable_parameters": 1000,
            "frozen_parameters": 100000,
            "noise_scale": {"estimable": True, "b_simple": 40.0 + b / 8}
            if b > 8
            else {"estimable": False, "reason": "one micro-batch per step"},
        }
        results.atomic_write_json(d / "metrics.json", metrics)
        results.write_status(d, "completed", steps=1024 // b)  # the fixed budget: 1024 examples
        steps = [{"step": s, "loss": 1.0, "val_loss": 2.0 / (1 + s * b / 32)} for s in (1, 2, 3, 4, 8)]
        results.write_jsonl(d / "steps.jsonl", steps)
    path = render.build_report(run_dir, cfg)
    return cfg, run_dir, path
