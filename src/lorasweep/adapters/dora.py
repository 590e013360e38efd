"""DoRA (arXiv 2402.09353): W' = m · (W + s·B·A) / ||W + s·B·A||_c, a trainable magnitude m per output
row (initialised to the row norms of W, so the model is unchanged at init) and a LoRA direction update.
PEFT's ``use_dora``: the norm is detached from the gradient (the paper's section 4.3).  The export is a
PEFT DoRA adapter (magnitudes included); vLLM cannot serve it."""

from __future__ import annotations

from lorasweep.adapters import peft_lora
from lorasweep.adapters.method import AdapterSpec, Method


def attach(model, spec: AdapterSpec):
    return peft_lora.peft_model(model, spec, init=True, use_dora=True)


METHOD = Method(attach=attach, export=peft_lora.save_adapter, export_kind="peft")
