"""Adapter methods, by registry name.  Adding a method = one file that builds a :class:`Method`, one
line here and one entry in the invariant matrix (``tests/adapters/test_invariants.py``)."""

from __future__ import annotations

from lorasweep.adapters import dora, full, lora, loraplus, milora, olora, pissa
from lorasweep.adapters.method import AdapterSpec, Method

METHODS: dict[str, Method] = {
    "lora": lora.METHOD,
    "pissa": pissa.METHOD,
    "milora": milora.METHOD,
    "olora": olora.METHOD,
    "dora": dora.METHOD,
    "loraplus": loraplus.METHOD,
    "full": full.METHOD,
}


def get(method: str) -> Method:
    try:
        return METHODS[method]
    except KeyError:
        from lorasweep.errors import did_you_mean

        hint = did_you_mean(method, METHODS)
        raise ValueError(f"unknown adapter method {method!r}; valid: {', '.join(METHODS)}{hint}") from None


def attach(method: str, model, spec: AdapterSpec):
    """``model`` made ready to train with ``method``; only the method's weights require grad."""
    return get(method).attach(model, spec)


__all__ = ["METHODS", "AdapterSpec", "Method", "attach", "get"]
