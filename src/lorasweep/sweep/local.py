"""The local sweep backend: worker processes on this machine (or the current process).

Two workers x one torch thread is the default: on the 2-core reference machine it measured ~20 %
faster than one worker with two threads (REFERENCE.md §7).  Re-running resumes: trials whose status is
terminal (completed, diverged) are skipped; anything else starts again from scratch.  Workers exit if
the runner dies, so a killed sweep never leaves a worker finishing a trial behind a restarted one.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lorasweep import results
from lorasweep.config import StudyConfig, from_dict
from lorasweep.errors import ConfigError, UserError
from lorasweep.sweep.grid import Trial, schedule_order
from lorasweep.sweep.lock import RunLock
from lorasweep.sweep.packing import groups, run_group
from lorasweep.sweep.trial import result_config


def trial_dir(run_dir: Path, trial: Trial) -> Path:
    return run_dir / "trials" / trial.id


def existing_trials(run_dir: Path) -> list[Trial]:
    """Every trial with a directory (and config) in ``run_dir``."""
    out = []
    trials = run_dir / "trials"
    for d in sorted(trials.iterdir()) if trials.is_dir() else []:
        if (d / "config.json").exists():
            t = results.read_json(d / "config.json").get("trial")
            if isinstance(t, dict):
                out.append(Trial(t["method"], t["batch_size"], t["lr"], t["seed"]))
    return out


def _init_worker(threads: int, parent: int) -> None:
    import torch

    from lorasweep.models import quiet_libraries

    torch.set_num_threads(threads)
    quiet_libraries()
    _watch_parent(parent)


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)  # the runner is gone: stop before writing a result nobody awaits
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def _worker(cfg: StudyConfig, unit: list[Trial], run_dir: str) -> dict[str, dict]:
    return run_group(cfg, unit, Path(run_dir), log=lambda m: None)


def same_trial_config(stored: dict, cfg: StudyConfig, trial: Trial) -> bool:
    """Whether a finished trial's stored config is this one; keys added to the schema since it was
    written count as equal when they hold their default (so upgrades keep finished trials)."""
    try:
        then = from_dict(stored["study"])
    except (ConfigError, KeyError, TypeError):
        return False
    return stored.get("trial") == trial.as_dict() and result_config(then) == result_config(cfg)


def todo(cfg: StudyConfig, trials: list[Trial], run_dir: Path) -> list[Trial]:
    """Trials still to run; refuses a run directory whose finished trials used a different config."""
    out = []
    for t in trials:
        d = trial_dir(run_dir, t)
        state = results.read_state(d)
        if state in results.TERMINAL:
            if not same_trial_config(results.read_json(d / "config.json"), cfg, t):
                raise UserError(
                    f"holds trial {t.id} run with a different config; use another output_dir",
                    str(run_dir),
                )
            continue
        out.append(t)
    return out


def run_sweep(
    cfg: StudyConfig,
    trials: list[Trial],
    run_dir: Path,
    total_steps: dict[str, int],
    log: Callable[[str], None] = print,
) -> None:
    """Run every not-yet-finished trial of ``trials`` into ``run_dir``; prints progress."""
    if cfg.sweep.backend == "ray":  # same trial function, same directories; Ray is an optional extra
        from lorasweep.sweep.ray_backend import run_sweep_ray

        return run_sweep_ray(cfg, trials, run_dir, total_steps, log)
    with RunLock.held(run_dir):
        pending = schedule_order(todo(cfg, trials, run_dir))
        done0 = len(trials) - len(pending)
        log(
            f"{len(trials)} trials: {done0} already finished, {len(pending)} to run "
            f"({cfg.sweep.workers} worker(s) x {cfg.sweep.threads_per_worker} thread(s))"
        )
        if not pending:
            return
        progress = Progress(len(trials), done0, total_steps, run_dir, log)
        units = groups(cfg, pending)  # one trial each, or trials packed into one pass (sweep.pack)
        if cfg.sweep.backend == "inprocess":
            for unit in units:
                for t in unit:
                    progress.started(t)
                records = run_group(cfg, unit, run_dir, log)
                for t in unit:
                    progress.finished(t, records[t.id])
            return
        _run_pool(cfg, units, run_dir, progress)


def _run_pool(cfg: StudyConfig, units: list[list[Trial]], run_dir: Path, progress: Progress) -> None:
    threads = str(cfg.sweep.threads_per_worker)
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    ctx = mp.get_context("spawn")
    try:
        with cf.ProcessPoolExecutor(
            cfg.sweep.workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(cfg.sweep.threads_per_worker, os.getpid()),
        ) as pool:
            futures = {}
            queue = list(units)
            while queue or futures:
                while queue and len(futures) < cfg.sweep.workers:
                    unit = queue.pop(0)
                    futures[pool.submit(_worker, cfg, unit, str(run_dir))] = unit
                    for t in unit:
                        progress.started(t)
                finished, _ = cf.wait(futures, timeout=5, return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    unit, records = futures.pop(f), f.result()
                    for t in unit:
                        progress.finished(t, records[t.id])
                progress.tick()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Progress:
    """Sweep progress (trials finished) and current-trial progress (steps, from steps.jsonl)."""

    def __init__(self, total: int, done: int, steps: dict[str, int], run_dir: Path, log):
        self.total, self.done, self.steps, self.run_dir, self.log = total, done, steps, run_dir, log
        self.running: dict[str, float] = {}
        self.t0 = time.time()
        self.ran = 0
        self.last_tick = time.time()

    def started(self, t: Trial) -> None:
        self.running[t.id] = time.time()

    def finished(self, t: Trial, record: dict) -> None:
        self.running.pop(t.id, None)
        self.done += 1
        self.ran += 1
        elapsed = time.time() - self.t0
        eta = elapsed / self.ran * (self.total - self.done)
        detail = record.get("error") or record.get("reason") or ""
        self.log(
            f"[{self.done:>3}/{self.total}] {record['state']:<9} {t.id:<28} "
            f"{record.get('seconds', 0):5.1f}s  elapsed {elapsed / 60:4.1f} min  "
            f"eta {eta / 60:4.1f} min {detail}"
        )

    def tick(self) -> None:
        if time.time() - self.last_tick < 20 or not self.running:
            return
        self.last_tick = time.time()
        parts = []
        for tid in self.running:
            path = self.run_dir / "trials" / tid / "steps.jsonl"
            n = sum(1 for _ in path.open()) if path.exists() else 0
            parts.append(f"{tid} step {n}/{self.steps.get(tid, '?')}")
        self.log("        running: " + "; ".join(parts))
