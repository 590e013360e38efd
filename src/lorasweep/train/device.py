"""Where and how a trial computes: precision, TF32, process rank and peak memory.

Covered: the mixed-precision mode handed to ``accelerate`` (bf16 autocast on CUDA devices that support
it, fp16 autocast with loss scaling on older ones, none on CPU, where bf16 runs 20-40x slower on an
AVX2-only machine, docs/method.md, CPU defaults); TF32 matmuls on CUDA; whether this process is the one
that writes results; peak memory of a trial.  Everything is a no-op on CPU.

Not covered: device placement itself (``accelerator.device``, handed to ``models.load_base``), FSDP or
DeepSpeed settings (an ``accelerate launch`` config), multi-node launches.
"""

from __future__ import annotations

import os
import resource
import sys

import torch

MIXED_PRECISION = ("no", "bf16", "fp16")


def mixed_precision() -> str:
    """The autocast mode for ``Accelerator(mixed_precision=...)``.

    ``accelerate launch --mixed_precision X`` (which exports ``ACCELERATE_MIXED_PRECISION``) wins, so
    a run can force fp32 on a GPU; otherwise bf16 on CUDA where supported, fp16 on older GPUs, and no
    autocast on CPU.  Master weights, optimizer state and the loss reduction stay in fp32 either way.
    """
    forced = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if forced:
        if forced not in MIXED_PRECISION:
            raise ValueError(f"ACCELERATE_MIXED_PRECISION={forced!r}; valid: {', '.join(MIXED_PRECISION)}")
        return forced
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def enable_tf32() -> bool:
    """TF32 for fp32 matmuls and convolutions on CUDA (Ampere and later); returns whether it is on.

    Only the fp32 parts (the loss, the adapter's own fp32 matmuls outside autocast) are affected;
    TF32 keeps fp32's range with a 10-bit mantissa, which is what bf16 autocast already accepts.
    """
    if not torch.cuda.is_available():
        return False
    if getattr(torch.backends.cuda.matmul, "fp32_precision", None) is not None:  # torch >= 2.9 API
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return True


def tf32_enabled() -> bool:
    if not torch.cuda.is_available():
        return False
    precision = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    return precision == "tf32" if precision is not None else bool(torch.backends.cuda.matmul.allow_tf32)


def is_main_process() -> bool:
    """Whether this process writes results: rank 0 of a ``torchrun`` / ``accelerate launch`` world,
    or the only process.  Asked through ``accelerate`` so every launcher's variables are understood;
    called before the trial's ``Accelerator`` exists, it sets up the same shared state it would."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available()).is_main_process


def reset_peak_memory() -> None:
    """Start a trial's peak-memory window (CUDA only: a process's peak RSS cannot be reset)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict:
    """Peak memory since ``reset_peak_memory``: CUDA's allocator peak on a GPU, else the process's peak
    resident set size (over the process's life so far: a worker that ran earlier trials reports their
    peak too)."""
    if torch.cuda.is_available():
        return {"kind": "cuda_max_allocated", "mb": torch.cuda.max_memory_allocated() / 2**20}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {"kind": "cpu_peak_rss", "mb": rss / (2**20 if sys.platform == "darwin" else 2**10)}


def describe(accelerator) -> dict:
    """What a trial ran on, for its record."""
    cuda = torch.cuda.is_available()
    return {
        "device": str(accelerator.device),
        "name": torch.cuda.get_device_name(accelerator.device) if cuda else None,
        "mixed_precision": accelerator.mixed_precision,
        "tf32": tf32_enabled(),
        "world_size": accelerator.num_processes,
        "distributed_type": str(accelerator.distributed_type).split(".")[-1],
    }


def end_distributed() -> None:
    """Tear the process group down explicitly: left to interpreter exit, gloo's threads can abort the
    process ("terminate called without an active exception") after the work is done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
