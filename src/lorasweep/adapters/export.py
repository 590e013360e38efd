"""Export a residual-base adapter (PiSSA, MiLoRA, OLoRA) as a plain LoRA for the *original* base model.

A trained residual-base adapter is only valid on its residual base W_res = W - s·B0·A0.  On the
original W the same function is W + s·(B·A - B0·A0) = W + s·[B, -B0]·[A; A0]: a plain LoRA of rank 2r
(arXiv 2404.02948; PEFT does this for PiSSA and OLoRA with ``path_initial_model_for_weight_conversion``;
this version works for any initial factors, MiLoRA's included).  See ``docs/method.md``, "Adapter methods".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def plain_lora_state(
    trained: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """PEFT adapter state dicts (``...lora_A.weight``/``...lora_B.weight``) -> the rank-2r state dict."""
    out = {}
    for key, value in trained.items():
        if ".lora_A." in key:
            out[key] = torch.cat([value, initial[key]], dim=0).contiguous()
        elif ".lora_B." in key:
            out[key] = torch.cat([value, -initial[key]], dim=1).contiguous()
        else:
            raise ValueError(f"unexpected adapter tensor {key!r} (only lora_A/lora_B are exported)")
    return out


def plain_lora_alpha(rank: int, alpha: float, use_rslora: bool) -> float:
    """The alpha that keeps the scaling s unchanged at rank 2r."""
    scaling = alpha / math.sqrt(rank) if use_rslora else alpha / rank
    return scaling * (math.sqrt(2 * rank) if use_rslora else 2 * rank)


def export_plain_lora(peft_model, initial: dict[str, torch.Tensor], out_dir: Path) -> Path:
    """Write ``out_dir`` as a PEFT LoRA adapter for the original base model."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    cfg = peft_model.peft_config["default"]
    trained = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(peft_model).items()}
    state = plain_lora_state(trained, initial)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / "adapter_model.safetensors"))
    config = cfg.to_dict()
    config.update(
        r=2 * cfg.r,
        lora_alpha=plain_lora_alpha(cfg.r, cfg.lora_alpha, cfg.use_rslora),
        init_lora_weights=True,
        target_modules=sorted(cfg.target_modules),
        peft_type="LORA",
        task_type=str(cfg.task_type.value if hasattr(cfg.task_type, "value") else cfg.task_type),
    )
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2, default=str))
    return out_dir
