"""One process of the data-parallel tests; ``test_ddp.py`` launches two with ``torchrun`` (gloo on CPU).

Not collected by pytest (no ``test_`` prefix).  Modes:

``step OUT``
    One accumulated step, then five ``loop.train`` optimizer steps, on variable-length prompt-masked
    examples split micro 2 x accumulation 2 x world; rank 0 alone writes ``OUT/rank0.pt``.
``train OUT AUDIT ARGS...``
    ``lorasweep train ARGS`` under an audit hook that records every path below OUT this process opens
    for writing, creates, renames or removes; each rank writes what it touched to
    ``AUDIT/rank<r>.json`` (outside OUT).

``one_step`` and ``five_steps`` also run in the test process with world 1: the reference.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from lorasweep.train import batching, loop
from tests.train.test_accumulation import grads, lora_model, variable_examples

PAD = 0
LR = 1e-2
STEPS = 5


def one_step(accelerator, split: batching.BatchSplit) -> dict:
    """Gradients after one accumulated step on examples 0..B-1 (this rank's share of them)."""
    model = accelerator.prepare_model(lora_model())
    examples = variable_examples(split.effective)
    mine = batching.rank_micro_batches(list(range(split.effective)), split, accelerator.process_index)
    micro = [[examples[i] for i in mb] for mb in mine]
    loss, tokens = loop.accumulate_step(model, micro, PAD, accelerator)
    return {"loss": loss, "tokens": tokens, "grads": grads(accelerator.unwrap_model(model))}


def five_steps(accelerator, split: batching.BatchSplit) -> dict:
    """The loss curve of ``loop.train`` over five optimizer steps, and the adapter weights after it."""
    model = accelerator.prepare_model(lora_model())
    examples = variable_examples(STEPS * split.effective, seed=1)
    spec = loop.TrainSpec(split, lr=LR, seed=0, scheduler="constant", warmup_ratio=0.0)
    steps: list[dict] = []
    result = loop.train(model, examples, spec, PAD, accelerator, steps.append)
    weights = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
    return {
        "losses": result.losses,
        "label_tokens": result.label_tokens,
        "step_tokens": [s["tokens"] for s in steps],
        "weights": weights,
    }


def _spread(accelerator, t: torch.Tensor) -> float:
    """Largest difference of ``t`` between ranks (0 when every rank holds the same tensor)."""
    everyone = accelerator.gather(t.unsqueeze(0))
    return (everyone - everyone[0]).abs().max().item()


def run_step(out: Path) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    split = batching.derive_split(8, 2, accelerator.num_processes)
    step = one_step(accelerator, split)
    curve = five_steps(accelerator, split)
    spreads = {
        "grads": _spread(accelerator, step["grads"]),
        "weights": _spread(accelerator, curve["weights"]),
    }
    if accelerator.is_main_process:
        record = {
            "world": accelerator.num_processes,
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            "split": split.describe(),
            "rank_spread": spreads,
            **step,
            **curve,
        }
        torch.save(record, out / f"rank{accelerator.process_index}.pt")


def _audit(root: str) -> list[list[str]]:
    """Start recording filesystem writes below ``root`` by this process (PEP 578 audit events)."""
    touched: list[list[str]] = []
    changes = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & write_flags)
        elif event in changes:
            path, writing = args[0], True
        else:
            return
        p = os.fspath(path) if isinstance(path, str | os.PathLike) else None
        if writing and isinstance(p, str) and (p == root or p.startswith(root + os.sep)):
            touched.append([event, p])

    sys.addaudithook(hook)
    return touched


def run_train(out: Path, audit: Path, args: list[str]) -> int:
    from lorasweep.cli import main

    touched = _audit(str(out))
    rc = main(["train", *args])
    rank = int(os.environ.get("RANK", "0"))
    audit.mkdir(parents=True, exist_ok=True)
    (audit / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "rc": rc, "touched": touched}))
    return rc


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, out = sys.argv[1], Path(sys.argv[2])
    from lorasweep.train.device import end_distributed

    if mode == "step":
        run_step(out)
        end_distributed()
    elif mode == "train":
        rc = run_train(out, Path(sys.argv[3]), sys.argv[4:])  # the CLI ends the process group itself
        sys.exit(rc)
    else:
        sys.exit(f"unknown mode {mode!r}; valid: step, train")
