"""Sweep backends by registry name (``sweep.backend``).

Every backend runs the same trial function (``trial.run_trial``) into the same trial directories and
shares the resume and progress code (``resume.py``); it differs only in where trials run.  Adding a
backend = one module with a ``run`` function of ``local.run_sweep``'s signature + one line in
``BACKENDS`` (+ its name in ``schema.py``'s choices for ``sweep.backend``; a test checks they agree).
``import ray`` happens only inside ``ray_backend``'s functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorasweep.config import StudyConfig
from lorasweep.errors import UserError, did_you_mean
from lorasweep.sweep import local, ray_backend, ray_cluster
from lorasweep.sweep.grid import Trial


def _no_check(cfg: StudyConfig) -> None:
    return None


@dataclass(frozen=True)
class Backend:
    # (cfg, trials, run_dir, total steps by trial id, log): run the trials not yet finished
    run: Callable[[StudyConfig, list[Trial], Path, dict[str, int], Callable[[str], None]], None]
    # before anything is written: raise UserError for what cannot work (a missing extra, bad settings)
    check: Callable[[StudyConfig], None] = _no_check


BACKENDS: dict[str, Backend] = {
    "local": Backend(local.run_sweep),
    "inprocess": Backend(local.run_sweep),
    "ray": Backend(ray_backend.run_sweep_ray, ray_cluster.preflight),
}


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise UserError(
            f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}{did_you_mean(name, BACKENDS)}",
            "sweep.backend",
        )
    return BACKENDS[name]


def run_sweep(
    cfg: StudyConfig,
    trials: list[Trial],
    run_dir: Path,
    total_steps: dict[str, int],
    log: Callable[[str], None] = print,
) -> None:
    """Run every not-yet-finished trial of ``trials`` into ``run_dir`` on the configured backend."""
    get(cfg.sweep.backend).run(cfg, trials, run_dir, total_steps, log)
