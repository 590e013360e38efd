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

from lorasweep import results
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
    residual: bool  # the method rewrote the base weights (PiSSA, MiLoRA): export a plain LoRA too
    init_state: dict | None  # the adapter at init, for that export
    trainable: int


def _train_and_evaluate(
    cfg: StudyConfig, trial: Trial, out: TrialDir | None, run_dir: RunDir, log: Callable[[str], None]
) -> dict:
    t = time.perf_counter()
    built = _build(cfg, trial)
    if out is not None:
        log(f"[{trial.id}] {built.split.describe()}")
    timings = {"setup": time.perf_counter() - t}
    result = _train(cfg, trial, built, out)
    timings["train"] = result.seconds
    metrics: dict = {"train": _train_metrics(result, built)}
    outcome = {"state": result.status, "steps": result.steps_done}
    if result.status == "diverged":
        outcome.update(diverged_at=result.diverged_at, reason=result.divergence_reason)
    if out is None:
        return outcome
    model = built.accelerator.unwrap_model(built.model)
    _save_adapters(model, built, out)
    if result.status == "completed":
        t = time.perf_counter()
        metrics.update(_evaluate(cfg, model, built, out, run_dir))
        timings["eval"] = time.perf_counter() - t
    results.atomic_write_json(out.metrics, metrics)
    results.atomic_write_json(out.provenance, {**results.provenance(), "timings": timings})
    return outcome


def _build(cfg: StudyConfig, trial: Trial) -> Built:
    """Base model + the method's adapter, on the device accelerate chose; the batch split derived."""
    import torch
    from accelerate import Accelerator

    from lorasweep import adapters, models
    from lorasweep.adapters import export
    from lorasweep.data.cache import encoded_train
    from lorasweep.train import batching, device

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=device.mixed_precision())
    device.enable_tf32()
    device.reset_peak_memory()
    torch.manual_seed(trial.seed)
    model, tok = models.load_base(cfg.model.source, cfg.model.dtype, accelerator.device)
    train_set = encoded_train(cfg)
    spec = adapters.AdapterSpec(
        rank=cfg.adapter.rank,
        alpha=cfg.adapter.alpha,
        dropout=cfg.adapter.dropout,
        target_modules=tuple(cfg.adapter.target_modules),
        seed=trial.seed,
        use_rslora=cfg.adapter.use_rslora,
        pissa_niter=cfg.adapter.pissa_niter,
    )
    model = adapters.attach(trial.method, model, spec)
    residual = adapters.METHODS[trial.method].residual_base
    init_state = export.initial_state(model) if residual else None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    split = batching.derive_split(trial.batch_size, cfg.train.max_micro_batch, accelerator.num_processes)
    model = accelerator.prepare_model(model)
    return Built(accelerator, model, tok, train_set, split, residual, init_state, trainable)


def _train(cfg: StudyConfig, trial: Trial, built: Built, out: TrialDir | None):
    """The step loop on the study's training set; one line per step into steps.jsonl."""
    from lorasweep.train import loop

    spec = loop.TrainSpec(
        split=built.split,
        lr=trial.lr,
        seed=trial.seed,
        epochs=cfg.train.epochs,
        scheduler=cfg.train.scheduler,
        warmup_ratio=cfg.train.warmup_ratio,
        weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm,
        divergence_factor=cfg.train.divergence_factor,
    )
    with _step_log(out) as on_step:
        return loop.train(
            built.model, built.train_set, spec, built.tokenizer.pad_token_id, built.accelerator, on_step
        )


@contextlib.contextmanager
def _step_log(out: TrialDir | None) -> Iterator[Callable[[dict], None]]:
    if out is None:
        yield lambda record: None
        return
    with out.steps.open("w") as f:

        def on_step(record: dict) -> None:
            # strict JSON: a non-finite loss or norm is written as the string "nan"/"inf"
            clean = {
                k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
            }
            f.write(json.dumps(clean) + "\n")
            f.flush()

        yield on_step


def _train_metrics(result, built: Built) -> dict:
    from lorasweep.train import device

    split = built.split
    return {
        "steps": result.steps_done,
        "total_steps": result.total_steps,
        "warmup_steps": result.warmup_steps,
        "label_tokens": result.label_tokens,
        "input_tokens": result.input_tokens,
        "tokens_per_second": result.input_tokens / max(result.seconds, 1e-9),
        "final_loss": result.losses[-1] if result.losses else None,
        "trainable_parameters": built.trainable,
        "split": {
            "micro": result.split.micro,
            "accumulation": result.split.accumulation,
            "world": result.split.world,
        },
        "planned_split": {"micro": split.micro, "accumulation": split.accumulation, "world": split.world},
        "oom_retries": result.oom_retries,
        "peak_memory": device.peak_memory(),
        "device": device.describe(built.accelerator),
    }


def _save_adapters(model, built: Built, out: TrialDir) -> None:
    from lorasweep.adapters import export

    model.save_pretrained(out.adapter)  # valid on the (residual) base it trained on
    if built.residual:  # valid on the original base model
        export.export_plain_lora(model, built.init_state, out.plain_adapter)


def _evaluate(cfg: StudyConfig, model, built: Built, out: TrialDir, run_dir: RunDir) -> dict:
    from lorasweep.evals.suite import evaluate_model

    merged = model.merge_and_unload()  # ~1.4x faster generation; same function
    merged.eval()
    generator = None
    if cfg.eval.backend == "vllm":  # serve the adapter that applies to the original base model
        from lorasweep import models
        from lorasweep.evals.vllm_backend import vllm_generator

        adapter_dir = out.plain_adapter if built.residual else out.adapter
        base = models.resolve_source(cfg.model.source)
        generator = vllm_generator(base, adapter_dir, cfg.model.dtype, cfg.eval.max_new_tokens)
    return evaluate_model(
        cfg, merged, built.tokenizer, out.eval, out.validation_eval, run_dir.judge_cache, generator
    )
