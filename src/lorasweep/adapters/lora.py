"""LoRA, PiSSA and MiLoRA on PEFT's LoRA layers.

All three share PEFT's ``LoraLayer`` (so training, saving and merging are PEFT's); they differ only in
initialisation: LoRA uses PEFT's default (Kaiming A, zero B), PiSSA PEFT's own ``pissa`` init, and
MiLoRA, which PEFT does not have (its ``mica`` is a different method), is initialised here from the
minor singular triplets by :func:`lorasweep.adapters.svd_init.svd_factors`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AdapterSpec:
    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]
    seed: int
    use_rslora: bool = False
    pissa_niter: int | None = None


def _peft_model(model, spec: AdapterSpec, init):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        use_rslora=spec.use_rslora,
        init_lora_weights=init,
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(spec.seed)  # A's random init (LoRA) and dropout masks depend on the trial seed
    peft_model = get_peft_model(model, cfg)
    if not any(True for _ in _lora_layers(peft_model)):
        raise ValueError(f"no module matched target_modules {list(spec.target_modules)}")
    return peft_model


def _lora_layers(peft_model):
    from peft.tuners.lora import LoraLayer

    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            yield name, module


def attach_lora(model, spec: AdapterSpec):
    return _peft_model(model, spec, init=True)


def attach_pissa(model, spec: AdapterSpec):
    init = "pissa" if spec.pissa_niter is None else f"pissa_niter_{spec.pissa_niter}"
    return _peft_model(model, spec, init=init)


@torch.no_grad()
def attach_milora(model, spec: AdapterSpec):
    from lorasweep.adapters.svd_init import svd_factors

    peft_model = _peft_model(model, spec, init=True)
    for name, layer in _lora_layers(peft_model):
        base = layer.get_base_layer()
        if not isinstance(base, torch.nn.Linear):
            raise ValueError(f"MiLoRA supports nn.Linear layers only; {name} is {type(base).__name__}")
        adapter = "default"
        a, b, w_res = svd_factors(base.weight, spec.rank, layer.scaling[adapter], which="minor")
        layer.lora_A[adapter].weight.copy_(a)
        layer.lora_B[adapter].weight.copy_(b)
        base.weight.copy_(w_res)
    return peft_model
