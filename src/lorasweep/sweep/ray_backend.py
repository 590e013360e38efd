"""The Ray backend: the sweep's trials as a Ray Tune grid, on an existing Ray cluster or a local one.

What is covered: the same trial functions (``run_trial``, and ``trial.run_unit`` for a packed group
under ``sweep.pack: auto``) and the same per-trial directories as the local backend; Ray Tune schedules
the units still to run (one trial, or one packed group of trials), each with its CPUs and (fractional)
GPUs; Ray's own experiment state goes to ``run_dir/ray``.  Resuming has two
layers: ``Tuner.restore`` continues the last Ray experiment when Ray's record of it agrees with the
trial directories (else a new experiment runs the trials still to do), and a trial whose directory
says it finished (``completed``/``diverged``, same config) is never run again, whatever Ray believes.

The cluster itself — settings, the reachability check of ``sweep.ray_address``, connecting or
starting one here, reaping it with a killed driver — is ``ray_cluster.py``.

What is not covered: trial checkpoints (an unfinished trial restarts from scratch, as locally); clusters
without a shared filesystem: every node must see ``run_dir`` at the same path (Ray's own
``storage_path`` needs that for multi-node runs too) and have lorasweep and its dependencies installed.

``import ray`` happens only inside this module's functions: importing lorasweep never needs Ray.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lorasweep import results
from lorasweep.config import StudyConfig
from lorasweep.errors import UserError
from lorasweep.locks import RunLock
from lorasweep.rundir import RunDir, TrialDir
from lorasweep.sweep.grid import Trial
from lorasweep.sweep.packing import run_line, units_to_run
from lorasweep.sweep.ray_cluster import RaySettings, check_available, cluster, ray_settings, reaped
from lorasweep.sweep.resume import Progress, same_trial_config, todo

EXPERIMENT_PREFIX = "sweep-"  # Ray experiments under run_dir/ray are named sweep-<UTC time>
_OVER = (*results.TERMINAL, "failed")  # states a trial leaves behind when its function returned


def run_sweep_ray(
    cfg: StudyConfig,
    trials: list[Trial],
    run_dir: Path,
    total_steps: dict[str, int] | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Run every not-yet-finished trial of ``trials`` into ``run_dir`` with Ray Tune; prints progress.

    The signature of ``local.run_sweep``.  Ctrl-C stops Ray Tune gracefully and raises
    ``KeyboardInterrupt``; re-running resumes.
    """
    check_available()
    settings = ray_settings(cfg)
    run_dir = Path(run_dir).resolve()  # Ray workers may start in another directory
    with RunLock.held(run_dir):
        pending = todo(cfg, trials, run_dir)
        units = units_to_run(cfg, trials, pending)  # an interrupted group re-runs whole (finished kept)
        log(f"{len(trials)} trials: {run_line(trials, units, pending)} ({settings.describe()})")
        if not pending:
            return
        progress = Progress(len(trials), len(trials) - len(pending), total_steps or {}, run_dir, log)
        with reaped(settings), cluster(settings, log), _watching(progress, pending, run_dir):
            grid = _tuner(cfg, units, run_dir, settings, log).fit()
        _check_finished(grid, pending, run_dir)


# ---------------------------------------------------------------- on the workers


class TrialFailed(Exception):
    """Raised by the Ray trial function for a ``failed`` trial, so Ray records it as errored and
    ``Tuner.restore(restart_errored=True)`` runs it again, as the local backend does on resume."""


def _ray_trial(config: dict, *, cfg: StudyConfig, run_dir: str, threads: int, cwd: str) -> None:
    """The function Ray Tune runs for one grid point: one trial (``run_trial``) or a packed group
    (``trial.run_unit``, ``sweep.pack: auto``), less the members whose directory says done."""
    import warnings

    import torch
    from ray import tune
    from transformers.utils import logging as hf_logging

    if os.path.isdir(cwd):
        os.chdir(cwd)  # Tune starts trials in its own folder; relative config paths are the driver's
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    unit = _unit(config)
    rd = RunDir(run_dir)
    # Ray's state can lag the files (driver killed before saving it): a finished unit is skipped; a
    # unit with an unfinished member runs again whole (its groups do not depend on what is on disk)
    if all(_finished(cfg, t, rd.trial(t)) for t in unit):
        records = {t.id: {**results.read_json(rd.trial(t).status), "skipped": True} for t in unit}
    else:
        from lorasweep.sweep.trial import run_unit

        keep = [t.id for t in unit if _finished(cfg, t, rd.trial(t))]  # their results stay as written
        done = run_unit(cfg, unit, rd, lambda m: None, keep)
        records = {tid: {**r, "skipped": False} for tid, r in done.items()}
    failed = [t for t in unit if records[t.id]["state"] == "failed"]
    if failed:
        t = failed[0]
        raise TrialFailed(f"{t.id}: {records[t.id].get('error')} (traceback: {rd.trial(t).error})")
    keep = ("state", "seconds", "steps", "skipped", "diverged_at", "reason")
    first = records[unit[0].id]  # one trial: its record, as before packing existed
    tune.report(
        {
            "trial": unit[0].id,
            "members": [t.id for t in unit],
            "states": [records[t.id]["state"] for t in unit],
            **{k: first[k] for k in keep if k in first},
        }
    )


def _unit(config: dict) -> list[Trial]:
    """The trials of one grid point: ``{"point": {"trial": ...}}`` (one) or ``{"point": {"unit":
    [...]}}`` (a packed group)."""
    point = config["point"]
    return [Trial(**t) for t in point["unit"]] if "unit" in point else [Trial(**point["trial"])]


def _finished(cfg: StudyConfig, trial: Trial, d: TrialDir) -> bool:
    if d.state() not in results.TERMINAL:
        return False
    return same_trial_config(results.read_json(d.config), cfg, trial)


def _trial_name(trial: Any) -> str:
    """Ray's name (and folder under run_dir/ray/<experiment>) of a grid point: the lorasweep id, or
    for a packed group its first member's id and how many more (``lora-b4-lr0.001-s0+3``)."""
    unit = _unit(trial.config)
    return unit[0].id + (f"+{len(unit) - 1}" if len(unit) > 1 else "")


# ---------------------------------------------------------------- on the driver


def _tuner(cfg: StudyConfig, units: list[list[Trial]], run_dir: Path, settings: RaySettings, log) -> Any:
    """``Tuner.restore`` of the last experiment if Ray would run exactly ``units``, else a new one."""
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(
            _ray_trial, cfg=cfg, run_dir=str(run_dir), threads=settings.threads, cwd=os.getcwd()
        ),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    storage = RunDir(run_dir).ray
    pending = [t for unit in units for t in unit]
    restored = _restore(tune, _last_experiment(storage), trainable, pending, run_dir, log)
    if restored is not None:
        return restored
    name = EXPERIMENT_PREFIX + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    while (storage / name).exists():  # two starts within one second
        name += "x"
    log(f"ray: new experiment {storage / name}")
    points = [{"trial": u[0].as_dict()} if len(u) == 1 else {"unit": [t.as_dict() for t in u]} for u in units]
    return tune.Tuner(
        trainable,
        param_space={"point": tune.grid_search(points)},  # in schedule order
        tune_config=tune.TuneConfig(
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name, reuse_actors=True
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            verbose=0,  # progress comes from the trial directories, as for the local backend
            failure_config=tune.FailureConfig(max_failures=0),  # a failed trial is recorded, not retried
        ),
    )


def _restore(tune: Any, last: Path | None, trainable: Any, pending: list[Trial], run_dir: Path, log) -> Any:
    """The restored last experiment, or None where there is none or it would not run ``pending``.
    Ray's state only saves work: the trial directories are the record, so an unreadable state
    (say, written by another Ray version) means a new experiment, not an error."""
    if last is None or not tune.Tuner.can_restore(str(last)):
        return None
    try:
        tuner = tune.Tuner.restore(
            str(last), trainable=trainable, resume_unfinished=True, restart_errored=True
        )
        would_run = _would_run(tuner, run_dir)
    except Exception as e:  # any failure to read Ray's state: start afresh
        log(f"ray: cannot restore {last.name} ({type(e).__name__}: {e}); starting a new experiment")
        return None
    if would_run != {t.id for t in pending}:
        log(f"ray: experiment {last.name} does not match the trials to run; starting a new one")
        return None
    log(f"ray: resuming experiment {last} (Tuner.restore)")
    return tuner


def _last_experiment(storage: Path) -> Path | None:
    if not storage.is_dir():
        return None
    found = sorted(p for p in storage.iterdir() if p.is_dir() and p.name.startswith(EXPERIMENT_PREFIX))
    return found[-1] if found else None


def _would_run(tuner: Any, run_dir: Path) -> set[str]:
    """Trial ids a restored experiment would run: every member of a grid point not seen to return (or
    errored) that has an unfinished member (the trial function skips a finished point whole)."""
    out = set()
    points: dict[int, list[str]] = {}
    for i, tid, r in _by_trial(tuner.get_results()):
        if r.error is None and "state" in (r.metrics or {}):
            continue
        points.setdefault(i, []).append(tid)
    for ids in points.values():
        if any(RunDir(run_dir).trial(tid).state() not in results.TERMINAL for tid in ids):
            out.update(ids)
    return out


def _by_trial(grid: Any) -> Iterator[tuple[int, str, Any]]:
    """(grid point, trial id, Ray result), one per member of a packed grid point; a point that never
    reported has no config, but its folder is named by its (first) id (``_trial_name``)."""
    for i in range(len(grid)):
        r = grid[i]
        if r.config:
            for t in _unit(r.config):
                yield i, t.id, r
        else:
            yield i, Path(r.path).name.split("+")[0], r


def _check_finished(grid: Any, pending: list[Trial], run_dir: Path) -> None:
    """Every trial must have reached a final state; else Ray lost it (error) or Tune was interrupted."""
    left = {t.id for t in pending if RunDir(run_dir).trial(t).state() not in _OVER}
    if not left:
        return
    lost = {tid: r.error for _, tid, r in _by_trial(grid) if tid in left and r.error is not None}
    if lost:
        tid, err = next(iter(lost.items()))
        raise RuntimeError(
            f"{len(lost)} trial(s) did not finish on the Ray cluster (e.g. {tid}: {err}); re-run to resume"
        )
    raise KeyboardInterrupt  # Tune stops gracefully on Ctrl-C and returns; report it as the local runner does


@contextlib.contextmanager
def _watching(progress: Progress, pending: list[Trial], run_dir: Path) -> Iterator[None]:
    """Progress lines from the trial directories (status.json, steps.jsonl), polled in a thread: the
    same lines as the local backend, independent of Ray's callbacks (which a restore would replace)."""
    stop = threading.Event()
    t0 = time.time()

    def watch() -> None:
        seen: dict[str, str] = {}
        while True:
            last = stop.is_set()
            for t in pending:
                _observe(progress, t, RunDir(run_dir).trial(t), t0, seen)
            progress.tick()
            if last:
                return
            stop.wait(1.0)

    thread = threading.Thread(target=watch, name="lorasweep-ray-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def _observe(progress: Progress, t: Trial, d: TrialDir, t0: float, seen: dict[str, str]) -> None:
    path = d.status
    if not path.exists() or seen.get(t.id) in _OVER:
        return
    try:
        status = results.read_json(path)
    except (UserError, OSError):  # replaced between exists() and read: seen next time
        return
    if status.get("started", 0) < t0 - 1:
        return  # left by an earlier run (a failed trial not yet re-run)
    state = status.get("state")
    if state == "running" and t.id not in seen:
        progress.started(t)
    elif state in _OVER:
        progress.finished(t, status)
    seen[t.id] = state
