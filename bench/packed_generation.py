"""Packed generation ÷ member-by-member generation, measured side by side (``make bench-tiny``).

Covered: K in {2, 4, 8} LoRA adapters stacked on one base (``adapters/stacked.py``), each with its own
non-zero B (so the members' completions differ), greedily completing the same evaluation prompts:

- member by member, as a trial alone evaluates: each adapter merged into the base in turn
  (``stacked.merge``), ``evals/generate.generate`` at ``--batch`` prompts per batch;
- packed, as a packed group evaluates (``evals/packed_generation.py``): every batch of prompts decoded
  once for all K members, each row through its own unmerged adapter.

Both sides run back to back in each repetition (one torch thread); the table gives the median ratio
and its spread over ``--reps``, and whether every member's tokens were identical on both sides.
``--device cuda`` runs the same on a GPU under bf16 autocast (the GPU check).

Writes ``bench/results/packed_generation{,-NAME}.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from lorasweep import adapters, models, results
from lorasweep.adapters import stacked
from lorasweep.config import ALL_LINEAR, load_config
from lorasweep.data import templates
from lorasweep.evals.generate import generate, generate_copies
from lorasweep.evals.registry import get
from lorasweep.evals.suite import eval_rows

OUT = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def prompts(tokenizer, n: int) -> list[str]:
    """The demo's GSM8K-style test prompts, rendered as the evaluation renders them."""
    cfg = load_config(ROOT / "configs/demo.yaml", [f"eval.num_examples={n}"])
    task = get("gsm8k")
    return [
        templates.render(cfg.data.template, task.prompt(r), "", tokenizer)[0] for r in eval_rows(cfg, "gsm8k")
    ]


def stacked_model(source: str, k: int, dev: str):
    base, tok = models.load_base(source, "float32", torch.device(dev), None)
    spec = adapters.AdapterSpec(rank=8, alpha=16.0, dropout=0.0, target_modules=tuple(ALL_LINEAR), seed=0)
    init = stacked.initialise(base, {("lora", 0): spec})
    stack = init.install(base, [("lora", 0)] * k, 0.0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained-looking B per member: the members decode different tokens
        stack.flat.add_(torch.randn(stack.flat.shape, generator=g).to(stack.flat.device) * 0.02)
    base.eval()
    return base, stack, tok


def one_by_one(model, stack, tok, texts, new_tokens: int, batch: int) -> list[list[str]]:
    stacked.uninstall(model, stack)
    out = []
    try:
        for k in range(stack.size):
            saved = stacked.merge(stack, k)
            out.append(generate(model, tok, texts, new_tokens, batch))
            stacked.unmerge(stack, saved)
    finally:
        stacked.reinstall(model, stack)
    return out


def packed(model, stack, tok, texts, new_tokens: int, batch: int) -> list[list[str]]:
    stack.route = list(range(stack.size))
    try:
        return generate_copies(model, tok, texts, new_tokens, batch, stack.size)
    finally:
        stack.route = None


def timed(fn, autocast: bool, *args):
    t = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:tinyworld")
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16, help="prompts per batch (eval.batch_size)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default="packed_generation")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    autocast = args.device == "cuda"
    rows = []
    for k in args.ks:
        model, stack, tok = stacked_model(args.model, k, args.device)
        texts = prompts(tok, args.prompts)
        ratios, same = [], True
        for _ in range(args.reps):
            t_alone, a = timed(one_by_one, autocast, model, stack, tok, texts, args.new_tokens, args.batch)
            t_packed, p = timed(packed, autocast, model, stack, tok, texts, args.new_tokens, args.batch)
            ratios.append(t_alone / t_packed)
            same = same and a == p
        distinct = len({tuple(x) for x in a})
        rows.append(
            {
                "k": k,
                "ratio": ratios,
                "identical_tokens": same,
                "distinct_members": distinct,
                "last_s": {"member_by_member": t_alone, "packed": t_packed},
            }
        )
        print(
            f"K={k}: packed ÷ member-by-member {statistics.median(ratios):.2f}x "
            f"[{min(ratios):.2f}, {max(ratios):.2f}], identical tokens: {same}",
            file=sys.stderr,
        )
    record = {
        "model": args.model,
        "device": args.device,
        "prompts": args.prompts,
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "reps": args.reps,
        "rows": rows,
        "provenance": results.provenance(),
        "platform": platform.platform(),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps(record, indent=2))
    prov = record["provenance"]
    lines = [
        "# Packed ÷ member-by-member generation (`bench/packed_generation.py`)",
        "",
        f"- {args.model} on {args.device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} thread(s)); {args.prompts} prompts, {args.batch} per batch, "
        f"{args.new_tokens} new tokens, greedy; {args.reps} repetition(s), median [min, max]",
        f"- git {prov.get('git_sha', '?')[:12]}{' (dirty)' if prov.get('git_dirty') else ''}",
        "",
        "| K | packed ÷ member-by-member (merged) | every member's tokens identical | members decoding differently |",
        "|---:|---:|:---:|---:|",
    ]
    for r in rows:
        x = r["ratio"]
        lines.append(
            f"| {r['k']} | **{statistics.median(x):.2f}x** [{min(x):.2f}, {max(x):.2f}] | "
            f"{'yes' if r['identical_tokens'] else 'no'} | {r['distinct_members']} of {r['k']} |"
        )
    (OUT / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
