"""One trial: (method, batch size, LR, seed) -> a self-describing trial directory.

The single trial function every backend calls (in-process, local workers, Ray).  It builds the model
with its adapter, trains it, evaluates it (``evals/suite.py``) and writes the trial directory
(``rundir.TrialDir``); what data it trains on comes from ``data/cache.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lorasweep import results, trackers
from lorasweep.config import StudyConfig
from lorasweep.rundir import RunDir, TrialDir
from lorasweep.sweep.grid import Trial
from lorasweep.sweep.resume import trial_config


def run_trial(cfg: StudyConfig, trial: Trial, run_dir: RunDir, log: Callable[[str], None] = print) -> dict:
    """Train and evaluate one trial into its directory of ``run_dir`` (cleared first); return its
    status record.

    Never raises for a failing trial: the failure is recorded (state ``failed`` with the traceback)
    so the sweep goes on.  KeyboardInterrupt propagates and leaves state ``running`` (re-run on resume).
    Under a multi-process launch (``torchrun``, ``accelerate launch``) only rank 0 touches the
    directory and evaluates: the other ranks get ``out = None``.
    """
    from lorasweep.train import device

    started = time.time()
    out = run_dir.trial(trial) if device.is_main_process() else None
    if out is not None:
        _start(out, cfg, trial, started)
    try:
        outcome = _train_and_evaluate(cfg, trial, out, run_dir, log)
    except Exception as e:  # recorded, not raised: one bad trial must not stop a sweep
        record = {"state": "failed", "error": f"{type(e).__name__}: {e}", "started": started}
        if out is None:
            log(traceback.format_exc())
            return record
        results.atomic_write_text(out.error, traceback.format_exc())
        outcome = record
    record = {"started": started, "seconds": time.time() - started, **outcome}
    if out is not None:
        results.write_status(out.path, **record)
    return record


def _start(out: TrialDir, cfg: StudyConfig, trial: Trial, started: float) -> None:
    if out.path.exists():
        shutil.rmtree(out.path)
    out.path.mkdir(parents=True)
    results.atomic_write_json(out.config, trial_config(cfg, trial))
    results.write_status(out.path, "running", started=started)


@dataclass
class Built:
    """A trial's model, ready to train."""

    accelerator: Any
    model: Any  # prepared by accelerate
    tokenizer: Any
    train_set: list  # the study's tokenised training rows
    split: Any  # batching.BatchSplit
    method: Any  # adapters.Method: attach, param groups, export, merge
    spec: Any  # adapters.AdapterSpec
    trainable: int
    frozen: int


def _train_and_evaluate(
    cfg: StudyConfig, trial: Trial, out: TrialDir | None, run_dir: RunDir, log: Callable[[str], None]
) -> dict:
    root = run_dir.trackers if out is not None and cfg.report.trackers else None  # rank 0 only
    with trackers.trial_run(cfg.report.trackers, cfg.name, trial.id, trial.as_dict(), root) as tracked:
        return _run(cfg, trial, out, run_dir, log, tracked)


def _run(
    cfg: StudyConfig,
    trial: Trial,
    out: TrialDir | None,
    run_dir: RunDir,
    log: Callable[[str], None],
    tracked: trackers.Tracked,
) -> dict:
    t = time.perf_counter()
    built = _build(cfg, trial)
    if out is not None:
        log(f"[{trial.id}] {built.split.describe()}")
    timings = {"setup": time.perf_counter() - t}
    result, timings["same_step_loss"] = _train(cfg, trial, built, out, tracked.log_step)
    timings["train"] = result.seconds
    metrics: dict = {
        "train": train_metrics(result, built.split, built.trainable, built.frozen, built.accelerator)
    }
    outcome = {"state": result.status, "steps": result.steps_done}
    if result.status == "diverged":
        outcome.update(diverged_at=result.diverged_at, reason=result.divergence_reason)
    if out is None:
        return outcome
    model = built.accelerator.unwrap_model(built.model)
    exported = built.method.export(model, out.path)  # applies to the original base model
    if result.status == "completed":
        t = time.perf_counter()
        metrics.update(_evaluate(cfg, model, built, out, run_dir, exported))
        timings["eval"] = time.perf_counter() - t
    results.atomic_write_json(out.metrics, metrics)
    tracked.log_result(metrics)
    results.atomic_write_json(out.provenance, {**results.provenance(), "timings": timings})
    return outcome


def _build(cfg: StudyConfig, trial: Trial) -> Built:
    """Base model + the method's adapter, on the device accelerate chose; the batch split derived."""
    import torch
    from accelerate import Accelerator

    from lorasweep import adapters, models
    from lorasweep.data.cache import encoded_train
    from lorasweep.train import batching, device

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=device.mixed_precision())
    device.enable_tf32()
    device.reset_peak_memory()
    torch.manual_seed(trial.seed)
    model, tok = models.load_base(cfg.model.source, cfg.model.dtype, accelerator.device, cfg.model.num_layers)
    train_set = encoded_train(cfg)
    spec = adapters.AdapterSpec(
        rank=cfg.adapter.rank,
        alpha=cfg.adapter.alpha,
        dropout=cfg.adapter.dropout,
        target_modules=tuple(cfg.adapter.target_modules),
        seed=trial.seed,
        use_rslora=cfg.adapter.use_rslora,
        pissa_niter=cfg.adapter.pissa_niter,
        loraplus_lr_ratio=cfg.adapter.loraplus_lr_ratio,
        autocast=accelerator.mixed_precision != "no",
    )
    method = adapters.get(trial.method)
    model = method.attach(model, spec)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    split = batching.derive_split(trial.batch_size, cfg.train.max_micro_batch, accelerator.num_processes)
    model = accelerator.prepare_model(model)
    return Built(accelerator, model, tok, train_set, split, method, spec, trainable, frozen)


def _train(cfg: StudyConfig, trial: Trial, built: Built, out: TrialDir | None, track: Callable[[dict], None]):
    """The step loop on the study's training set; one line per step into steps.jsonl, with the
    validation rows' held-out loss after steps 1, 2, 4, 8, ... (the same-step view; its seconds are
    measurement, not training time)."""
    from lorasweep.evals.suite import same_step_probe
    from lorasweep.train import loop

    spec = train_spec(cfg, built.split, trial)
    spent = [0.0]
    model = built.accelerator.unwrap_model(built.model)
    probe = same_step_probe(cfg, model, built.tokenizer, spent) if out is not None else None
    groups = built.method.param_groups(built.model, built.spec)
    with _step_log(out, probe, track) as on_step:
        result = loop.train(
            built.model,
            built.train_set,
            spec,
            built.tokenizer.pad_token_id,
            built.accelerator,
            on_step,
            groups,
        )
    result.seconds -= spent[0]
    return result, spent[0]


@contextlib.contextmanager
def _step_log(
    out: TrialDir | None, probe: Callable[[], float] | None, track: Callable[[dict], None]
) -> Iterator[Callable[[dict], None]]:
    if out is None:
        yield lambda record: None
        return
    with out.steps.open("w") as f:

        def on_step(record: dict) -> None:
            if probe is not None and record["step"] & (record["step"] - 1) == 0:  # a power of two
                record["val_loss"] = probe()
            f.write(step_line(record))
            f.flush()
            track(record)  # report.trackers (trackers.py)

        yield on_step


def train_spec(cfg: StudyConfig, split, trial: Trial):
    """The trainer's settings for ``trial`` (a trial alone and a packed member alike)."""
    from lorasweep.train import loop

    return loop.TrainSpec(
        split=split,
        lr=trial.lr,
        seed=trial.seed,
        epochs=cfg.train.epochs,
        scheduler=cfg.train.scheduler,
        warmup_ratio=cfg.train.warmup_ratio,
        weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm,
        divergence_factor=cfg.train.divergence_factor,
        group_by_length=cfg.train.group_by_length,
        padding_free=cfg.train.padding_free,
    )


def step_line(record: dict) -> str:
    """One steps.jsonl line; strict JSON: a non-finite loss or norm is written as "nan"/"inf"."""
    clean = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean) + "\n"


def train_metrics(result, split, trainable: int, frozen: int, accelerator) -> dict:
    """The ``train`` record of metrics.json (``split``: the planned one; the result has the one used)."""
    from lorasweep.train import device

    return {
        "steps": result.steps_done,
        "total_steps": result.total_steps,
        "warmup_steps": result.warmup_steps,
        "label_tokens": result.label_tokens,
        "input_tokens": result.input_tokens,
        "tokens_per_second": result.input_tokens / max(result.seconds, 1e-9),
        "final_loss": result.losses[-1] if result.losses else None,
        "trainable_parameters": trainable,
        "frozen_parameters": frozen,
        "noise_scale": result.noise_scale,
        "split": {
            "micro": result.split.micro,
            "accumulation": result.split.accumulation,
            "world": result.split.world,
        },
        "planned_split": {"micro": split.micro, "accumulation": split.accumulation, "world": split.world},
        "oom_retries": result.oom_retries,
        "peak_memory": device.peak_memory(),
        "device": device.describe(accelerator),
    }


def _evaluate(cfg: StudyConfig, model, built: Built, out: TrialDir, run_dir: RunDir, exported) -> dict:
    from lorasweep.evals.suite import evaluate_model

    merged = built.method.merge(model)  # ~1.4x faster generation; same function
    merged.eval()
    generator = None
    if cfg.eval.backend == "vllm":  # serve the adapter that applies to the original base model
        from lorasweep import models
        from lorasweep.evals.vllm_backend import vllm_generator

        base = models.resolve_source(cfg.model.source)  # export_kind "lora" (config checks it)
        generator = vllm_generator(base, exported, cfg.model.dtype, cfg.eval.max_new_tokens)
    return evaluate_model(
        cfg, merged, built.tokenizer, out.eval, out.validation_eval, run_dir.judge_cache, generator
    )
