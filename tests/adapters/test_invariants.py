"""The invariant matrix every adapter method passes (PEFT's habit): add a method, add it here."""

from __future__ import annotations

import copy

import pytest
import torch

from lorasweep.adapters import METHODS, AdapterSpec, attach
from lorasweep.adapters.svd_init import svd_factors
from tests.conftest import micro_llama

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CASES = [("lora", None), ("pissa", None), ("pissa", 4), ("milora", None)]


def spec(niter=None, rank=4):
    return AdapterSpec(rank=rank, alpha=8.0, dropout=0.0, target_modules=TARGETS, seed=0, pissa_niter=niter)


def lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def test_every_registered_method_is_in_the_matrix():
    assert {m for m, _ in CASES} == set(METHODS)


@pytest.mark.parametrize(("method", "niter"), CASES)
def test_output_unchanged_at_init(method, niter):
    base = micro_llama()
    x = torch.randint(0, 64, (3, 11))
    with torch.no_grad():
        before = base(input_ids=x).logits
        model = attach(method, copy.deepcopy(base), spec(niter))
        after = model(input_ids=x).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("method", "niter"), CASES)
def test_only_adapter_parameters_train(method, niter):
    model = attach(method, micro_llama(), spec(niter))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "no trainable parameters"
    assert all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * len(TARGETS) * 2  # A and B, 7 modules, 2 layers


@pytest.mark.parametrize(("method", "niter"), CASES)
def test_residual_plus_adapter_reconstructs_weight(method, niter):
    base = micro_llama()
    originals = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = attach(method, base, spec(niter))
    for name, layer in lora_layers(model):
        w = layer.get_base_layer().weight
        s = layer.scaling["default"]
        rebuilt = w + s * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        key = name.removeprefix("base_model.model.") + ".weight"
        orig = originals[key]
        rel = (rebuilt - orig).norm() / orig.norm()
        assert rel <= 1e-5, (name, rel.item())
        if method != "lora":  # the adapter really took a part of W out of the base
            assert (w - orig).norm() > 1e-3 * orig.norm()


def test_milora_uses_the_smallest_singular_directions():
    base = micro_llama()
    w0 = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    model = attach("milora", base, spec(rank=4))
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    s = layer.scaling["default"]
    delta = s * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    sv = torch.linalg.svdvals(w0)
    torch.testing.assert_close(torch.linalg.svdvals(delta)[:4], sv[-4:], atol=1e-5, rtol=1e-4)
    u = torch.linalg.svd(w0).U[:, -4:]
    # the adapter's column space is the span of the bottom-4 left singular vectors
    proj = u @ (u.T @ delta)
    torch.testing.assert_close(proj, delta, atol=1e-5, rtol=0)


def test_pissa_uses_the_largest_singular_directions_and_matches_peft():
    w = torch.randn(24, 16)
    a, b, res = svd_factors(w, rank=3, scaling=2.0, which="principal")
    sv = torch.linalg.svdvals(w)
    torch.testing.assert_close(torch.linalg.svdvals(2.0 * b @ a)[:3], sv[:3], atol=1e-5, rtol=1e-4)
    base = micro_llama()
    w0 = base.model.layers[1].mlp.up_proj.weight.detach().clone()
    model = attach("pissa", base, spec(rank=4))
    layer = model.base_model.model.model.layers[1].mlp.up_proj
    ours_a, ours_b, ours_res = svd_factors(w0, 4, layer.scaling["default"], "principal")
    peft_delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(peft_delta, ours_b @ ours_a, atol=1e-5, rtol=1e-4)


def test_svd_factors_rejects_bad_rank_and_randomised_minor():
    w = torch.randn(8, 6)
    with pytest.raises(ValueError, match="rank 7"):
        svd_factors(w, 7, 1.0, "principal")
    with pytest.raises(ValueError, match="randomised"):
        svd_factors(w, 2, 1.0, "minor", niter=2)
