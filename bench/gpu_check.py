"""GPU check, the Python half of ``bench/gpu_check.sh``: is this CUDA machine ready for a sweep?

Covered: a short LoRA, PiSSA and MiLoRA training (the real loop, bf16 autocast where supported, TF32)
at two effective batch sizes on a model folder, default the cached ``lorasweep fetch smollm2-135m``
folder, else the built-in model; each run must complete with a decreasing loss; reported per run:
steady tokens/s, MFU and peak CUDA memory.  Offline: only the repository and the given folder are read.

MFU = 6 N x tokens/s / the GPU's peak dense bf16 FLOP/s, N = the base model's parameters (the PaLM /
nanoGPT convention).  LoRA computes no gradients for the frozen weights, so the work done per token is
nearer 4N: the 6N figure is the one usually quoted, not the share of useful work.

Not covered: several GPUs (``docs/distributed.md``), evaluation speed.  Exit codes: 0 all checks
passed, 1 a check failed, 2 no CUDA device.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import METHODS, encoded_examples, measure_training, quiet  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "gpu_check.md"

# Peak dense (no sparsity) tensor-core TFLOP/s in bf16 (fp16 where the GPU has no bf16), from NVIDIA's
# data sheets.  First substring of the device name that matches wins, so longer names come first.
PEAK_TFLOPS = (
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM
    ("H800", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("V100", 125.0),  # fp16
    ("T4", 65.0),  # fp16
)


def peak_tflops(name: str) -> float | None:
    return next((tf for key, tf in PEAK_TFLOPS if key in name), None)


def default_model() -> str:
    """The cached ``lorasweep fetch smollm2-135m`` folder if this machine has one, else the built-in."""
    from lorasweep.fetch import cached

    folder = cached("smollm2-135m")
    return str(folder) if folder is not None else "builtin:tinyworld"


def decreased(losses: list[float], k: int = 3) -> bool:
    """Mean of the last ``k`` losses below the mean of the first ``k`` (single batches are noisy)."""
    return len(losses) >= 2 * k and sum(losses[-k:]) / k < sum(losses[:k]) / k


def run(
    model: str,
    batch_sizes: list[int],
    steps: int,
    lr: float,
    max_micro: int,
    peak: float | None,
    methods: tuple[str, ...] = METHODS,
) -> list:
    from accelerate import Accelerator

    from lorasweep import models
    from lorasweep.train import device

    accelerator = Accelerator(mixed_precision=device.mixed_precision())
    device.enable_tf32()
    tok = models.load_tokenizer(model)
    examples = encoded_examples(tok, steps * max(batch_sizes), max_len=128)
    rows = []
    for method in methods:
        for b in batch_sizes:
            device.reset_peak_memory()
            r = measure_training(model, method, b, examples[: steps * b], accelerator, lr, max_micro)
            r["peak_mb"] = device.peak_memory()["mb"]
            del r["model"], r["tokenizer"]
            accelerator.free_memory()  # drops the prepared model and optimizer before the next run
            r["mfu"] = 6 * r["base_params"] * r["tokens_per_s"] / (peak * 1e12) if peak else None
            r["ok"] = r["status"] == "completed" and decreased(r["losses"])
            rows.append(r)
            print(
                f"{method:7s} batch {b:4d} ({r['split']}): {r['tokens_per_s']:,.0f} tokens/s, "
                f"loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}, {'ok' if r['ok'] else 'FAILED'}",
                flush=True,
            )
    return rows


def markdown(rows: list[dict], header: dict) -> str:
    lines = [
        "# GPU check (`bench/gpu_check.sh`)",
        "",
        *(f"- {k}: {v}" for k, v in header.items()),
        "",
        "| method | batch | micro x acc x world | steps | init s | tokens/s | MFU (6N) | peak MiB | loss first -> last | check |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        mfu = f"{100 * r['mfu']:.2f} %" if r["mfu"] is not None else "n/a"
        lines.append(
            f"| {r['method']} | {r['batch']} | {r['split']} | {r['steps']} | {r['init_s']:.1f} | "
            f"{r['tokens_per_s']:,.0f} | {mfu} | {r['peak_mb']:,.0f} | "
            f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f} | {'ok' if r['ok'] else 'FAILED'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "model", nargs="?", default=None, help="model folder (default: smollm2-135m cache, else built-in)"
    )
    p.add_argument("--batch-sizes", type=int, nargs=2, default=[8, 32])
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    p.add_argument("--lr", type=float, default=None, help="default 5e-3 on the built-in model, else 5e-4")
    p.add_argument("--max-micro-batch", type=int, default=32)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--peak-tflops", type=float, default=None, help="override the table (MFU denominator)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA device visible to torch {torch.__version__} (CUDA build: {torch.version.cuda}); "
            "this check needs an NVIDIA GPU and a CUDA build of torch",
            file=sys.stderr,
        )
        return 2
    from lorasweep import results
    from lorasweep.train import device

    quiet()
    model = args.model or default_model()
    lr = args.lr if args.lr is not None else (5e-3 if model.startswith("builtin:") else 5e-4)
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or peak_tflops(name)
    t0 = time.perf_counter()
    rows = run(model, args.batch_sizes, args.steps, lr, args.max_micro_batch, peak, tuple(args.methods))
    prov = results.provenance()
    header = {
        "gpu": f"{name} (peak dense bf16 {peak} TFLOP/s)"
        if peak
        else f"{name} (peak FLOP/s unknown: MFU n/a)",
        "model": f"{model} ({rows[0]['base_params'] / 1e6:.1f}M parameters), rank 8, all linear layers, lr {lr:g}",
        "precision": f"autocast {device.mixed_precision()}, TF32 {device.tf32_enabled()}",
        "versions": ", ".join(
            f"{k} {v}" for k, v in prov["versions"].items() if k in ("torch", "transformers", "peft")
        ),
        "cuda": torch.version.cuda,
        "wall time": f"{time.perf_counter() - t0:.0f} s",
    }
    text = markdown(rows, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"written to {args.out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
