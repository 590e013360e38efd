"""MiLoRA (arXiv 2406.09044): the adapter starts at the *minor* r singular triplets of W, the frozen
base keeps the rest (``residual.py``).  Not in PEFT (its ``mica`` is another method); always a full SVD,
since a randomised range finder cannot target the smallest singular directions."""

from __future__ import annotations

import torch

from lorasweep.adapters import residual
from lorasweep.adapters.method import AdapterSpec, Method
from lorasweep.adapters.svd_init import svd_factors


def factors(weight: torch.Tensor, rank: int, scaling: float, spec: AdapterSpec):
    return svd_factors(weight, rank, scaling, "minor")


METHOD = Method(attach=residual.attacher(factors), export=residual.export_both, export_kind="lora")
