"""CPU throughput on the built-in model (``make bench``): the numbers a sweep's duration follows from.

Covered: training tokens/s (input and label tokens) of LoRA, PiSSA and MiLoRA at two effective batch
sizes through the real training loop (``train/loop.py``), adapter initialisation time (PiSSA/MiLoRA
SVD), greedy generation tokens/s at batch 1 and 16 (the evaluation path, ``evals/generate.py``, on the
merged adapter), and peak RSS.  One torch thread, as sweep workers run (docs/method.md, "CPU defaults").

Not covered: GPUs (``bench/gpu_check.sh``), several processes, models other than ``--model``.

Writes ``bench/results/throughput.md`` and prints it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from lorasweep import adapters, models, results
from lorasweep.config import ALL_LINEAR
from lorasweep.data import sources, templates
from lorasweep.data.tokenize import encode
from lorasweep.evals.generate import generate
from lorasweep.train import batching, device, loop

OUT = Path(__file__).resolve().parent / "results" / "throughput.md"
METHODS = ("lora", "pissa", "milora")


def quiet() -> None:
    """No library progress bars or deprecation chatter between the table's lines."""
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def encoded_examples(tok, n: int, max_len: int = 96) -> list:
    """The first ``n`` built-in training problems, prompt-masked as a trial encodes them."""
    pairs = sources.load_training_pairs("builtin:tinyworld", "auto", n)
    return [encode(tok, *templates.render("plain", q, a, tok), max_len) for q, a in pairs]


def measure_training(
    source: str, method: str, batch: int, examples: list, accelerator, lr: float, max_micro: int = 64
) -> dict:
    """Train ``method`` for one pass over ``examples`` at effective ``batch``; tokens/s and the losses."""
    torch.manual_seed(0)
    model, tok = models.load_base(source, "float32", accelerator.device)
    n_params = sum(p.numel() for p in model.parameters())
    spec = adapters.AdapterSpec(rank=8, alpha=16.0, dropout=0.0, target_modules=tuple(ALL_LINEAR), seed=0)
    t = time.perf_counter()
    model = accelerator.prepare_model(adapters.attach(method, model, spec))
    init_s = time.perf_counter() - t
    split = batching.derive_split(batch, max_micro, accelerator.num_processes)
    train_spec = loop.TrainSpec(split, lr=lr, seed=0, scheduler="constant", warmup_ratio=0.0)
    steps: list[dict] = []
    result = loop.train(model, examples, train_spec, tok.pad_token_id, accelerator, steps.append)
    tokens_per_s, label_tokens_per_s = steady_tokens_per_s(examples, split, steps)
    return {
        "method": method,
        "batch": batch,
        "split": f"{split.micro}x{split.accumulation}x{split.world}",
        "steps": result.steps_done,
        "status": result.status,
        "init_s": init_s,
        "train_s": result.seconds,
        "tokens_per_s": tokens_per_s,
        "label_tokens_per_s": label_tokens_per_s,
        "losses": result.losses,
        "base_params": n_params,
        "model": accelerator.unwrap_model(model),
        "tokenizer": tok,
    }


def steady_tokens_per_s(
    examples: list, split: batching.BatchSplit, steps: list[dict], skip: int = 2
) -> tuple[float, float]:
    """(input tokens, label tokens) per second over the steps after the first ``skip`` (allocator and
    kernel warm-up), or over all steps when there are too few to skip any.  Padding is not counted."""
    order = batching.example_order(len(examples), seed=0)
    skip = skip if len(steps) > 2 * skip else 0
    seconds = sum(s["seconds"] for s in steps[skip:])
    inputs = sum(
        len(examples[i].input_ids)
        for k in range(skip, len(steps))
        for i in batching.step_indices(order, k, split)
    )
    return inputs / seconds, sum(s["tokens"] for s in steps[skip:]) / seconds


def measure_generation(model, tok, prompts: list[str], batch: int, max_new_tokens: int) -> dict:
    """Greedy generation through the evaluation path; tokens = completion tokens up to EOS."""
    t = time.perf_counter()
    completions = generate(model, tok, prompts, max_new_tokens, batch)
    seconds = time.perf_counter() - t
    n = sum(len(tok(c, add_special_tokens=False)["input_ids"]) + 1 for c in completions)
    return {
        "batch": batch,
        "prompts": len(prompts),
        "tokens": n,
        "seconds": seconds,
        "tokens_per_s": n / seconds,
    }


def markdown(train_rows: list[dict], gen_rows: list[dict], header: dict) -> str:
    lines = [
        "# CPU throughput (`make bench`)",
        "",
        *(f"- {k}: {v}" for k, v in header.items()),
        "",
        "| method | batch | micro x acc x world | steps | init s | train s | tokens/s | label tokens/s | first -> last loss |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in train_rows:
        lines.append(
            f"| {r['method']} | {r['batch']} | {r['split']} | {r['steps']} | {r['init_s']:.2f} | "
            f"{r['train_s']:.1f} | {r['tokens_per_s']:,.0f} | {r['label_tokens_per_s']:,.0f} | "
            f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f} |"
        )
    lines += [
        "",
        "| generation (lora, merged) | prompts | tokens | seconds | tokens/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for g in gen_rows:
        lines.append(
            f"| batch {g['batch']} | {g['prompts']} | {g['tokens']} | {g['seconds']:.1f} | {g['tokens_per_s']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:tinyworld", help="model source (as model.source)")
    p.add_argument("--examples", type=int, default=512, help="training examples per run")
    p.add_argument("--batch-sizes", type=int, nargs=2, default=[8, 32])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    from accelerate import Accelerator

    quiet()
    torch.set_num_threads(args.threads)
    accelerator = Accelerator(cpu=True)
    t0 = time.perf_counter()
    tok = models.load_tokenizer(args.model)
    examples = encoded_examples(tok, args.examples)
    train_rows = [
        measure_training(args.model, m, b, examples, accelerator, lr=5e-3)
        for m in METHODS
        for b in args.batch_sizes
    ]
    merged = train_rows[0]["model"].merge_and_unload().eval()
    prompts = [
        templates.render("plain", q, "", tok)[0]
        for q, _ in sources.load_training_pairs("builtin:tinyworld", "auto", 64)
    ]
    gen_rows = [
        measure_generation(merged, tok, prompts[:16], 1, 24),
        measure_generation(merged, tok, prompts, 16, 24),
    ]
    prov = results.provenance()
    memory = device.peak_memory()
    header = {
        "model": f"{args.model} ({train_rows[0]['base_params'] / 1e6:.2f}M parameters), rank 8, all linear layers",
        "examples per run": f"{len(examples)} ({sum(len(e.input_ids) for e in examples)} tokens)",
        "torch threads": args.threads,
        "cpu": f"{prov['hardware']['processor']}, {prov['hardware']['cpu_count']} cores, {platform.platform()}",
        "versions": ", ".join(
            f"{k} {v}" for k, v in prov["versions"].items() if k in ("torch", "transformers", "peft")
        ),
        "git": f"{prov['git_sha'][:12] if prov['git_sha'] else None}{' (dirty)' if prov['git_dirty'] else ''}",
        "peak RSS": f"{memory['mb']:.0f} MiB",
        "total wall time": f"{time.perf_counter() - t0:.0f} s",
    }
    text = markdown(train_rows, gen_rows, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
