"""Curvature at initialisation: the largest Hessian eigenvalue of the training loss with respect to an
adapter's parameters, by Lanczos iteration on Hessian-vector products.

Why: a method's usable learning rate scales roughly as 1/λmax (gradient descent on a quadratic is
stable only for LR < 2/λmax); *Learning Rate Matters* (arXiv 2602.04998) explains PiSSA's ~10x lower
best LR by its ~10x larger λmax at init.  Putting λmax beside each method's validation-chosen LR lets
a study check that explanation on its own model and data.

How: Hessian-vector products by double backward (Pearlmutter 1994) on the token-normalised training
loss of the first ``n`` training examples (the loss a training step uses, ``train/loop.py``), model in
eval mode (no dropout), in micro-batches so that memory does not grow with ``n``.  Lanczos with full
re-orthogonalisation (Golub & Van Loan, §10.1) converges to the largest *algebraic* eigenvalue (power
iteration would find the largest in magnitude, which may be negative); it stops when the top Ritz
value moves less than ``tol`` (relative) between iterations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

MatVec = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TopEigen:
    value: float
    iterations: int
    converged: bool
    history: tuple[float, ...]  # the top Ritz value after each iteration


def lanczos_top(matvec: MatVec, dim: int, iters: int = 40, tol: float = 1e-4, seed: int = 0) -> TopEigen:
    """Largest eigenvalue of the symmetric operator ``matvec`` on R^dim (float64 internally)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(dim, generator=g, dtype=torch.float64)
    basis = [v / v.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    history: list[float] = []
    w = matvec(basis[0])
    for k in range(min(iters, dim)):
        alpha = float(w @ basis[-1])
        alphas.append(alpha)
        w = w - alpha * basis[-1] - (betas[-1] * basis[-2] if betas else 0.0)
        for q in basis:  # full re-orthogonalisation: keeps the Ritz values clean in float arithmetic
            w = w - (w @ q) * q
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        history.append(float(torch.linalg.eigvalsh(t)[-1]))
        if k > 0 and abs(history[-1] - history[-2]) <= tol * abs(history[-1]):
            return TopEigen(history[-1], k + 1, True, tuple(history))
        beta = float(w.norm())
        if beta < 1e-10 * max(1.0, abs(history[-1])):  # an invariant subspace: the value is exact
            return TopEigen(history[-1], k + 1, True, tuple(history))
        betas.append(beta)
        basis.append(w / beta)
        w = matvec(basis[-1])
    return TopEigen(history[-1], len(history), len(history) >= dim, tuple(history))


def flat_hvp(loss_terms: Callable[[], Iterable[torch.Tensor]], params: Sequence[torch.Tensor]) -> MatVec:
    """v -> H v for the loss sum(loss_terms()) w.r.t. ``params`` (one flat float64 vector in and out).

    ``loss_terms`` returns the loss in pieces (one per micro-batch, each already divided by the
    whole loss's normaliser); each piece is differentiated twice and dropped, so memory holds one
    micro-batch's graph at a time.
    """
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def matvec(v: torch.Tensor) -> torch.Tensor:
        chunks = [c.view(s).to(p.dtype) for c, s, p in zip(v.split(sizes), shapes, params, strict=True)]
        out = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        # the fused attention kernels have no double backward: the plain (math) one has
        with sdpa_kernel(SDPBackend.MATH):
            _accumulate(loss_terms, params, chunks, out)
        return torch.cat([o.reshape(-1) for o in out])

    return matvec


def _accumulate(loss_terms, params, chunks, out) -> None:
    for term in loss_terms():
        grads = torch.autograd.grad(term, params, create_graph=True, allow_unused=True)
        dot = sum((g * c).sum() for g, c in zip(grads, chunks, strict=True) if g is not None)
        if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
            continue
        hv = torch.autograd.grad(dot, params, allow_unused=True)
        for o, h in zip(out, hv, strict=True):
            if h is not None:
                o += h.double()


def dense_hessian(matvec: MatVec, dim: int) -> torch.Tensor:
    """The whole Hessian, one unit vector at a time (for tests on tiny models)."""
    eye = torch.eye(dim, dtype=torch.float64)
    h = torch.stack([matvec(eye[i]) for i in range(dim)])
    return (h + h.T) / 2


def adapter_loss_terms(model, examples, pad_id: int, micro: int) -> Callable[[], Iterable[torch.Tensor]]:
    """The training step's loss over ``examples`` (response-token sum / label tokens), in pieces."""
    from lorasweep.data.tokenize import collate
    from lorasweep.train.loop import token_loss_sum

    total = max(sum(e.n_label_tokens for e in examples), 1)
    device = next(model.parameters()).device

    def terms() -> Iterable[torch.Tensor]:
        for i in range(0, len(examples), micro):
            batch = {k: v.to(device) for k, v in collate(examples[i : i + micro], pad_id).items()}
            yield token_loss_sum(model, batch) / total

    return terms


def adapter_top_eigenvalue(
    model, examples, pad_id: int, micro: int = 32, iters: int = 40, tol: float = 1e-4, seed: int = 0
) -> TopEigen:
    """λmax of the training loss over ``examples`` w.r.t. the trainable (adapter) parameters."""
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    dim = sum(p.numel() for p in params)
    return lanczos_top(
        flat_hvp(adapter_loss_terms(model, examples, pad_id, micro), params), dim, iters, tol, seed
    )
