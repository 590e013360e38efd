"""LoRA+ through the real training loop: the B matrices step ``loraplus_lr_ratio`` times further."""

from __future__ import annotations

import pytest
from accelerate import Accelerator

from lorasweep.adapters import AdapterSpec, attach, get
from lorasweep.data.tokenize import Encoded
from lorasweep.train import batching, loop
from tests.conftest import micro_llama

TARGETS = ("q_proj", "v_proj", "up_proj")


def first_step(method: str) -> tuple[float, float]:
    """(largest |change| of any B entry, of any A entry) after one AdamW step at LR 1e-3."""
    spec = AdapterSpec(rank=4, alpha=8.0, dropout=0.0, target_modules=TARGETS, seed=0, loraplus_lr_ratio=16.0)
    model = attach(method, micro_llama(), spec)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    examples = [Encoded([(7 * i + j) % 60 + 1 for j in range(12)], n_prompt=4) for i in range(4)]
    train_spec = loop.TrainSpec(
        split=batching.derive_split(4, 4), lr=1e-3, seed=0, scheduler="constant", warmup_ratio=0.0
    )
    result = loop.train(
        model,
        examples,
        train_spec,
        0,
        Accelerator(cpu=True),
        param_groups=get(method).param_groups(model, spec),
    )
    assert result.steps_done == 1
    moved = {
        n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters() if n in before
    }
    return max(v for n, v in moved.items() if ".lora_B." in n), max(
        v for n, v in moved.items() if ".lora_A." in n
    )


def test_b_matrices_take_ratio_times_the_step_of_lora():
    lora_b, lora_a = first_step("lora")
    plus_b, plus_a = first_step("loraplus")
    # B = 0 at init, so A has no gradient at the first step; AdamW's first step moves an entry by ~LR
    assert lora_a == plus_a == 0.0
    assert lora_b == pytest.approx(1e-3, rel=1e-2)
    assert plus_b == pytest.approx(16 * lora_b, rel=1e-4)
