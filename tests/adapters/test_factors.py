"""The initial factors: PiSSA and OLoRA bit-identical to PEFT's own, MiLoRA on the minor directions."""

from __future__ import annotations

import copy

import pytest
import torch

from lorasweep.adapters import AdapterSpec, attach, olora
from lorasweep.adapters.svd_init import svd_factors
from tests.conftest import micro_llama

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def spec(rank: int = 4, alpha: float = 8.0, rslora: bool = False) -> AdapterSpec:
    return AdapterSpec(rank=rank, alpha=alpha, dropout=0.0, target_modules=TARGETS, seed=0, use_rslora=rslora)


def peft_reference(init: str, alpha: float, rslora: bool):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=4, lora_alpha=alpha, target_modules=list(TARGETS), init_lora_weights=init, use_rslora=rslora
    )
    return get_peft_model(micro_llama(), cfg)


@pytest.mark.parametrize(("method", "peft_init"), [("pissa", "pissa"), ("olora", "olora")])
@pytest.mark.parametrize(("alpha", "rslora"), [(8.0, False), (6.0, True)])  # scaling 2 and 3
def test_factors_and_residual_base_are_bit_identical_to_peft(method, peft_init, alpha, rslora):
    ours = attach(method, micro_llama(), spec(alpha=alpha, rslora=rslora)).state_dict()
    theirs = peft_reference(peft_init, alpha, rslora).state_dict()
    compared = 0
    for key, value in theirs.items():
        if "lora_" in key or key.endswith("base_layer.weight"):
            assert torch.equal(ours[key], value), key
            compared += 1
    assert compared == 3 * len(TARGETS) * 2


def test_milora_uses_the_smallest_singular_directions():
    base = micro_llama()
    w0 = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    model = attach("milora", base, spec())
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    s = layer.scaling["default"]
    delta = s * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    sv = torch.linalg.svdvals(w0)
    torch.testing.assert_close(torch.linalg.svdvals(delta)[:4], sv[-4:], atol=1e-5, rtol=1e-4)
    u = torch.linalg.svd(w0).U[:, -4:]
    # the adapter's column space is the span of the bottom-4 left singular vectors
    torch.testing.assert_close(u @ (u.T @ delta), delta, atol=1e-5, rtol=0)


def test_pissa_factors_hold_the_principal_part():
    w = torch.randn(24, 16, generator=torch.Generator().manual_seed(0))
    a, b = svd_factors(w, rank=3, scaling=2.0, which="principal")
    u, sv, vh = torch.linalg.svd(w, full_matrices=False)
    torch.testing.assert_close(2.0 * b @ a, u[:, :3] @ torch.diag(sv[:3]) @ vh[:3], atol=1e-5, rtol=0)


def test_svd_factors_are_fp32_for_a_bf16_weight():
    w = torch.randn(24, 16, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    a, b = svd_factors(w, 3, 2.0, "minor")
    assert a.dtype == b.dtype == torch.float32


def test_olora_factors_are_an_orthonormal_basis_and_r():
    w = torch.randn(24, 16, generator=torch.Generator().manual_seed(0))
    a, b = olora.factors(w, 3, 2.0, spec())
    torch.testing.assert_close(b.T @ b, torch.eye(3), atol=1e-5, rtol=0)
    q, r = torch.linalg.qr(w)
    torch.testing.assert_close(b @ a, q[:, :3] @ r[:3], atol=0, rtol=0)


def test_factors_reject_bad_rank_and_randomised_minor():
    w = torch.randn(8, 6)
    with pytest.raises(ValueError, match="rank 7"):
        svd_factors(w, 7, 1.0, "principal")
    with pytest.raises(ValueError, match="rank 7"):
        olora.factors(w, 7, 1.0, spec())
    with pytest.raises(ValueError, match="randomised"):
        svd_factors(w, 2, 1.0, "minor", niter=2)


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown adapter method 'pisa'; valid: lora, pissa"):
        attach("pisa", copy.deepcopy(micro_llama()), spec())
