"""Residual-base methods under a bf16 config: the model is exact at init, the adapter holds the minor
components to fp32 accuracy, and the fp32 correction merges and exports exactly (docs/method.md,
"Adapter methods")."""

from __future__ import annotations

import copy

import pytest
import torch

from lorasweep import models
from lorasweep.adapters import AdapterSpec, attach, get, residual
from lorasweep.adapters.peft_lora import lora_layers
from tests.conftest import micro_llama

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TINY = "builtin:tinyworld"
RESIDUAL = ("pissa", "milora", "olora")


def spec(rank: int = 8, alpha: float = 16.0, autocast: bool = False) -> AdapterSpec:
    return AdapterSpec(rank=rank, alpha=alpha, dropout=0.0, target_modules=TARGETS, seed=0, autocast=autocast)


@torch.no_grad()
def logits(model, x: torch.Tensor) -> torch.Tensor:
    return model(input_ids=x).logits


def deviation(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module")
def tiny():
    """Inputs, fp32 base logits, bf16 base logits of the built-in model."""
    fp32, _ = models.load_base(TINY, "float32")
    bf16, _ = models.load_base(TINY, "bfloat16")
    x = torch.randint(3, fp32.config.vocab_size, (4, 32), generator=torch.Generator().manual_seed(0))
    return x, logits(fp32, x), logits(bf16, x)


@pytest.mark.parametrize("method", RESIDUAL)
def test_bf16_model_at_init_is_the_bf16_base(tiny, method):
    x, ref32, ref16 = tiny
    model = attach(method, models.load_base(TINY, "bfloat16")[0], spec())
    out = logits(model, x)
    assert deviation(out, ref32) <= 1.5 * deviation(ref16, ref32)
    assert torch.equal(out, ref16)  # the correction cancels the initial adapter term exactly


@pytest.mark.parametrize("method", RESIDUAL)
def test_fp32_model_under_bf16_autocast_at_init_is_the_base_under_autocast(tiny, method):
    x = tiny[0]
    base = models.load_base(TINY, "float32")[0]
    model = attach(method, copy.deepcopy(base), spec(autocast=True))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what CUDA mixed precision does to every matmul
        assert torch.equal(logits(model, x), logits(base, x))


def minor_part(w: torch.Tensor, rank: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
    return u[:, -rank:] @ torch.diag(s[-rank:]) @ vh[-rank:]


def test_bf16_milora_holds_the_minor_components_to_1e_3():
    model = attach("milora", models.load_base(TINY, "bfloat16")[0], spec())
    worst_adapter = worst_frozen = 0.0
    for _, layer in lora_layers(model):
        w = layer.get_base_layer().weight
        assert w.dtype == torch.bfloat16  # the base weight is the original W, untouched
        m = minor_part(w, 8)
        s = layer.scaling["default"]
        adapter = s * layer.lora_B["default"].weight.double() @ layer.lora_A["default"].weight.double()
        moved = w.double() - residual.effective_base(layer)  # what the frozen base gave up
        worst_adapter = max(worst_adapter, ((adapter - m).norm() / m.norm()).item())
        worst_frozen = max(worst_frozen, ((moved - m).norm() / m.norm()).item())
    assert worst_adapter <= 1e-3 and worst_frozen <= 1e-3, (worst_adapter, worst_frozen)


def test_bf16_residual_keeps_trainable_and_correction_weights_in_fp32():
    model = attach("pissa", micro_llama().to(torch.bfloat16), spec(rank=4, alpha=8.0))
    for _, layer in lora_layers(model):
        assert isinstance(layer.lora_variant["default"], residual.Correction)
        assert layer.get_base_layer().weight.dtype == torch.bfloat16
        assert layer.lora_A["default"].weight.dtype == layer.init_A.dtype == torch.float32
        assert not layer.init_A.requires_grad and not layer.init_B.requires_grad


def test_bf16_merge_rounds_once_from_fp32():
    model = attach("milora", micro_llama(seed=3).to(torch.bfloat16), spec(rank=4, alpha=8.0))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    expected = {}
    for name, layer in lora_layers(model):
        w, s = layer.get_base_layer().weight, layer.scaling["default"]
        b, a = layer.lora_B["default"].weight, layer.lora_A["default"].weight
        delta = s * (b @ a - layer.init_B @ layer.init_A)
        expected[name.removeprefix("base_model.model.")] = (w.float() + delta).to(torch.bfloat16)
    merged = get("milora").merge(model)
    for name, w in expected.items():
        assert torch.equal(merged.get_submodule(name).weight, w), name


@pytest.mark.parametrize("method", RESIDUAL)
def test_correction_is_exact_merges_and_exports(method, tmp_path):
    """The low-precision construction (asked for by ``autocast``), run in fp64 so that its merge and
    export can be checked to 1e-10."""
    from peft import PeftModel

    original = micro_llama(seed=3).double()
    x = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(1))
    model = attach(method, copy.deepcopy(original), spec(rank=4, alpha=8.0, autocast=True))
    for name, layer in lora_layers(model):
        assert isinstance(layer.lora_variant["default"], residual.Correction)
        orig = original.get_submodule(name.removeprefix("base_model.model.")).weight
        assert torch.equal(layer.get_base_layer().weight, orig)
    assert torch.equal(logits(model, x), logits(original, x))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    trained = logits(model, x)
    assert deviation(trained, logits(original, x)) > 1e-3
    out = get(method).export(model, tmp_path)
    loaded = PeftModel.from_pretrained(copy.deepcopy(original), out)
    torch.testing.assert_close(logits(loaded, x), trained, atol=1e-10, rtol=0)
    merged = get(method).merge(model)
    torch.testing.assert_close(logits(merged, x), trained, atol=1e-10, rtol=0)
