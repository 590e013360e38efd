"""LoRA+ (arXiv 2402.12354): LoRA whose B matrices learn ``adapter.loraplus_lr_ratio`` times faster than
its A matrices (the paper's lambda; 16 = 2^4, its recommended default).  The same model as ``lora``; only
the optimizer's parameter groups differ, so the trial's LR is the A matrices' LR."""

from __future__ import annotations

import torch

from lorasweep.adapters import lora
from lorasweep.adapters.method import AdapterSpec, Method
from lorasweep.adapters.peft_lora import save_adapter


def param_groups(model: torch.nn.Module, spec: AdapterSpec) -> list[dict]:
    a_side, b_side = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (b_side if ".lora_B." in name else a_side).append(p)
    return [{"params": a_side}, {"params": b_side, "lr_scale": spec.loraplus_lr_ratio}]


METHOD = Method(attach=lora.attach, export=save_adapter, export_kind="lora", param_groups=param_groups)
