"""OLoRA (arXiv 2406.01775): QR-decompose W = Q·R and start the adapter at B = Q[:, :r] (orthonormal
columns), A = R[:r]; the frozen base keeps W - s·B·A (``residual.py``).  The arithmetic is PEFT's
``olora`` initialisation, so the factors are bit-identical to PEFT's."""

from __future__ import annotations

import torch

from lorasweep.adapters import residual
from lorasweep.adapters.method import AdapterSpec, Method


def factors(weight: torch.Tensor, rank: int, scaling: float, spec: AdapterSpec):
    out_f, in_f = weight.shape
    if not 0 < rank <= min(out_f, in_f):
        raise ValueError(f"rank {rank} must be in 1..{min(out_f, in_f)} for a {out_f}x{in_f} weight")
    q, r = torch.linalg.qr(weight)
    return r[:rank].contiguous(), q[:, :rank].contiguous()


METHOD = Method(attach=residual.attacher(factors), export=residual.export_both, export_kind="lora")
