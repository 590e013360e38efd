"""What one real trial records for the report's insight sections: B_simple per step and per trial,
held-out loss at steps 1, 2, 4, ... (same-step view), and the parameter counts behind FLOPs."""

from __future__ import annotations

import json

from lorasweep.cli import main
from tests.sweep.test_end_to_end import MICRO


def test_one_trial_logs_noise_scale_and_same_step_losses(tmp_path):
    out = tmp_path / "run"
    args = ["train", "configs/demo.yaml", f"output_dir={out}", *MICRO, "train.max_micro_batch=2"]
    assert main([*args, "--method", "lora", "--batch-size", "4", "--lr", "5e-3", "--seed", "0"]) == 0
    d = out / "trials" / "lora-b4-lr0.005-s0"
    steps = [json.loads(line) for line in (d / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 16  # 64 examples / B=4
    assert all(s["noise_b_small"] <= 2 and s["noise_b_big"] <= 4 and "b_simple" in s for s in steps)
    assert [s["step"] for s in steps if "val_loss" in s] == [1, 2, 4, 8, 16]
    assert all(s["val_loss"] > 0 for s in steps if "val_loss" in s)
    train = json.loads((d / "metrics.json").read_text())["train"]
    assert train["noise_scale"]["estimable"] and train["noise_scale"]["steps"] == 16
    assert train["split"] == {"micro": 2, "accumulation": 2, "world": 1}
    assert train["frozen_parameters"] > train["trainable_parameters"] > 0
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["timings"]["same_step_loss"] > 0  # measured apart from the training time
