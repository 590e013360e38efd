"""lorasweep's trainer ÷ ``transformers.Trainer`` + PEFT on the same run, measured side by side (``make bench``).

Covered: one LoRA trial of 20 optimizer steps trained twice from the same adapter initialisation: by
``train/loop.py`` and by the stock ``transformers.Trainer``, fed the same examples in the same order (the
trial's ``batching.example_order``, given to the Trainer as a dataset already in that order with the
``sequential`` sampler), the same micro-batch and accumulation, the same collate (so the same padding),
AdamW with the same hyperparameters and lorasweep's LR schedule (docs/method.md, Learning-rate schedule:
the Trainer gets a ``LambdaLR`` of ``schedule.lr_factor``, since its own warmup starts at LR 0), gradient
clipping at 1.0, fp32, one torch thread.  The Trainer normalises the loss per label token over the whole
accumulated step, as lorasweep does, because the PEFT-wrapped causal LM accepts ``num_items_in_batch``.
Measured: the largest difference between the two 20-step loss curves (and between the trained adapter
weights), and training throughput (input tokens ÷ wall seconds of the whole ``train`` call) as a ratio
lorasweep ÷ HF, the two sides alternating within each of ``--reps`` repetitions (median, spread).  Also
the padding waste of the micro-batches lorasweep builds (padded ÷ all token slots of the collated
batches; the Trainer, fed the same batches, pads identically).

Not covered: evaluation, checkpointing, other adapter methods; models other than ``--model``.

Writes ``bench/results/hf_trainer.json`` (every timing and both curves) and ``bench/results/hf_trainer.md``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from lorasweep import adapters, models, results
from lorasweep.config import ALL_LINEAR
from lorasweep.data import sources, templates
from lorasweep.data.tokenize import collate, encode
from lorasweep.train import batching, loop, schedule

OUT = Path(__file__).resolve().parent / "results"
LR, SEED, WARMUP_RATIO, MAX_GRAD_NORM = 1e-3, 0, 0.1, 1.0  # 20 steps -> 2 warmup steps


def spec() -> adapters.AdapterSpec:
    return adapters.AdapterSpec(rank=8, alpha=16.0, dropout=0.0, target_modules=tuple(ALL_LINEAR), seed=SEED)


def fresh_lora(base):
    """The same LoRA initialisation on every call."""
    torch.manual_seed(SEED)
    return adapters.attach("lora", copy.deepcopy(base), spec())


def adapter_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def run_lorasweep(
    base, examples, split: batching.BatchSplit, pad_id: int, padding_free: bool = False
) -> dict:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True, mixed_precision="no")
    model = accelerator.prepare_model(fresh_lora(base))
    train_spec = loop.TrainSpec(
        split,
        lr=LR,
        seed=SEED,
        scheduler="cosine",
        warmup_ratio=WARMUP_RATIO,
        max_grad_norm=MAX_GRAD_NORM,
        padding_free=padding_free,
    )
    marks: list[float] = []  # wall clock at the end of every step
    t0, c0 = time.perf_counter(), time.process_time()
    result = loop.train(
        model, examples, train_spec, pad_id, accelerator, lambda r: marks.append(time.perf_counter())
    )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "losses": result.losses,
        "seconds": seconds,
        "cpu_s": cpu,
        "steady_s": marks[-1] - marks[0],
        "state": adapter_state(model),
    }


def run_hf(base, examples, split: batching.BatchSplit, pad_id: int) -> dict:
    """The same trial through the stock ``transformers.Trainer`` (only the optimizer and schedule passed in)."""
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    model = fresh_lora(base)
    steps = batching.steps_per_epoch(len(examples), split.effective)
    order = batching.example_order(len(examples), SEED)
    ordered = [examples[i] for i in order[: steps * split.effective]]
    warmup = schedule.warmup_steps(steps, WARMUP_RATIO)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, foreach=True)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: schedule.lr_factor(s, steps, warmup, "cosine")
    )
    losses: list[float] = []
    marks: list[float] = []

    class Losses(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=split.micro,
            gradient_accumulation_steps=split.accumulation,
            max_steps=steps,
            learning_rate=LR,
            max_grad_norm=MAX_GRAD_NORM,
            train_sampling_strategy="sequential",
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            dataloader_num_workers=0,
            remove_unused_columns=False,
            disable_tqdm=True,
            seed=SEED,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=ordered,
            data_collator=lambda batch: collate(batch, pad_id),
            optimizers=(optimizer, lr_sched),
            callbacks=[Losses()],
        )
        trainer.remove_callback(PrinterCallback)  # its per-step log lines; the losses are kept above
        if not trainer.model_accepts_loss_kwargs:
            raise RuntimeError("the Trainer would not normalise the loss per label token over the step")
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "losses": losses,
        "seconds": seconds,
        "cpu_s": cpu,
        "steady_s": marks[-1] - marks[0],
        "state": adapter_state(model),
    }


def compare(ls: dict, hf: dict) -> dict:
    """Largest differences between the two runs' loss curves and trained adapter weights."""
    if len(ls["losses"]) != len(hf["losses"]):
        raise AssertionError(f"{len(ls['losses'])} lorasweep steps vs {len(hf['losses'])} HF steps")
    loss_diff = max(abs(a - b) for a, b in zip(ls["losses"], hf["losses"], strict=True))
    names = sorted(ls["state"])
    if [n.replace("module.", "") for n in names] != sorted(n.replace("module.", "") for n in hf["state"]):
        raise AssertionError("the two runs trained different parameters")
    hf_by = {n.replace("module.", ""): t for n, t in hf["state"].items()}
    weight_diff = max(float((ls["state"][n] - hf_by[n.replace("module.", "")]).abs().max()) for n in names)
    return {"max_abs_loss_diff": loss_diff, "max_abs_weight_diff": weight_diff}


def padding_waste(examples, split: batching.BatchSplit, seed: int = SEED, grouped: bool = False) -> dict:
    """Padded ÷ all token slots of the micro-batches a trial at ``split`` builds over ``examples``
    (``grouped``: with ``train.group_by_length``)."""
    order = batching.example_order(len(examples), seed)
    lengths = [len(e.input_ids) for e in examples] if grouped else None
    real = slots = 0
    for k in range(batching.steps_per_epoch(len(examples), split.effective)):
        for mb in batching.rank_micro_batches(batching.step_indices(order, k, split), split, 0, lengths):
            batch = collate([examples[i] for i in mb], 0)
            real += int(batch["attention_mask"].sum())
            slots += batch["attention_mask"].numel()
    return {"padded_tokens": slots - real, "token_slots": slots, "waste": (slots - real) / slots}


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def load_examples(data: str, n: int, tok, max_len: int):
    pairs = sources.load_training_pairs(data, "auto", n)
    return [encode(tok, *templates.render("plain", q, a, tok), max_len) for q, a in pairs]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:tinyworld")
    p.add_argument("--data", nargs="+", default=["builtin:tinyworld-lite", "builtin:tinyworld"])
    p.add_argument("--max-len", type=int, default=64, help="the demo's data.max_seq_len")
    p.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    p.add_argument("--micro", type=int, default=4, help="micro-batch; accumulation = B / micro")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--padding-examples", type=int, default=2048, help="one epoch of the demo's data.num_train"
    )
    p.add_argument("--padding-batches", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    p.add_argument(
        "--padding-micro", type=int, nargs="+", default=[4, 16], help="max micro-batches (demo: 16)"
    )
    p.add_argument(
        "--padding-free",
        action="store_true",
        help="also time lorasweep with train.padding_free (one unpadded row per micro-batch) against HF",
    )
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--name", default="hf_trainer", help="file stem of the results (e.g. hf_trainer-smollm2)")
    args = p.parse_args(argv)
    models.quiet_libraries()
    torch.set_num_threads(1)
    base, tok = models.load_base(args.model, "float32", "cpu")
    t_start = time.perf_counter()
    cells: dict = {}
    for data in args.data:
        examples = load_examples(data, args.steps * max(args.batches), tok, args.max_len)
        for b in args.batches:
            split = batching.derive_split(b, args.micro)
            ex = examples[: args.steps * b]
            tokens = sum(len(e.input_ids) for e in ex)
            cell = {"data": data, "batch": b, "split": split.describe(), "input_tokens": tokens, "reps": []}
            for rep in range(args.reps):
                # alternate which side runs first, so drift on a shared machine does not favour one
                sides = [("lorasweep", run_lorasweep), ("hf", run_hf)]
                if args.padding_free:  # lorasweep with train.padding_free, a third side
                    sides.insert(1, ("flat", functools.partial(run_lorasweep, padding_free=True)))
                runs = dict(
                    (name, fn(base, ex, split, tok.pad_token_id)) for name, fn in sides[:: 1 - 2 * (rep % 2)]
                )
                diff = compare(runs["lorasweep"], runs["hf"])
                if args.padding_free:
                    flat = compare(runs["flat"], runs["hf"])
                    diff |= {
                        "flat_s": runs["flat"]["seconds"],
                        "flat_cpu_s": runs["flat"]["cpu_s"],
                        "flat_max_abs_loss_diff": flat["max_abs_loss_diff"],
                    }
                cell["reps"].append(
                    {
                        "lorasweep_s": runs["lorasweep"]["seconds"],
                        "hf_s": runs["hf"]["seconds"],
                        "lorasweep_cpu_s": runs["lorasweep"]["cpu_s"],
                        "hf_cpu_s": runs["hf"]["cpu_s"],
                        "lorasweep_steady_s": runs["lorasweep"]["steady_s"],
                        "hf_steady_s": runs["hf"]["steady_s"],
                        **diff,
                    }
                )
                cell["curves"] = {"lorasweep": runs["lorasweep"]["losses"], "hf": runs["hf"]["losses"]}
                print(
                    f"{data} B={b} rep {rep + 1}: lorasweep {tokens / runs['lorasweep']['seconds']:,.0f} tok/s,"
                    f" HF {tokens / runs['hf']['seconds']:,.0f} tok/s, max |loss diff| {diff['max_abs_loss_diff']:.2e}",
                    flush=True,
                )
            reps = cell["reps"]
            cell["lorasweep_tokens_per_s"] = summary([tokens / r["lorasweep_s"] for r in reps])
            cell["hf_tokens_per_s"] = summary([tokens / r["hf_s"] for r in reps])
            cell["speedup"] = summary([r["hf_s"] / r["lorasweep_s"] for r in reps])
            cell["speedup_cpu"] = summary([r["hf_cpu_s"] / r["lorasweep_cpu_s"] for r in reps])
            # steps 2..T only (end of step 1 to end of step T): without either side's setup
            cell["speedup_steady"] = summary([r["hf_steady_s"] / r["lorasweep_steady_s"] for r in reps])
            if args.padding_free:
                cell["flat_speedup"] = summary([r["hf_s"] / r["flat_s"] for r in reps])
                cell["flat_speedup_cpu"] = summary([r["hf_cpu_s"] / r["flat_cpu_s"] for r in reps])
                cell["flat_max_abs_loss_diff"] = max(r["flat_max_abs_loss_diff"] for r in reps)
            cell["max_abs_loss_diff"] = max(r["max_abs_loss_diff"] for r in reps)
            cell["max_abs_weight_diff"] = max(r["max_abs_weight_diff"] for r in reps)
            cell["padding"] = padding_waste(ex, split)
            cells[f"{data} B={b}"] = cell
    padding, grouped = {}, {}
    for data in args.data:
        examples = load_examples(data, args.padding_examples, tok, args.max_len)
        for out, by_length in ((padding, False), (grouped, True)):
            out[data] = {
                f"B={b} max_micro={m}": padding_waste(
                    examples, batching.derive_split(b, m), grouped=by_length
                )["waste"]
                for b in args.padding_batches
                for m in args.padding_micro
            }
    report = {
        "model": args.model,
        "adapter": "lora r=8 alpha=16 on all linear layers, dropout 0",
        "steps": args.steps,
        "lr": LR,
        "warmup_ratio": WARMUP_RATIO,
        "max_len": args.max_len,
        "reps": args.reps,
        "threads": 1,
        "wall_s": time.perf_counter() - t_start,
        "cells": cells,
        "padding_epoch": {"examples": args.padding_examples, "waste": padding, "waste_grouped": grouped},
        "provenance": results.provenance(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / f"{args.name}.md").write_text(text)
    print(text)
    return 0


def markdown(r: dict) -> str:
    prov = r["provenance"]
    lines = [
        "# lorasweep's trainer ÷ transformers.Trainer + PEFT (`make bench`, `bench/hf_trainer.py`)",
        "",
        f"- model {r['model']}, {r['adapter']}, fp32 on CPU, 1 torch thread; {r['steps']} optimizer steps,"
        f" AdamW lr {r['lr']:g}, cosine with warmup ratio {r['warmup_ratio']} (lorasweep's factor in both),"
        f" clipping 1.0, sequences <= {r['max_len']} tokens",
        f"- {r['reps']} repetitions, the two sides alternating; throughput = input tokens ÷ wall seconds of"
        f" the whole train call (CPU time: this process's own seconds, less disturbed by other jobs; steady: from the end"
        " of step 1 to the end of the last step, without either side's setup); median"
        f" [min, max] of per-repetition ratios; total {r['wall_s']:.0f} s",
        f"- cpu: {prov['hardware']['processor']}, {prov['hardware']['cpu_count']} cores ({platform.platform()}),"
        " shared with other jobs while measured: absolute tokens/s are noisy, ratios less so",
        f"- git {str(prov['git_sha'])[:12]}{' (dirty)' if prov['git_dirty'] else ''}",
        "",
        "| data | B (split) | lorasweep tok/s | HF Trainer tok/s | lorasweep ÷ HF (wall) |"
        f" (CPU time) | steady steps (wall) | max abs loss diff ({r['steps']} steps) | max abs adapter weight diff | padding waste |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in r["cells"].values():
        s, sc, st, pad = c["speedup"], c["speedup_cpu"], c["speedup_steady"], c["padding"]
        ls, hf = c["lorasweep_tokens_per_s"], c["hf_tokens_per_s"]
        micro, acc = c["split"].split("micro-batch ")[1].split(" x world")[0].split(" x accumulation ")
        lines.append(
            f"| {c['data']} | {c['batch']} ({micro} x {acc}) | {ls['median']:,.0f} | {hf['median']:,.0f} | "
            f"**{s['median']:.2f}x** [{s['min']:.2f}, {s['max']:.2f}] | "
            f"{sc['median']:.2f}x [{sc['min']:.2f}, {sc['max']:.2f}] | "
            f"{st['median']:.2f}x [{st['min']:.2f}, {st['max']:.2f}] | {c['max_abs_loss_diff']:.1e} | "
            f"{c['max_abs_weight_diff']:.1e} | {pad['waste']:.1%} |"
        )
    flat = [c for c in r["cells"].values() if "flat_speedup" in c]
    if flat:
        lines += [
            "",
            "With `train.padding_free: true` (each micro-batch one unpadded row, no padded token computed):",
            "",
            "| data | B | lorasweep padding-free ÷ HF (wall) | (CPU time) | max abs loss diff vs HF | padding waste |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for c in flat:
            s, sc = c["flat_speedup"], c["flat_speedup_cpu"]
            lines.append(
                f"| {c['data']} | {c['batch']} | **{s['median']:.2f}x** [{s['min']:.2f}, {s['max']:.2f}] | "
                f"{sc['median']:.2f}x [{sc['min']:.2f}, {sc['max']:.2f}] | {c['flat_max_abs_loss_diff']:.1e} | 0.0% |"
            )
    pad = r["padding_epoch"]
    for key, title in (("waste", ""), ("waste_grouped", " with `train.group_by_length: true`")):
        lines += _padding_table(pad, key, title)
    return "\n".join(lines) + "\n"


def _padding_table(pad: dict, key: str, title: str) -> list[str]:
    datas = list(pad[key])
    keys = list(pad[key][datas[0]])
    micros = sorted({k.split("max_micro=")[1] for k in keys}, key=int)
    batches = list(dict.fromkeys(k.split(" ")[0] for k in keys))
    lines = [
        "",
        f"Padding waste of the micro-batches over one epoch of {pad['examples']} examples{title} (padded ÷ all"
        " token slots; the split is derived from the max micro-batch as in a trial):",
        "",
        "| B | " + " | ".join(f"{d}, max micro {m}" for d in datas for m in micros) + " |",
        "|---:|" + "---:|" * (len(datas) * len(micros)),
    ]
    for b in batches:
        cells = [f"{pad[key][d][f'{b} max_micro={m}']:.1%}" for d in datas for m in micros]
        lines.append(f"| {b.removeprefix('B=')} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
