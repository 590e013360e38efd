"""One trial: (method, batch size, LR, seed) -> a self-describing trial directory.

The single trial function every backend calls (in-process, local workers, Ray).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from lorasweep import results
from lorasweep.config import StudyConfig, to_dict
from lorasweep.rundir import RunDir, TrialDir
from lorasweep.sweep.grid import Trial

# Settings that do not change a trial's result: the grid's other points, where and how it is run,
# and how the report reads it.  Extending a grid or changing workers keeps finished trials valid.
_NOT_RESULT = {
    "name": None,
    "output_dir": None,
    "sweep": None,
    "report": None,
    "adapter": ("methods",),
    "train": ("batch_sizes", "learning_rates", "seeds", "lr_search", "bracket"),
}


def result_config(cfg: StudyConfig) -> dict:
    """The part of the study config that a trial's (or the baseline's) result depends on."""
    out = to_dict(cfg)
    for section, keys in _NOT_RESULT.items():
        if keys is None:
            out.pop(section)
        else:
            for k in keys:
                out[section].pop(k)
    return out


def trial_config(cfg: StudyConfig, trial: Trial) -> dict:
    """What a trial's result depends on: the result-relevant config and the trial's grid point."""
    return {"study": result_config(cfg), "trial": trial.as_dict()}


@functools.lru_cache(maxsize=4)
def _encoded_train(source: str, fmt: str, model_source: str, n: int, template: str, max_len: int):
    from lorasweep.data import sources, templates
    from lorasweep.data.tokenize import encode
    from lorasweep.models import load_tokenizer

    tok = load_tokenizer(model_source)
    pairs = sources.load_training_pairs(source, fmt, n)
    return [encode(tok, *templates.render(template, q, a, tok), max_len) for q, a in pairs]


def n_train(cfg: StudyConfig) -> int:
    """Training rows actually trained on: the budget less any rows held out for validation."""
    return cfg.data.num_train - cfg.eval.selection.from_train


def encoded_train(cfg: StudyConfig):
    """The tokenised training set of a study (cached per process: trials share it)."""
    d = cfg.data
    return _encoded_train(d.train, d.format, cfg.model.source, n_train(cfg), d.template, d.max_seq_len)


@functools.lru_cache(maxsize=8)
def _rows(source: str, n: int | None) -> list[dict]:
    from lorasweep.data import sources

    return sources.load_rows(source, "test", n)


def eval_rows(cfg: StudyConfig, task: str) -> list[dict]:
    """The test rows of ``task`` (cached per process: trials share them).  Reported, never chosen on."""
    from lorasweep.evals.registry import data_source

    return _rows(data_source(task, cfg.eval.data), cfg.eval.num_examples)


def selection_task(cfg: StudyConfig) -> str:
    return selection_metric(cfg).split(".")[0]


def selection_metric(cfg: StudyConfig) -> str:
    """The metric every choice maximises, on validation rows."""
    return cfg.eval.selection.metric or cfg.report.metric


def validation_source(cfg: StudyConfig) -> str:
    """Where the validation rows come from, in words (for plan and the report)."""
    from lorasweep.evals.registry import get

    sel, task = cfg.eval.selection, selection_task(cfg)
    if sel.from_train:
        return f"the last {sel.from_train} of the first {cfg.data.num_train} rows of {cfg.data.train} (not trained on)"
    source = sel.data or get(task).validation_source(cfg.eval.data.get(task))
    return f"{source} (validation split)" if source and source.startswith("builtin:") else str(source)


@functools.lru_cache(maxsize=4)
def _validation_rows(task: str, source: str | None, fmt: str, held_out: int, budget: int, n: int | None):
    from lorasweep.data import sources
    from lorasweep.evals.registry import get

    if held_out:
        pairs = sources.load_training_pairs(source, fmt, budget)[budget - held_out :]
        rows = [get(task).from_pair(q, a) for q, a in pairs]
        return rows[:n] if n is not None else rows
    return sources.load_rows(source, "validation", n)


def validation_rows(cfg: StudyConfig) -> list[dict]:
    """The validation rows of the selection task: every choice (LR, batch size) is made on these."""
    from lorasweep.evals.registry import get

    sel, task = cfg.eval.selection, selection_task(cfg)
    if sel.from_train:
        return _validation_rows(
            task, cfg.data.train, cfg.data.format, sel.from_train, cfg.data.num_train, sel.num_examples
        )
    source = sel.data or get(task).validation_source(cfg.eval.data.get(task))
    return _validation_rows(task, source, cfg.data.format, 0, 0, sel.num_examples)


def evaluate_model(
    cfg: StudyConfig, model, tok, out_dir: Path, validation_dir: Path, judge_cache: Path, generator=None
) -> dict:
    """Every configured task on its test rows (files in ``out_dir``), and the selection task on its
    validation rows (under ``"validation"``, files in ``validation_dir``), each with generation,
    scoring and held-out loss -> metrics by task."""
    metrics = {}
    for task in cfg.eval.tasks:
        metrics[task] = _evaluate_rows(
            cfg, task, eval_rows(cfg, task), model, tok, out_dir, judge_cache, generator
        )
    task = selection_task(cfg)
    rows = validation_rows(cfg)
    val = _evaluate_rows(cfg, task, rows, model, tok, validation_dir, judge_cache, generator)
    metrics["validation"] = {task: val}
    return metrics


def _evaluate_rows(
    cfg: StudyConfig, task: str, rows, model, tok, out_dir: Path, judge_cache: Path, generator
) -> dict:
    from lorasweep import evals
    from lorasweep.data import templates, tokenize
    from lorasweep.evals.heldout import heldout_loss

    settings = evals.GenerationSettings(
        cfg.data.template, cfg.eval.max_new_tokens, cfg.eval.batch_size, generator=generator
    )
    # one judgment cache per run: a re-run trial never pays for a judgment twice
    options = {"judge": dataclasses.asdict(cfg.eval.judge), "judge_cache": str(judge_cache)}
    metrics = evals.evaluate(task, model, tok, rows, settings, out_dir, options)
    spec = evals.EVALUATORS[task]
    if cfg.eval.heldout_loss and spec.reference is not None:
        enc = [
            tokenize.encode(
                tok,
                *templates.render(cfg.data.template, spec.prompt(r), spec.reference(r), tok),
                cfg.data.max_seq_len,
            )
            for r in rows
        ]
        metrics["heldout_loss"] = heldout_loss(model, enc, tok.pad_token_id, cfg.eval.batch_size)
    return metrics


def run_trial(cfg: StudyConfig, trial: Trial, run_dir: RunDir, log: Callable[[str], None] = print) -> dict:
    """Train and evaluate one trial into its directory of ``run_dir`` (cleared first); return its
    status record.

    Never raises for a failing trial: the failure is recorded (state ``failed`` with the traceback)
    so the sweep goes on.  KeyboardInterrupt propagates and leaves state ``running`` (re-run on resume).
    Under a multi-process launch (``torchrun``, ``accelerate launch``) only rank 0 touches the directory.
    """
    from lorasweep.train import device

    main = device.is_main_process()
    started = time.time()
    td = run_dir.trial(trial)
    if main:
        if td.path.exists():
            shutil.rmtree(td.path)
        td.path.mkdir(parents=True)
        results.atomic_write_json(td.config, trial_config(cfg, trial))
        results.write_status(td.path, "running", started=started)
    try:
        outcome = _train_and_evaluate(cfg, trial, td, run_dir, log)
    except Exception as e:  # recorded, not raised: one bad trial must not stop a sweep
        tb = traceback.format_exc()
        if not main:
            log(tb)
            return {"state": "failed", "error": f"{type(e).__name__}: {e}", "started": started}
        results.atomic_write_text(td.error, tb)
        record = {
            "state": "failed",
            "error": f"{type(e).__name__}: {e}",
            "started": started,
            "seconds": time.time() - started,
        }
        results.write_status(td.path, **record)
        return record
    record = {"started": started, "seconds": time.time() - started, **outcome}
    if main:
        results.write_status(td.path, **record)
    return record


def _train_and_evaluate(cfg: StudyConfig, trial: Trial, trial_dir: TrialDir, run_dir: RunDir, log) -> dict:
    from accelerate import Accelerator

    from lorasweep import adapters, models
    from lorasweep.adapters import export
    from lorasweep.train import batching, device, loop

    timings: dict[str, float] = {}
    t = time.perf_counter()
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
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    split = batching.derive_split(trial.batch_size, cfg.train.max_micro_batch, accelerator.num_processes)
    if accelerator.is_main_process:
        log(f"[{trial.id}] {split.describe()}")
    model = accelerator.prepare_model(model)
    timings["setup"] = time.perf_counter() - t

    train_spec = loop.TrainSpec(
        split=split,
        lr=trial.lr,
        seed=trial.seed,
        epochs=cfg.train.epochs,
        scheduler=cfg.train.scheduler,
        warmup_ratio=cfg.train.warmup_ratio,
        weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm,
        divergence_factor=cfg.train.divergence_factor,
    )
    main = accelerator.is_main_process
    with trial_dir.steps.open("w") if main else contextlib.nullcontext() as steplog:

        def on_step(record: dict) -> None:
            if steplog is None:
                return
            # strict JSON: a non-finite loss or norm is written as the string "nan"/"inf"
            clean = {
                k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()
            }
            steplog.write(json.dumps(clean) + "\n")
            steplog.flush()

        result = loop.train(model, train_set, train_spec, tok.pad_token_id, accelerator, on_step)
    timings["train"] = result.seconds
    unwrapped = accelerator.unwrap_model(model)
    train_metrics = {
        "steps": result.steps_done,
        "total_steps": result.total_steps,
        "warmup_steps": result.warmup_steps,
        "label_tokens": result.label_tokens,
        "input_tokens": result.input_tokens,
        "tokens_per_second": result.input_tokens / max(result.seconds, 1e-9),
        "final_loss": result.losses[-1] if result.losses else None,
        "trainable_parameters": n_trainable,
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
    metrics: dict = {"train": train_metrics}
    if accelerator.is_main_process:
        unwrapped.save_pretrained(trial_dir.adapter)  # valid on the (residual) base it trained on
        if residual:  # valid on the original base model
            export.export_plain_lora(unwrapped, init_state, trial_dir.plain_adapter)
    if result.status == "completed" and accelerator.is_main_process:
        t = time.perf_counter()
        merged = unwrapped.merge_and_unload()  # ~1.4x faster generation; same function
        merged.eval()
        generator = None
        if cfg.eval.backend == "vllm":  # serve the adapter that applies to the original base model
            from lorasweep.evals.vllm_backend import vllm_generator

            adapter_dir = trial_dir.plain_adapter if residual else trial_dir.adapter
            base = models.resolve_source(cfg.model.source)
            generator = vllm_generator(base, adapter_dir, cfg.model.dtype, cfg.eval.max_new_tokens)
        metrics.update(
            evaluate_model(
                cfg, merged, tok, trial_dir.eval, trial_dir.validation_eval, run_dir.judge_cache, generator
            )
        )
        timings["eval"] = time.perf_counter() - t
    if accelerator.is_main_process:
        results.atomic_write_json(trial_dir.metrics, metrics)
        results.atomic_write_json(trial_dir.provenance, {**results.provenance(), "timings": timings})
    outcome = {"state": result.status, "steps": result.steps_done}
    if result.status == "diverged":
        outcome.update(diverged_at=result.diverged_at, reason=result.divergence_reason)
    return outcome
