"""A unit of work -> one self-describing trial directory per trial: the trial lifecycle.

The one function every backend calls (in-process, local workers, Ray) is :func:`run_unit`: for the
trials of one unit (``packing.groups``: a trial alone is a group of one) it builds the base and the
members (``build.py``), trains them in one step loop (``loop.run_steps``), evaluates each completed
member (``evals/suite.py``) and writes each member's directory (``rundir.TrialDir``) with one writer,
:func:`write_member`.  A member that diverges is written when it leaves; the others after training,
one by one, so a killed unit leaves its finished members finished.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import shutil
import time
import traceback
from collections.abc import Callable, Collection, Iterator

from lorasweep import results, trackers
from lorasweep.config import StudyConfig
from lorasweep.evals.suite import evaluate_model, same_step_rows
from lorasweep.rundir import RunDir, TrialDir
from lorasweep.sweep.build import Unit, build
from lorasweep.sweep.grid import Trial
from lorasweep.sweep.resume import trial_config
from lorasweep.train import device, loop


def run_trial(cfg: StudyConfig, trial: Trial, run_dir: RunDir, log: Callable[[str], None] = print) -> dict:
    """:func:`run_unit` for one trial; returns its status record."""
    return run_unit(cfg, [trial], run_dir, log)[trial.id]


def run_unit(
    cfg: StudyConfig,
    trials: list[Trial],
    run_dir: RunDir,
    log: Callable[[str], None] = print,
    keep: Collection[str] = (),
) -> dict[str, dict]:
    """Train and evaluate ``trials`` into their directories of ``run_dir`` (each cleared first);
    return each trial's status record by id.

    ``keep``: ids of members already finished (a group interrupted after some members were written
    runs again whole, so that no member's numbers depend on where it was killed).  They train with
    the group, but their directories are left as they are: not cleared, evaluated or rewritten; their
    record is the stored one, with ``"kept": True``.

    Never raises for a failing trial: the failure is recorded (state ``failed`` with the traceback)
    so the sweep goes on.  KeyboardInterrupt propagates and leaves state ``running`` (re-run on resume).
    Under a multi-process launch (``torchrun``, ``accelerate launch``) only rank 0 touches the
    directories and evaluates: the other ranks' records are not written.
    """
    run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    started = time.time()
    writes = device.is_main_process()
    dirs = {t.id: run_dir.trial(t) if writes and t.id not in keep else None for t in trials}
    for t in trials:
        if dirs[t.id] is not None:
            _start(dirs[t.id], cfg, t, started)
    records: dict[str, dict] = {}
    try:
        _train_and_evaluate(cfg, trials, dirs, run_dir, records, started, log)
    except Exception as e:  # recorded per unfinished member, not raised: one bad trial must not stop a sweep
        tb = traceback.format_exc()
        for t in trials:
            if t.id not in records:
                records[t.id] = _failed(dirs[t.id], e, tb, started, log)
    for t in trials:
        if t.id in keep:
            records[t.id] = {**results.read_json(run_dir.trial(t).status), "kept": True}
    return records


def _start(out: TrialDir, cfg: StudyConfig, trial: Trial, started: float) -> None:
    if out.path.exists():
        shutil.rmtree(out.path)
    out.path.mkdir(parents=True)
    results.atomic_write_json(out.config, trial_config(cfg, trial))
    results.write_status(out.path, "running", started=started)


def _failed(out: TrialDir | None, e: Exception, tb: str, started: float, log) -> dict:
    record = {"state": "failed", "error": f"{type(e).__name__}: {e}", "started": started}
    record["seconds"] = time.time() - started
    if out is None:
        log(tb)
        return record
    results.atomic_write_text(out.error, tb)
    results.write_status(out.path, **record)
    return record


def _train_and_evaluate(cfg, trials, dirs, run_dir: RunDir, records, started, log) -> None:
    t = time.perf_counter()
    unit = build(cfg, trials)
    if device.is_main_process():
        log(unit.describe())
    setup = time.perf_counter() - t
    with _tracking(cfg, trials, dirs, run_dir) as tracked, contextlib.ExitStack() as files:
        writer = _Writer(cfg, unit, dirs, run_dir, records, started, setup, tracked)
        on_step = [_step_writer(files, dirs[t.id], tracked[k]) for k, t in enumerate(trials)]
        rows = same_step_rows(cfg, unit.tokenizer) if device.is_main_process() else None
        probe = (lambda: unit.heldout(rows, cfg.eval.batch_size)) if rows is not None else None
        out = loop.run_steps(unit.members, unit.train_set, unit.specs, on_step, writer.left, probe)
        finished = [k for k, r in enumerate(out) if r.status == "completed"]
        exported = {k: writer.save(k, unit.members.state(pos)) for pos, k in enumerate(finished)}
        for k in finished:
            if dirs[trials[k].id] is None:  # kept, or another rank's: nothing to evaluate or write
                writer.write(k, out[k], None)
        evaluated = {k: pos for pos, k in enumerate(finished) if dirs[trials[k].id] is not None}
        for k, model, shared in unit.generation_models(evaluated):
            try:
                writer.write(
                    k, out[k], functools.partial(_evaluate, cfg, model, unit, run_dir, exported[k], shared)
                )
            except Exception as e:  # this member failed; the others still get evaluated
                records[trials[k].id] = _failed(dirs[trials[k].id], e, traceback.format_exc(), started, log)


class _Writer:
    """Writes a member's directory: adapter, metrics, provenance, status (the one trial writer)."""

    def __init__(self, cfg, unit: Unit, dirs, run_dir: RunDir, records, started, setup, tracked):
        self.cfg, self.unit, self.dirs, self.run_dir = cfg, unit, dirs, run_dir
        self.records, self.started, self.setup, self.tracked = records, started, setup, tracked

    def save(self, k: int, state: dict):
        out = self.dirs[self.unit.trials[k].id]
        return self.unit.save(k, state, out.path) if out is not None else None

    def left(self, k: int, result: loop.TrainResult, state: dict) -> None:
        """Member ``k`` diverged: write it now, without evaluation."""
        self.save(k, state)
        self.write(k, result, None)

    def write(self, k: int, result: loop.TrainResult, evaluate: Callable[[TrialDir], dict] | None) -> None:
        """Member ``k``'s metrics (``evaluate(trial dir)`` adds its evaluation), provenance and status."""
        trial, out, unit = self.unit.trials[k], self.dirs[self.unit.trials[k].id], self.unit
        t = time.perf_counter()
        metrics = {"train": train_metrics(result, unit.split, unit.trainable, unit.frozen, unit.accelerator)}
        outcome = {"state": result.status, "steps": result.steps_done}
        if result.status == "diverged":
            outcome.update(diverged_at=result.diverged_at, reason=result.divergence_reason)
        if out is None:
            self.records[trial.id] = outcome
            return
        if evaluate is not None:
            metrics.update(evaluate(out))
        timings = {"setup": self.setup, "train": result.seconds, "same_step_loss": result.probe_seconds}
        timings["eval"] = time.perf_counter() - t
        provenance = {**results.provenance(), "timings": timings}
        if len(unit.trials) > 1:
            ids = [tr.id for tr in unit.trials]
            provenance["packed"] = {"group": ids, "position": k, "shared_timings": ["setup", "train"]}
        results.atomic_write_json(out.metrics, metrics)
        self.tracked[k].log_result(metrics)
        results.atomic_write_json(out.provenance, provenance)
        shared = self.setup + result.seconds + result.probe_seconds
        record = {"started": self.started, "seconds": shared / len(unit.trials) + timings["eval"], **outcome}
        self.records[trial.id] = record
        results.write_status(out.path, **record)
        _replay(self.cfg, trial, out, self.run_dir, len(unit.trials))


@contextlib.contextmanager
def _tracking(cfg, trials: list[Trial], dirs, run_dir: RunDir) -> Iterator[list[trackers.Tracked]]:
    """``report.trackers`` runs: a trial alone logs to its runs as it trains; a packed group's members
    are sent one by one when each is written (:func:`_replay`: MLflow holds one active run per process)."""
    out = dirs[trials[0].id]
    if len(trials) > 1 or out is None or not cfg.report.trackers:
        yield [trackers.Tracked([]) for _ in trials]
        return
    t = trials[0]
    with trackers.trial_run(cfg.report.trackers, cfg.name, t.id, t.as_dict(), run_dir.trackers) as tracked:
        yield [tracked]


def _replay(cfg, trial: Trial, out: TrialDir, run_dir: RunDir, members: int) -> None:
    if members > 1 and cfg.report.trackers:
        args = (cfg.report.trackers, cfg.name, trial.id, trial.as_dict(), run_dir.trackers)
        trackers.replay(*args, out.steps, out.metrics)


def _step_writer(files: contextlib.ExitStack, out: TrialDir | None, tracked) -> Callable[[dict], None]:
    """One line per step into the member's steps.jsonl (and its tracker runs)."""
    if out is None:
        return lambda record: None
    f = files.enter_context(out.steps.open("w"))

    def on_step(record: dict) -> None:
        f.write(step_line(record))
        f.flush()
        tracked.log_step(record)

    return on_step


def step_line(record: dict) -> str:
    """One steps.jsonl line; strict JSON: a non-finite loss or norm is written as "nan"/"inf"."""
    clean = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
    return json.dumps(clean) + "\n"


def train_metrics(result, split, trainable: int, frozen: int, accelerator) -> dict:
    """The ``train`` record of metrics.json (``split``: the planned one; the result has the one used)."""
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


def _evaluate(
    cfg: StudyConfig, model, unit: Unit, run_dir: RunDir, exported, generator, out: TrialDir
) -> dict:
    """``generator``: the packed group's shared decoding (None: ``model.generate``, or vLLM)."""
    if cfg.eval.backend == "vllm":  # serve the adapter that applies to the original base model
        from lorasweep import models
        from lorasweep.evals.vllm_backend import vllm_generator  # imports vllm: only when asked

        base = models.resolve_source(cfg.model.source)  # export_kind "lora" (config checks it)
        generator = vllm_generator(base, exported, cfg.model.dtype, cfg.eval.max_new_tokens)
    return evaluate_model(
        cfg, model, unit.tokenizer, out.eval, out.validation_eval, run_dir.judge_cache, generator
    )
