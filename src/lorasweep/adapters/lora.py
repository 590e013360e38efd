"""LoRA (arXiv 2106.09685): W + s·B·A with A Kaiming-uniform and B = 0 (PEFT's default initialisation),
s = alpha/r (alpha/sqrt(r) with ``use_rslora``, arXiv 2312.03732)."""

from __future__ import annotations

from lorasweep.adapters import peft_lora
from lorasweep.adapters.method import AdapterSpec, Method


def attach(model, spec: AdapterSpec):
    return peft_lora.peft_model(model, spec, init=True)


METHOD = Method(attach=attach, export=peft_lora.save_adapter, export_kind="lora")
