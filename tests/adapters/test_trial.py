"""Every registered method runs a real trial (``lorasweep train``) on the built-in model and writes the
export its ``Method`` promises."""

from __future__ import annotations

import json

import pytest

from lorasweep.adapters import METHODS
from lorasweep.cli import main

TINY = [
    "train.lr_search=grid",
    "train.batch_sizes=[8]",
    "train.learning_rates=[1e-3]",
    "train.seeds=[0]",
    "data.num_train=16",
    "eval.num_examples=4",
    "eval.max_new_tokens=4",
    "eval.batch_size=4",
    "eval.selection.num_examples=4",
    "report.reference_batch_size=null",
    "report.reference_lr=null",
]
EXPORT = {
    "lora": "adapter_model.safetensors",
    "peft": "adapter_model.safetensors",
    "model": "model.safetensors",
}


@pytest.mark.parametrize("method", list(METHODS))
def test_one_trial_trains_evaluates_and_exports(tmp_path, method):
    out = tmp_path / "run"
    assert main(["train", "configs/demo.yaml", f"output_dir={out}", *TINY, "--method", method]) == 0
    (trial,) = (out / "trials").iterdir()
    assert json.loads((trial / "status.json").read_text())["state"] == "completed"
    metrics = json.loads((trial / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 and metrics["gsm8k"]["n"] == 4
    trainable = metrics["train"]["trainable_parameters"]
    if method == "full":
        assert trainable > 500_000  # every weight of the 0.66M-parameter model
        assert (trial / "model" / EXPORT["model"]).exists()
    else:
        assert 0 < trainable < 100_000
        export_dir = trial / ("adapter_plain_lora" if method in ("pissa", "milora", "olora") else "adapter")
        assert (export_dir / EXPORT[METHODS[method].export_kind]).exists()
