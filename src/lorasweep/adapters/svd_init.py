"""SVD-based adapter initialisation (PiSSA, MiLoRA) as pure tensor functions.

PiSSA (Meng et al. 2024) puts the *principal* r singular triplets of W into the adapter, MiLoRA
(Wang et al. 2024, sufenlp/MiLoRA) the *minor* ones; both write the residual back into the frozen base
so that the model is unchanged at init:  W = W_res + s·B·A.  Following PEFT's ``pissa_init``, the
singular values are divided by the LoRA scaling s before the square root is split between the factors,
so that s·B·A equals the selected part of W exactly.  The SVD runs in fp32 whatever the weight dtype.
"""

from __future__ import annotations

import torch

WHICH = ("principal", "minor")


def svd_factors(
    weight: torch.Tensor, rank: int, scaling: float, which: str, niter: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(A, B, W_res)`` with ``A: r x in``, ``B: out x r`` and ``W_res = W - s·B·A``.

    ``niter`` selects the randomised SVD (principal only: a randomised range finder cannot target the
    smallest singular directions).
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    out_f, in_f = weight.shape
    if not 0 < rank <= min(out_f, in_f):
        raise ValueError(f"rank {rank} must be in 1..{min(out_f, in_f)} for a {out_f}x{in_f} weight")
    w = weight.detach().to(torch.float32)
    if niter is not None:
        if which != "principal":
            raise ValueError("the randomised SVD only finds principal directions; use a full SVD")
        u, s, v = torch.svd_lowrank(w, q=rank, niter=niter)
        u, s, vh = u[:, :rank], s[:rank], v[:, :rank].T
    else:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        sel = slice(0, rank) if which == "principal" else slice(s.numel() - rank, s.numel())
        u, s, vh = u[:, sel], s[sel], vh[sel]
    root = torch.sqrt(s / scaling)
    a = root[:, None] * vh
    b = u * root[None, :]
    w_res = w - scaling * (b @ a)
    return a.to(weight.dtype), b.to(weight.dtype), w_res.to(weight.dtype)
