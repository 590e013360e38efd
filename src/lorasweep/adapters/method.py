"""The shape every adapter method has: an :class:`AdapterSpec` in, a :class:`Method` of plain functions.

A method is one file that builds a ``Method`` and one line in ``METHODS`` (``adapters/__init__.py``).
Nothing outside ``adapters/`` knows which method it runs: the trial attaches, hands the optimizer the
method's parameter groups, exports and merges through these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

EXPORT_KINDS = ("lora", "peft", "model")


@dataclass(frozen=True)
class AdapterSpec:
    """The adapter settings of one trial (plain values, built from ``adapter.*`` by the trial runner)."""

    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]
    seed: int
    use_rslora: bool = False  # scaling alpha/sqrt(r) instead of alpha/r (arXiv 2312.03732)
    pissa_niter: int | None = None  # PiSSA only: randomised SVD with this many subspace iterations
    loraplus_lr_ratio: float = 16.0  # LoRA+ only: LR of the B matrices / LR of the A matrices
    autocast: bool = False  # the forward runs under bf16/fp16 autocast (CUDA mixed precision)

    @classmethod
    def of(cls, adapter, seed: int, autocast: bool = False) -> AdapterSpec:
        """The spec of a trial with ``seed`` from the study's ``adapter`` section (``schema.AdapterConfig``):
        the one place the config becomes adapter settings (trials alone, packed groups, curvature)."""
        return cls(
            rank=adapter.rank,
            alpha=adapter.alpha,
            dropout=adapter.dropout,
            target_modules=tuple(adapter.target_modules),
            seed=seed,
            use_rslora=adapter.use_rslora,
            pissa_niter=adapter.pissa_niter,
            loraplus_lr_ratio=adapter.loraplus_lr_ratio,
            autocast=autocast,
        )


def one_group(model: torch.nn.Module, spec: AdapterSpec) -> list[dict]:
    """Every trainable parameter at the scheduled LR."""
    return [{"params": [p for p in model.parameters() if p.requires_grad]}]


def merge_peft(model: torch.nn.Module) -> torch.nn.Module:
    """Fold a PEFT adapter into its base weights: the same function, faster generation."""
    return model.merge_and_unload()


@dataclass(frozen=True)
class Method:
    attach: Callable[[torch.nn.Module, AdapterSpec], torch.nn.Module]
    """(base model, spec) -> the model to train; exactly the parameters that train require grad."""
    export: Callable[[torch.nn.Module, Path], Path]
    """(trained model, trial dir) -> the folder it wrote that applies to the *original* base model."""
    export_kind: str
    """What that folder is: ``lora`` a plain PEFT LoRA adapter (vLLM serves it), ``peft`` another PEFT
    adapter, ``model`` a full model folder."""
    merge: Callable[[torch.nn.Module], torch.nn.Module] = merge_peft
    """trained model -> a plain model computing the same function (used for generation)."""
    param_groups: Callable[[torch.nn.Module, AdapterSpec], list[dict]] = one_group
    """Optimizer parameter groups; a group's ``lr_scale`` multiplies the scheduled LR (default 1)."""

    def __post_init__(self) -> None:
        if self.export_kind not in EXPORT_KINDS:
            raise ValueError(f"export_kind must be one of {EXPORT_KINDS}, got {self.export_kind!r}")
