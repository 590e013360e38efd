"""Adapter methods, by registry name.  Adding a method = one function here + one test-matrix entry."""

from lorasweep.adapters.lora import AdapterSpec, attach_lora, attach_milora, attach_pissa

METHODS = {
    "lora": attach_lora,
    "pissa": attach_pissa,
    "milora": attach_milora,
}


def attach(method: str, model, spec: AdapterSpec):
    """Wrap ``model`` in a PEFT model with the adapter of ``method``; only adapter weights train."""
    try:
        fn = METHODS[method]
    except KeyError:
        raise ValueError(f"unknown adapter method {method!r}; valid: {', '.join(METHODS)}") from None
    return fn(model, spec)


__all__ = ["METHODS", "AdapterSpec", "attach"]
