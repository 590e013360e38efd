"""SVD-based adapter factors (PiSSA, MiLoRA) as pure tensor functions.

PiSSA (arXiv 2404.02948) starts the adapter from the *principal* r singular triplets of W, MiLoRA
(arXiv 2406.09044) from the *minor* ones.  Following PEFT's ``pissa_init``, the singular values are
divided by the LoRA scaling s before the square root is split between the factors, so that s·B·A is
exactly the selected part of W; the arithmetic is PEFT's, so PiSSA's factors are bit-identical to
PEFT's.  The SVD runs in fp32 (or the weight's dtype if wider) whatever dtype the model has.
"""

from __future__ import annotations

import torch

WHICH = ("principal", "minor")


def svd_factors(
    weight: torch.Tensor, rank: int, scaling: float, which: str, niter: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(A, B)``, ``A: r x in`` and ``B: out x r``, with s·B·A the selected rank-r part of W.

    ``niter`` selects the randomised SVD (principal only: a randomised range finder cannot target the
    smallest singular directions).  The factors are fp32 (or wider, if ``weight`` is).
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    out_f, in_f = weight.shape
    if not 0 < rank <= min(out_f, in_f):
        raise ValueError(f"rank {rank} must be in 1..{min(out_f, in_f)} for a {out_f}x{in_f} weight")
    w = weight.detach().to(torch.promote_types(weight.dtype, torch.float32))
    if niter is not None:
        if which != "principal":
            raise ValueError("the randomised SVD only finds principal directions; use a full SVD")
        u, s, v = torch.svd_lowrank(w, q=rank, niter=niter)
        u, s, vh = u[:, :rank], s[:rank], v[:, :rank].T
    else:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        sel = slice(0, rank) if which == "principal" else slice(s.numel() - rank, s.numel())
        u, s, vh = u[:, sel], s[sel], vh[sel]
    root = torch.diag(torch.sqrt(s / scaling))
    return root @ vh, u @ root
