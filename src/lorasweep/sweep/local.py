"""The local sweep backend: worker processes on this machine (or the current process).

Two workers x one torch thread is the default: on the 2-core reference machine it measured ~20 %
faster than one worker with two threads (docs/method.md, "CPU defaults").  Re-running resumes (``resume.todo``):
trials whose status is terminal (completed, diverged) are skipped; anything else starts again from
scratch.  Workers exit if the runner dies, so a killed sweep never leaves a worker finishing a trial
behind a restarted one.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lorasweep.config import StudyConfig
from lorasweep.locks import RunLock
from lorasweep.rundir import RunDir
from lorasweep.sweep.grid import Trial
from lorasweep.sweep.packing import kept, run_line, units_to_run
from lorasweep.sweep.resume import Progress, todo
from lorasweep.sweep.trial import run_unit


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


def _worker(cfg: StudyConfig, unit: list[Trial], run_dir: str, keep: frozenset[str]) -> dict[str, dict]:
    return run_unit(cfg, unit, RunDir(run_dir), lambda m: None, keep)


def run_sweep(
    cfg: StudyConfig,
    trials: list[Trial],
    run_dir: Path,
    total_steps: dict[str, int],
    log: Callable[[str], None] = print,
) -> None:
    """Run every not-yet-finished trial of ``trials`` into ``run_dir``; prints progress.  In this
    process when ``sweep.backend`` is ``inprocess``, else in ``sweep.workers`` worker processes."""
    with RunLock.held(run_dir):
        # one trial each, or trials packed into one pass (sweep.pack); an interrupted group re-runs whole
        pending = todo(cfg, trials, run_dir)
        units = units_to_run(cfg, trials, pending)
        log(
            f"{len(trials)} trials: {run_line(trials, units, pending)} "
            f"({cfg.sweep.workers} worker(s) x {cfg.sweep.threads_per_worker} thread(s))"
        )
        if not units:
            return
        progress = Progress(len(trials), len(trials) - len(pending), total_steps, run_dir, log)
        keep = kept(units, pending)
        if cfg.sweep.backend == "inprocess":
            for unit in units:
                todo_here = [t for t in unit if t.id not in keep]
                for t in todo_here:
                    progress.started(t)
                records = run_unit(cfg, unit, RunDir(run_dir), log, keep)
                for t in todo_here:
                    progress.finished(t, records[t.id])
            return
        _run_pool(cfg, units, run_dir, progress, keep)


def _run_pool(
    cfg: StudyConfig, units: list[list[Trial]], run_dir: Path, progress: Progress, keep: frozenset[str]
) -> None:
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
                    futures[pool.submit(_worker, cfg, unit, str(run_dir), keep)] = unit
                    for t in unit:
                        if t.id not in keep:
                            progress.started(t)
                finished, _ = cf.wait(futures, timeout=5, return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    unit, records = futures.pop(f), f.result()
                    for t in unit:
                        if t.id not in keep:
                            progress.finished(t, records[t.id])
                progress.tick()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
