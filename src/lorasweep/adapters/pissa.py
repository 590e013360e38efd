"""PiSSA (arXiv 2404.02948): the adapter starts at the principal r singular triplets of W, the frozen
base keeps the rest (``residual.py``).  ``adapter.pissa_niter`` switches to PEFT's randomised SVD."""

from __future__ import annotations

import torch

from lorasweep.adapters import residual
from lorasweep.adapters.method import AdapterSpec, Method
from lorasweep.adapters.svd_init import svd_factors


def factors(weight: torch.Tensor, rank: int, scaling: float, spec: AdapterSpec):
    return svd_factors(weight, rank, scaling, "principal", niter=spec.pissa_niter)


METHOD = Method(attach=residual.attacher(factors), export=residual.export_both, export_kind="lora")
