"""Residual-base methods (PiSSA, MiLoRA, OLoRA): the adapter starts as a part s·B0·A0 of each adapted
weight W and the frozen base keeps the rest, so the model computes the same function at init.

Where the rest is kept depends on the precision the base weight is used in:

- fp32 (or wider), no autocast: PEFT's construction.  The base weight is overwritten with
  W - s·B0·A0, exact to fp32 rounding.
- a bf16 / fp16 weight, or any weight under bf16/fp16 autocast (``AdapterSpec.autocast``):
  W - s·B0·A0 rounded to 16 bits would change the model (its rounding error is as large as the minor
  singular values MiLoRA moves into the adapter).  So the base weight stays W, untouched,
  and the layer subtracts a frozen fp32 copy of the initial term inside the adapter's own term:
  ``y = W·x + s·(B·(A·x) - B0·(A0·x))``.  At init both low-rank terms are computed by the same
  operations from equal tensors, so they cancel exactly: the output is bit-identical to the base
  model's.  Cost: one more rank-r product per adapted layer, and fp32 copies of B0 and A0.

Either way the initial factors stay on each adapted layer as non-persistent buffers (``init_A``,
``init_B``; not in the saved adapter): the export to plain LoRA needs them.  See ``docs/method.md``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from lorasweep.adapters import export, peft_lora
from lorasweep.adapters.method import AdapterSpec
from lorasweep.adapters.peft_lora import ADAPTER

# (fp32 weight, rank, scaling, spec) -> (A, B) with s·B·A the part of W that starts in the adapter
Factors = Callable[[torch.Tensor, int, float, AdapterSpec], tuple[torch.Tensor, torch.Tensor]]

LOW_PRECISION = (torch.bfloat16, torch.float16)


def keeps_original_base(dtype: torch.dtype, autocast: bool) -> bool:
    """Whether a base weight of ``dtype`` stays W (plus the fp32 correction) rather than becoming W_res."""
    return autocast or dtype in LOW_PRECISION


def residual_weight(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """W - s·B·A in ``weight``'s dtype, with PEFT's order of operations ((s·B)·A)."""
    return (weight - (scaling * b.to(weight.dtype)) @ a.to(weight.dtype)).to(weight.dtype)


@torch.no_grad()
def attach(model: torch.nn.Module, spec: AdapterSpec, factors: Factors):
    """PEFT LoRA layers whose adapter starts at ``factors`` of each base weight, base made residual."""
    wrapped = peft_lora.peft_model(model, spec, init=False)  # A, B are overwritten below
    for name, layer in peft_lora.lora_layers(wrapped):
        base = layer.get_base_layer()
        if not isinstance(base, torch.nn.Linear):
            raise ValueError(f"residual-base methods support nn.Linear only; {name} is {type(base).__name__}")
        lora_a, lora_b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        s = layer.scaling[ADAPTER]
        a, b = factors(
            base.weight.detach().to(torch.promote_types(base.weight.dtype, torch.float32)), spec.rank, s, spec
        )
        lora_a.copy_(a)
        lora_b.copy_(b)
        # buffers follow the layer's device; non-persistent: PEFT saves everything else on the layer
        layer.register_buffer("init_A", lora_a.detach().clone(), persistent=False)
        layer.register_buffer("init_B", lora_b.detach().clone(), persistent=False)
        if keeps_original_base(base.weight.dtype, spec.autocast):
            layer.lora_variant[ADAPTER] = Correction()
        else:
            base.weight.copy_(residual_weight(base.weight, a, b, s))
    return wrapped


def attacher(factors: Factors) -> Callable[[torch.nn.Module, AdapterSpec], torch.nn.Module]:
    return functools.partial(attach, factors=factors)


def initial_state(model) -> dict[str, torch.Tensor]:
    """The initial factors under the keys of PEFT's adapter state dict (``...lora_A.weight``)."""
    out = {}
    for name, layer in peft_lora.lora_layers(model):
        out[f"{name}.lora_A.weight"] = layer.init_A.detach().cpu()
        out[f"{name}.lora_B.weight"] = layer.init_B.detach().cpu()
    return out


def export_both(model, trial_dir: Path) -> Path:
    """PEFT's adapter (valid on the residual base) and, returned, the plain LoRA for the original base."""
    peft_lora.save_adapter(model, trial_dir)
    return export.export_plain_lora(model, initial_state(model), trial_dir / "adapter_plain_lora")


@torch.no_grad()
def effective_base(layer) -> torch.Tensor:
    """The frozen part of an adapted layer's weight, W - s·B0·A0, in fp64 (for checks and tests)."""
    w = layer.get_base_layer().weight.detach().double()
    if isinstance(layer.lora_variant.get(ADAPTER), Correction):
        w = w - layer.scaling[ADAPTER] * layer.init_B.double() @ layer.init_A.double()
    return w


def _delta(module, adapter: str) -> torch.Tensor:
    """s·(B·A - B0·A0) in the adapter's dtype."""
    a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
    return module.scaling[adapter] * (b @ a - module.init_B @ module.init_A)


class Correction:
    """PEFT ``LoraVariant`` for a layer whose base weight is still W: adds s·(B·A·x - B0·A0·x).

    (PEFT calls a variant's static methods with the layer; the interface is PEFT's, see
    ``peft.tuners.lora.layer.LoraVariant``.)
    """

    @staticmethod
    def init(module, adapter_name: str, **kwargs) -> None:
        pass

    @staticmethod
    def forward(module, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs) -> torch.Tensor:
        lora_a, lora_b = module.lora_A[active_adapter], module.lora_B[active_adapter]
        dropout = module.lora_dropout[active_adapter]
        # the same two linear maps on both sides, so at init (A = A0, B = B0, no dropout) delta is 0
        delta = lora_b(lora_a(dropout(x))) - F.linear(F.linear(x, module.init_A), module.init_B)
        return result + delta * module.scaling[active_adapter]

    @staticmethod
    def merge_safe(module, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        delta = _delta(module, active_adapter)
        return (orig_weight.to(delta.dtype) + delta).to(orig_weight.dtype)  # one rounding, from fp32

    @staticmethod
    def merge_unsafe(module, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data = Correction.merge_safe(module, active_adapter, orig_weight.data)

    @staticmethod
    def unmerge(module, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        delta = _delta(module, active_adapter)
        return (orig_weight.to(delta.dtype) - delta).to(orig_weight.dtype)

    @staticmethod
    def supports_lora_conversion() -> bool:
        return False
