"""The plain-LoRA export of residual-base adapters (its round trip per method is in the invariant matrix)."""

from __future__ import annotations

import pytest
import torch

from lorasweep.adapters.export import plain_lora_alpha, plain_lora_state


def test_alpha_keeps_scaling():
    assert plain_lora_alpha(8, 16, False) / 16 == pytest.approx(16 / 8)
    assert plain_lora_alpha(8, 16, True) / 16**0.5 == pytest.approx(16 / 8**0.5)


def test_plain_state_stacks_trained_and_negated_initial_factors():
    a, a0 = torch.ones(2, 5), torch.full((2, 5), 3.0)
    b, b0 = torch.ones(4, 2), torch.full((4, 2), 7.0)
    keys = ("m.lora_A.weight", "m.lora_B.weight")
    out = plain_lora_state(dict(zip(keys, (a, b), strict=True)), dict(zip(keys, (a0, b0), strict=True)))
    # [B, -B0] @ [A; A0] = B·A - B0·A0
    torch.testing.assert_close(out[keys[1]] @ out[keys[0]], b @ a - b0 @ a0)
    with pytest.raises(ValueError, match="lora_magnitude"):
        plain_lora_state({"m.lora_magnitude_vector": a}, {})
