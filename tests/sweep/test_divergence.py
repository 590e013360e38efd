"""A sweep with a deliberately too-high LR finishes; those trials are `diverged` and the report says so."""

from __future__ import annotations

import json

from lorasweep.cli import main


def test_diverged_trials_are_recorded_and_marked(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "adapter.methods=[lora]",
        "train.batch_sizes=[4,8]",
        "train.lr_search=grid",
        "report.reference_batch_size=null",
        "report.reference_lr=null",
        "eval.selection.num_examples=8",
        "train.learning_rates=[5e-3,5.0]",
        "train.seeds=[0,1]",
        "data.num_train=64",
        "eval.num_examples=8",
        "eval.max_new_tokens=8",
        "sweep.backend=inprocess",
        "report.curvature_examples=0",
        f"output_dir={out}",
    ]
    assert main(["run", "configs/demo.yaml", *args]) == 0
    for b in (4, 8):
        for seed in (0, 1):
            status = json.loads((out / "trials" / f"lora-b{b}-lr5-s{seed}" / "status.json").read_text())
            assert status["state"] == "diverged"
            assert 1 <= status["diverged_at"] <= 64 // b and status["reason"]
            steps = (out / "trials" / f"lora-b{b}-lr5-s{seed}" / "steps.jsonl").read_text().splitlines()
            assert len(steps) == status["diverged_at"]  # stopped at once
            ok = json.loads((out / "trials" / f"lora-b{b}-lr0.005-s{seed}" / "status.json").read_text())
            assert ok["state"] == "completed"
    report = (out / "report" / "report.md").read_text()
    assert "| lora | 4 | 5 | — | diverged |" in report and "| lora | 8 | 5 | — | diverged |" in report
    assert "nan" not in report.lower()
    assert "@ 0.005" in report  # the best LR is the one that did not diverge
    assert main(["status", str(out)]) == 0
    assert "diverged: 4" in capsys.readouterr().out
