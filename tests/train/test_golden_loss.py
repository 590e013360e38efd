"""Golden losses: the first 20 per-step training losses of one fixed tiny trial, pinned.

The trial goes through ``lorasweep train`` (config -> data -> adapter -> the training loop ->
``steps.jsonl``): the TinyWorld base in fp32, the first 80 TinyWorld training rows, LoRA rank 4 with
dropout 0, effective batch 4 = micro-batch 2 x accumulation 2 (so the loss is normalised across
micro-batches), LR 3e-3 with 2 warmup steps then cosine, seed 0, one torch thread.

Why the numbers may legitimately change, and how to update them:
- an intended change of what a trial computes: the built-in model or data generator, tokenisation or
  the prompt template, LoRA's initialisation, the schedule, the loss, the optimizer's arithmetic;
- another torch/transformers version or CPU kernel: expect differences around 1e-6, well inside the
  tolerance; larger ones mean the numerics changed and deserve a look before re-pinning.
To update: run ``python -m tests.train.test_golden_loss`` (prints the new list), check that the diff is
the one the change intended (the first loss moves only if the model, data or loss changed, later ones
also with the update rule), paste it below and say why in the commit.

The tolerance (1e-4 absolute, on losses of 4-7) is far above run-to-run noise (none measured: the
same run on one or two threads gives bit-identical losses) and far below the effect of the bugs this
test exists to catch. Measured by patching them in and reverting (docs/method.md, Batch semantics and
Learning-rate schedule), each one first caught at step 2:
- gradient of the mean of micro-batch means instead of the token mean over the step: up to 3.4e-2;
- warmup that peaks at the last warmup step, (s + 1) / W: up to 0.12;
- warmup from LR 0 at the first update, s / W: up to 0.19.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from lorasweep.cli import main

GOLDEN = [
    7.285046121348506,
    7.000548070790816,
    6.09131686970339,
    5.613487981980847,
    5.77218271891276,
    5.919183246159958,
    4.568620954241071,
    6.10137939453125,
    6.549693180964543,
    5.064632161458333,
    4.938454448312953,
    5.101875737028302,
    5.189782236136642,
    5.359013671875,
    5.291147483969635,
    3.9436276563957557,
    4.7873374537417765,
    4.641470772879464,
    5.9041877908909575,
    5.272742893384851,
]
TOLERANCE = 1e-4

CONFIG = {
    "name": "golden",
    "model": {"source": "builtin:tinyworld", "dtype": "float32"},
    "data": {"train": "builtin:tinyworld", "num_train": 80, "template": "plain", "max_seq_len": 64},
    "eval": {
        "tasks": ["gsm8k"],
        "num_examples": 1,
        "max_new_tokens": 1,
        "batch_size": 1,
        "heldout_loss": False,
        "selection": {"num_examples": 1},
    },
    "adapter": {
        "methods": ["lora"],
        "rank": 4,
        "alpha": 8.0,
        "dropout": 0.0,
        "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"],
    },
    "train": {
        "batch_sizes": [4],
        "lr_search": "grid",
        "learning_rates": [3e-3],
        "seeds": [0],
        "epochs": 1,
        "scheduler": "cosine",
        "warmup_ratio": 0.1,
        "max_micro_batch": 2,
        "max_grad_norm": 1.0,
    },
    "sweep": {"backend": "inprocess"},
}


def golden_trial_losses(out: Path) -> list[float]:
    """Run the fixed trial into ``out`` on one torch thread; its per-step losses from ``steps.jsonl``."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "golden.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "output_dir": str(out / "run")}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", str(config)]) == 0
    finally:
        torch.set_num_threads(threads)
    (steps,) = (out / "run").rglob("steps.jsonl")
    return [json.loads(line)["loss"] for line in steps.read_text().splitlines()]


def test_first_20_losses_match_the_golden_values(tmp_path):
    losses = golden_trial_losses(tmp_path)
    assert len(losses) == 20  # 80 rows / effective batch 4
    assert losses == pytest.approx(GOLDEN, abs=TOLERANCE, rel=0)


if __name__ == "__main__":  # print the values to pin (see the module docstring)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print("GOLDEN = [")
        for loss in golden_trial_losses(Path(tmp)):
            print(f"    {loss!r},")
        print("]")
