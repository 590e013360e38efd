"""Packed training ÷ the same trials trained one by one, measured side by side (``make bench``).

Covered: for K in {2, 4, 8} LoRA trials of one batch size (K learning rates, one seed: the trials of one
cell of a search round) at B in {4, 64}, the training time of K separate trials (``loop.train``, one
PEFT model each) against one packed pass (``train/packed.py``), over the same examples; and, for one
trial alone, in-trial training throughput ÷ a plain forward+backward loop over the same micro-batches
(no optimizer, clipping or logging: the cost of a step's own work).  Every figure is a ratio of two
timings taken back to back in the same repetition, so a machine shared with other work slows both
sides; ``--reps`` repetitions give the median and the spread (min, max).  One torch thread.

``--device cuda`` runs the same comparison on a GPU with the trial's bf16 autocast (``bench/gpu_check.sh``
runs it; not run on a GPU so far).

Not covered: setup and evaluation (one model load per group instead of K is a further gain), models
other than ``--model``.

Writes ``bench/results/packing.json`` (every timing) and ``bench/results/packing.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from lorasweep import adapters, models, results
from lorasweep.adapters import stacked
from lorasweep.config import ALL_LINEAR
from lorasweep.data import sources, templates
from lorasweep.data.tokenize import collate, encode
from lorasweep.train import batching, device, loop, packed

OUT = Path(__file__).resolve().parent / "results"
MAX_MICRO = 64  # train.max_micro_batch of the trials (--max-micro)
LRS = tuple(1e-5 * 10 ** (i / 4) for i in range(32))  # quarter-decade steps, as a search; K <= 32


def spec(seed: int = 0) -> adapters.AdapterSpec:
    return adapters.AdapterSpec(rank=8, alpha=16.0, dropout=0.0, target_modules=tuple(ALL_LINEAR), seed=seed)


def train_spec(batch: int, lr: float) -> loop.TrainSpec:
    return loop.TrainSpec(
        batching.derive_split(batch, MAX_MICRO), lr=lr, seed=0, scheduler="cosine", warmup_ratio=0.03
    )


class Clock:
    """Wall and CPU seconds of the timed blocks (CPU time: this process's own work, which other jobs
    on a shared machine disturb much less than wall time)."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._w, self._c = time.perf_counter(), time.process_time()

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def separate(base, examples, batch: int, k: int, pad_id: int, accelerator) -> Clock:
    """Training time of ``k`` trials alone (their setup excluded)."""
    clock = Clock()
    for lr in LRS[:k]:
        torch.manual_seed(0)
        model = accelerator.prepare_model(adapters.attach("lora", copy.deepcopy(base), spec()))
        with clock:
            loop.train(model, examples, train_spec(batch, lr), pad_id, accelerator)
        del model
        accelerator.free_memory()  # the accelerator keeps every prepared model: 8 copies of a 135M one
    return clock


def together(base, examples, batch: int, k: int, pad_id: int, accelerator) -> Clock:
    """Training time of the same ``k`` trials packed (setup excluded)."""
    model = copy.deepcopy(base)
    init = stacked.initialise(model, {("lora", 0): spec()})
    stack = init.install(model, [("lora", 0)] * k, 0.0)
    model = accelerator.prepare_model(model)  # the trial's autocast (bf16 on a GPU)
    specs = [train_spec(batch, lr) for lr in LRS[:k]]
    noop = [lambda record: None] * k
    clock = Clock()
    with clock:
        packed.train_packed(model, stack, examples, specs, pad_id, accelerator.device, noop)
    accelerator.free_memory()
    return clock


def plain_forward_backward(base, examples, batch: int, pad_id: int, accelerator) -> Clock:
    """Forward+backward alone over the micro-batches a trial at ``batch`` runs."""
    torch.manual_seed(0)
    model = accelerator.prepare_model(adapters.attach("lora", copy.deepcopy(base), spec()))
    model.train()
    split = batching.derive_split(batch, MAX_MICRO)
    order = batching.example_order(len(examples), 0)
    batches = [
        {n: v.to(accelerator.device) for n, v in collate([examples[i] for i in mb], pad_id).items()}
        for k in range(batching.steps_per_epoch(len(examples), batch))
        for mb in batching.rank_micro_batches(batching.step_indices(order, k, split), split, 0)
    ]
    clock = Clock()
    with clock:
        for b in batches:
            loop.token_loss_sum(model, b).backward()
    accelerator.free_memory()
    return clock


def in_trial(base, examples, batch: int, pad_id: int, accelerator) -> Clock:
    torch.manual_seed(0)
    model = accelerator.prepare_model(adapters.attach("lora", copy.deepcopy(base), spec()))
    clock = Clock()
    with clock:
        loop.train(model, examples, train_spec(batch, 1e-3), pad_id, accelerator)
    accelerator.free_memory()
    return clock


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:tinyworld")
    p.add_argument("--data", default="builtin:tinyworld-lite", help="training rows (the demo's task)")
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--batches", type=int, nargs="+", default=[4, 64])
    p.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument(
        "--steps", type=int, nargs="+", default=[32, 8], help="optimizer steps per trial, per batch size"
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: bf16 autocast, as a trial")
    p.add_argument("--max-micro", type=int, default=64, help="train.max_micro_batch of the trials")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--name", default="packing", help="file stem of the results (e.g. packing-smollm2)")
    args = p.parse_args(argv)
    from accelerate import Accelerator

    models.quiet_libraries()
    torch.set_num_threads(1)
    global MAX_MICRO
    MAX_MICRO = args.max_micro
    cuda = args.device == "cuda"
    accelerator = Accelerator(cpu=not cuda, mixed_precision=device.mixed_precision() if cuda else "no")
    device.enable_tf32()
    base, tok = models.load_base(args.model, "float32", accelerator.device)
    steps = dict(zip(args.batches, args.steps, strict=True))
    pairs = sources.load_training_pairs(args.data, "auto", max(steps[b] * b for b in args.batches))
    all_examples = [encode(tok, *templates.render("plain", q, a, tok), args.max_len) for q, a in pairs]
    t0 = time.perf_counter()
    raw: dict = {"packed": {}, "in_trial": {}}
    for rep in range(args.reps):
        for b in args.batches:
            examples = all_examples[: steps[b] * b]
            plain = plain_forward_backward(base, examples, b, tok.pad_token_id, accelerator)
            trial = in_trial(base, examples, b, tok.pad_token_id, accelerator)
            raw["in_trial"].setdefault(str(b), []).append(
                {"plain": plain.wall, "trial": trial.wall, "plain_cpu": plain.cpu, "trial_cpu": trial.cpu}
            )
            for k in args.ks:
                sep = separate(base, examples, b, k, tok.pad_token_id, accelerator)
                pk = together(base, examples, b, k, tok.pad_token_id, accelerator)
                raw["packed"].setdefault(f"{b}x{k}", []).append(
                    {"separate": sep.wall, "packed": pk.wall, "separate_cpu": sep.cpu, "packed_cpu": pk.cpu}
                )
                print(
                    f"rep {rep + 1} B={b} K={k}: wall {sep.wall:.2f} / {pk.wall:.2f} s = {sep.wall / pk.wall:.2f}x,"
                    f" cpu {sep.cpu:.2f} / {pk.cpu:.2f} s = {sep.cpu / pk.cpu:.2f}x",
                    flush=True,
                )
        text = write_report(args, raw, steps, all_examples, accelerator, t0)
    print(text)
    return 0


def write_report(args, raw, steps, all_examples, accelerator, t0) -> str:
    """Write the JSON and the Markdown table of the repetitions so far (after each one: a run cut short
    by a time limit still leaves its finished repetitions)."""
    prov = results.provenance()
    tokens = {str(b): sum(len(e.input_ids) for e in all_examples[: steps[b] * b]) for b in args.batches}
    table = {
        key: {
            "separate_s": summary([r["separate"] for r in runs]),
            "packed_s": summary([r["packed"] for r in runs]),
            "speedup": summary([r["separate"] / r["packed"] for r in runs]),
            "speedup_cpu": summary([r["separate_cpu"] / r["packed_cpu"] for r in runs]),
        }
        for key, runs in raw["packed"].items()
    }
    gap = {
        b: {
            "wall": summary([r["plain"] / r["trial"] for r in runs]),
            "cpu": summary([r["plain_cpu"] / r["trial_cpu"] for r in runs]),
        }
        for b, runs in raw["in_trial"].items()
    }
    report = {
        "model": args.model,
        "data": args.data,
        "steps": {str(b): n for b, n in steps.items()},
        "tokens_per_trial": tokens,
        "reps": len(next(iter(raw["in_trial"].values()))),
        "threads": 1,
        "device": str(accelerator.device),
        "device_name": torch.cuda.get_device_name(0) if accelerator.device.type == "cuda" else None,
        "mixed_precision": accelerator.mixed_precision,
        "wall_s": time.perf_counter() - t0,
        "packed_vs_separate": table,
        "in_trial_vs_plain_forward_backward": gap,
        "raw": raw,
        "provenance": prov,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report, prov)
    (args.out / f"{args.name}.md").write_text(text)
    return text


def markdown(r: dict, prov: dict) -> str:
    lines = [
        "# Packed training ÷ separate trials (`make bench`, `bench/packing.py`)",
        "",
        f"- model {r['model']}, LoRA r=8 on all linear layers, fp32 weights on {r['device']}"
        f" (mixed precision: {r['mixed_precision']}), 1 torch thread; data {r['data']}",
        "- per trial: "
        + ", ".join(
            f"B={b}: {r['steps'][b]} optimizer steps, {n:,} input tokens"
            for b, n in r["tokens_per_trial"].items()
        ),
        f"- {r['reps']} repetitions; median [min, max] of per-repetition ratios; total {r['wall_s']:.0f} s",
        f"- cpu: {prov['hardware']['processor']}, {prov['hardware']['cpu_count']} cores ({platform.platform()}),"
        + (
            f" GPU {r['device_name']}, torch {torch.__version__} (CUDA {torch.version.cuda})"
            if r.get("device_name")
            else " shared with other jobs while measured: absolute seconds are noisy, ratios less so"
        ),
        f"- git {str(prov['git_sha'])[:12]}{' (dirty)' if prov['git_dirty'] else ''}",
        "",
        "| B | K | K separate trials, wall s | one packed pass, wall s | speed-up (wall) | speed-up (CPU time) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in r["packed_vs_separate"].items():
        b, k = key.split("x")
        s, c = row["speedup"], row["speedup_cpu"]
        lines.append(
            f"| {b} | {k} | {row['separate_s']['median']:.2f} | {row['packed_s']['median']:.2f} | "
            f"**{s['median']:.2f}x** [{s['min']:.2f}, {s['max']:.2f}] | "
            f"{c['median']:.2f}x [{c['min']:.2f}, {c['max']:.2f}] |"
        )
    lines += [
        "",
        "| B | in-trial training ÷ plain forward+backward, throughput (wall) | (CPU time) |",
        "|---:|---:|---:|",
    ]
    for b, g in r["in_trial_vs_plain_forward_backward"].items():
        w, c = g["wall"], g["cpu"]
        lines.append(
            f"| {b} | {w['median']:.0%} [{w['min']:.0%}, {w['max']:.0%}] | "
            f"{c['median']:.0%} [{c['min']:.0%}, {c['max']:.0%}] |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
