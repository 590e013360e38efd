"""What the LoRA-family methods share: a PEFT ``LoraConfig`` from an :class:`AdapterSpec`, the adapted
layers, and saving the adapter.

PEFT keeps the adapter weights in fp32 even on a bf16/fp16 base (``autocast_adapter_dtype``), so the
trainable weights and their optimizer state are fp32 whatever ``model.dtype`` is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from lorasweep.adapters.method import AdapterSpec

ADAPTER = "default"  # PEFT's name for the one adapter a trial trains


def peft_model(model: torch.nn.Module, spec: AdapterSpec, init: bool | str, use_dora: bool = False):
    """Wrap ``model`` with PEFT LoRA layers on ``spec.target_modules``; only adapter weights train."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        use_rslora=spec.use_rslora,
        use_dora=use_dora,
        init_lora_weights=init,
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(spec.seed)  # A's random init (LoRA) and dropout masks depend on the trial seed
    wrapped = get_peft_model(model, cfg)
    if not any(True for _ in lora_layers(wrapped)):
        raise ValueError(f"no module matched target_modules {list(spec.target_modules)}")
    return wrapped


def lora_layers(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
    """(name, layer) of every PEFT LoRA layer of ``model``."""
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            yield name, module


def save_adapter(model, trial_dir: Path) -> Path:
    """PEFT's own adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``)."""
    out = trial_dir / "adapter"
    model.save_pretrained(out)
    return out
