"""The invariant matrix every adapter method passes (PEFT's habit): add a method, add a Case here.

Per case: the output is unchanged at init, exactly the method's parameters train, the optimizer groups
cover them once, the export written for the original base reloads to the same outputs (save -> load),
and the merged model computes what the unmerged one does (fp32, atol 1e-5).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass

import pytest
import torch

from lorasweep.adapters import METHODS, AdapterSpec, attach, get, residual
from lorasweep.adapters.peft_lora import lora_layers
from tests.conftest import micro_llama

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA = (".lora_A.", ".lora_B.")


@dataclass(frozen=True)
class Case:
    method: str
    trains: tuple[str, ...] | None  # substrings naming the trainable parameters; None: every parameter
    residual: bool = False  # the adapter starts at a part of W that the base gives up
    niter: int | None = None
    rslora: bool = False

    def __str__(self) -> str:
        return (
            self.method + (f"-niter{self.niter}" if self.niter else "") + ("-rslora" if self.rslora else "")
        )


CASES = [
    Case("lora", LORA),
    Case("lora", LORA, rslora=True),
    Case("pissa", LORA, residual=True),
    Case("pissa", LORA, residual=True, niter=4),
    Case("pissa", LORA, residual=True, rslora=True),
    Case("milora", LORA, residual=True),
    Case("milora", LORA, residual=True, rslora=True),
    Case("olora", LORA, residual=True),
    Case("olora", LORA, residual=True, rslora=True),
    Case("dora", (*LORA, ".lora_magnitude_vector."), rslora=False),
    Case("dora", (*LORA, ".lora_magnitude_vector."), rslora=True),
    Case("loraplus", LORA),
    Case("loraplus", LORA, rslora=True),
    Case("full", None),
]
matrix = pytest.mark.parametrize("case", CASES, ids=str)


def spec(case: Case, rank: int = 4) -> AdapterSpec:
    return AdapterSpec(
        rank=rank,
        alpha=8.0,
        dropout=0.0,
        target_modules=TARGETS,
        seed=0,
        use_rslora=case.rslora,
        pissa_niter=case.niter,
        loraplus_lr_ratio=8.0,
    )


def inputs() -> torch.Tensor:
    return torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def logits(model) -> torch.Tensor:
    return model(input_ids=inputs()).logits


@torch.no_grad()
def train_a_little(model) -> None:
    """Stand-in for training: move every trainable weight."""
    g = torch.Generator().manual_seed(2)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def reload(kind: str, path, original):
    """The export, loaded the way a user would: PEFT on the original base, or the model folder alone."""
    if kind == "model":
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path).eval()
    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(original), path).eval()


def test_every_registered_method_is_in_the_matrix():
    assert {c.method for c in CASES} == set(METHODS)
    # rsLoRA is an option of every LoRA-family method
    assert {c.method for c in CASES if c.rslora} == set(METHODS) - {"full"}


@matrix
def test_output_unchanged_at_init(case):
    base = micro_llama()
    before = logits(base)
    model = attach(case.method, copy.deepcopy(base), spec(case))
    torch.testing.assert_close(logits(model), before, atol=1e-5, rtol=0)


@matrix
def test_only_the_methods_parameters_train(case):
    model = attach(case.method, micro_llama(), spec(case))
    names = {n for n, _ in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if case.trains is None:
        assert trainable == names
        return
    assert all(any(t in n for t in case.trains) for n in trainable), trainable
    assert len(trainable) == len(case.trains) * len(TARGETS) * 2  # per adapted module, 7 modules, 2 layers


@matrix
def test_param_groups_hold_every_trainable_parameter_once(case):
    model = attach(case.method, micro_llama(), spec(case))
    groups = get(case.method).param_groups(model, spec(case))
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters() if p.requires_grad}
    scaled = {id(p) for g in groups if g.get("lr_scale", 1.0) != 1.0 for p in g["params"]}
    if case.method == "loraplus":  # B matrices at ratio x the LR, A matrices at the LR
        assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, 8.0]
        assert scaled == {id(p) for n, p in model.named_parameters() if ".lora_B." in n}
    else:
        assert not scaled


@matrix
def test_scaling_follows_rslora(case):
    if case.method == "full":
        pytest.skip("full fine-tuning has no adapter scaling")
    model = attach(case.method, micro_llama(), spec(case))
    expected = 8.0 / math.sqrt(4) if case.rslora else 8.0 / 4
    assert {layer.scaling["default"] for _, layer in lora_layers(model)} == {expected}


@matrix
def test_residual_base_plus_adapter_is_the_original_weight(case):
    base = micro_llama()
    originals = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = attach(case.method, base, spec(case))
    layers = list(lora_layers(model))
    assert bool(layers) == (case.method != "full")
    for name, layer in layers:
        orig = originals[name.removeprefix("base_model.model.") + ".weight"]
        s = layer.scaling["default"]
        adapter = s * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
        frozen = residual.effective_base(layer).float() if case.residual else layer.get_base_layer().weight
        rel = (frozen + adapter - orig).norm() / orig.norm()
        assert rel <= 1e-5, (name, rel.item())
        # residual methods: the adapter really took a part of W out of the base; the others start at 0
        assert (adapter.norm() > 1e-3 * orig.norm()) == case.residual


@matrix
def test_export_reloads_on_the_original_base_with_the_same_outputs(case, tmp_path):
    original = micro_llama(seed=3)
    model = attach(case.method, copy.deepcopy(original), spec(case))
    train_a_little(model)
    trained = logits(model)
    assert (trained - logits(original)).abs().max() > 1e-3  # the stand-in training changed the function
    method = get(case.method)
    out = method.export(model, tmp_path)
    assert out.parent == tmp_path and out.is_dir()
    if method.export_kind == "lora":  # a plain LoRA: what vLLM serves
        config = json.loads((out / "adapter_config.json").read_text())
        assert (
            config["peft_type"] == "LORA" and not config["use_dora"] and config["init_lora_weights"] is True
        )
        assert config["r"] == (8 if case.residual else 4)
    loaded = reload(method.export_kind, out, original)
    torch.testing.assert_close(logits(loaded), trained, atol=1e-5, rtol=1e-5)


@matrix
def test_merged_model_computes_what_the_unmerged_one_does(case):
    model = attach(case.method, micro_llama(seed=4), spec(case))
    train_a_little(model)
    unmerged = logits(model)
    merged = get(case.method).merge(model)
    assert not list(lora_layers(merged))
    torch.testing.assert_close(logits(merged), unmerged, atol=1e-5, rtol=1e-5)
