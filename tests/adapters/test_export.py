"""PiSSA/MiLoRA adapters exported as plain LoRA apply to the original base with identical outputs."""

from __future__ import annotations

import copy

import pytest
import torch

from lorasweep.adapters import AdapterSpec, attach
from lorasweep.adapters.export import export_plain_lora, initial_state, plain_lora_alpha
from tests.conftest import micro_llama

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.mark.parametrize(("method", "rslora"), [("pissa", False), ("milora", False), ("milora", True)])
def test_exported_adapter_on_original_base_matches_trained_model(tmp_path, method, rslora):
    from peft import PeftModel

    original = micro_llama(seed=3)
    spec = AdapterSpec(rank=4, alpha=8.0, dropout=0.0, target_modules=TARGETS, seed=0, use_rslora=rslora)
    model = attach(method, copy.deepcopy(original), spec)
    init = initial_state(model)
    with torch.no_grad():  # "training": move every adapter weight
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    x = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        trained_out = model(input_ids=x).logits
    export_plain_lora(model, init, tmp_path / "plain")
    loaded = PeftModel.from_pretrained(copy.deepcopy(original), tmp_path / "plain")
    assert loaded.peft_config["default"].r == 8
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, trained_out, atol=1e-5, rtol=1e-5)
        # and the original base without the adapter really differs (the test can fail)
        assert (original(input_ids=x).logits - trained_out).abs().max() > 1e-3


def test_alpha_keeps_scaling():
    assert plain_lora_alpha(8, 16, False) / 16 == pytest.approx(16 / 8)
    assert plain_lora_alpha(8, 16, True) / 16**0.5 == pytest.approx(16 / 8**0.5)
