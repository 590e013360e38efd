"""Fingerprints of a few demo cells trained alone: per trial, a hash of the final adapter tensors, of
the per-step losses and gradient norms, and of the test metrics.  Run it before and after a change to
the trial path; equal hashes mean bit-identical trials (fp32, CPU, one thread).

    python bench/trial_hashes.py --out bench/results/trial_hashes.json [--compare OLD.json]

Cells: every adapter method (LoRA, PiSSA, MiLoRA, OLoRA, DoRA, LoRA+) of the demo config at B=2 (no
accumulation) and B=32 (micro 16 x 2), one LR, seed 0, 256 training rows, packing off.  ``--packed``:
LoRA, PiSSA and MiLoRA at B=2 and 4 with two LRs and two seeds, packed (``sweep.pack=auto``).  Where two
fingerprints differ, the largest relative difference of any tensor, loss or norm is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OVERRIDES = [
    "adapter.methods=[lora,pissa,milora,olora,dora,loraplus]",
    "train.batch_sizes=[2,32]",
    "train.lr_search=grid",
    "train.learning_rates=[1e-3]",
    "train.seeds=[0]",
    "data.num_train=256",
    "eval.num_examples=32",
    "eval.selection.num_examples=16",
    "report.reference_batch_size=null",
    "report.reference_lr=null",
    "report.curvature_examples=0",
    "sweep.pack=off",
    "sweep.backend=inprocess",
]
PACKED = [
    *OVERRIDES[:-2],
    "adapter.methods=[lora,pissa,milora]",
    "train.batch_sizes=[2,4]",
    "train.learning_rates=[1e-3,3e-3]",
    "train.seeds=[0,1]",
    "sweep.pack=auto",
    "sweep.backend=inprocess",
]


def _tensors(trial: Path) -> dict[str, list[float]]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(trial.glob("adapter*/*.safetensors")):
        for name, t in sorted(load_file(f).items()):
            out[f"{f.parent.name}/{name}"] = t.double().flatten().tolist()
    return out


def fingerprint(trial: Path) -> dict:
    steps = [json.loads(line) for line in (trial / "steps.jsonl").read_text().splitlines()]
    curve = {k: [s[k] for s in steps] for k in ("loss", "grad_norm")}
    metrics = json.loads((trial / "metrics.json").read_text())
    scores = {k: v for k, v in metrics.items() if k != "train"}
    tensors = _tensors(trial)

    def digest(obj) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]

    return {
        "adapter": digest(tensors),
        "curve": digest(curve),
        "metrics": digest(scores),
        "_values": {"curve": curve, "tensors": tensors},
    }


def _max_rel(a, b) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        worst = max(worst, abs(x - y) / max(abs(y), 1e-30)) if x != y else worst
    return worst


def compare(new: dict, old: dict) -> int:
    """Print the cells whose fingerprints differ; returns how many."""
    differing = 0
    for tid, f in sorted(new.items()):
        o = old.get(tid)
        if o is None:
            print(f"{tid}: not in the old file")
            continue
        same = [k for k in ("adapter", "curve", "metrics") if f[k] == o[k]]
        if len(same) == 3:
            print(f"{tid}: bit-identical")
            continue
        differing += 1
        nv, ov = f["_values"], o["_values"]
        curve = max(_max_rel(nv["curve"][k], ov["curve"][k]) for k in nv["curve"])
        tensor = max(_max_rel(nv["tensors"][k], ov["tensors"][k]) for k in nv["tensors"])
        print(
            f"{tid}: differs (same: {same}); largest relative difference: curve {curve:.2e}, adapter {tensor:.2e}"
        )
    return differing


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--compare", default=None, help="an earlier output of this script")
    p.add_argument("--packed", action="store_true", help="packed groups instead of trials alone")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "lorasweep.cli",
            "run",
            str(ROOT / "configs/demo.yaml"),
            *(PACKED if args.packed else OVERRIDES),
        ]
        subprocess.run([*cmd, f"output_dir={run}"], check=True, cwd=ROOT)
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        )
        cells = {d.name: fingerprint(d) for d in sorted((run / "trials").iterdir()) if d.is_dir()}
    Path(args.out).write_text(json.dumps({"git": sha.stdout.strip(), "cells": cells}))
    print(f"{len(cells)} cells -> {args.out}")
    if args.compare:
        return 1 if compare(cells, json.loads(Path(args.compare).read_text())["cells"]) else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
