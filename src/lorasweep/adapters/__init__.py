"""Adapter methods, by registry name.  Adding a method = one entry here + one test-matrix entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lorasweep.adapters.lora import AdapterSpec, attach_lora, attach_milora, attach_pissa


@dataclass(frozen=True)
class Method:
    attach: Callable  # (model, AdapterSpec) -> PeftModel with only adapter weights trainable
    residual_base: bool  # True: init rewrites the base weights, so exports convert to plain LoRA


METHODS = {
    "lora": Method(attach_lora, residual_base=False),
    "pissa": Method(attach_pissa, residual_base=True),
    "milora": Method(attach_milora, residual_base=True),
}


def attach(method: str, model, spec: AdapterSpec):
    """Wrap ``model`` in a PEFT model with the adapter of ``method``; only adapter weights train."""
    try:
        entry = METHODS[method]
    except KeyError:
        raise ValueError(f"unknown adapter method {method!r}; valid: {', '.join(METHODS)}") from None
    return entry.attach(model, spec)


__all__ = ["METHODS", "AdapterSpec", "Method", "attach"]
