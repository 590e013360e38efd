"""Full fine-tuning: every weight trains; the baseline every adapter is compared with.

The weights train in fp32 whatever ``model.dtype`` is (a bf16 base is upcast exactly): with bf16
master weights most AdamW updates would round away (an update below half a bf16 ulp, 2^-9 of the
weight, is lost).  Memory: 16 bytes per parameter (weights, gradients, two AdamW moments) plus
activations.  The adapter options (rank, alpha, targets, rsLoRA) do not apply.  The export is the whole
model (``model/``, safetensors in fp32)."""

from __future__ import annotations

from pathlib import Path

import torch

from lorasweep.adapters.method import AdapterSpec, Method


def attach(model: torch.nn.Module, spec: AdapterSpec) -> torch.nn.Module:
    model.float()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def export(model: torch.nn.Module, trial_dir: Path) -> Path:
    out = trial_dir / "model"
    model.save_pretrained(out)
    return out


METHOD = Method(attach=attach, export=export, export_kind="model", merge=lambda model: model)
