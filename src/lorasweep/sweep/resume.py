"""What every backend shares: which trials are already done (a result's identity, ``todo``) and the
progress lines of a sweep.

Re-running resumes: a trial whose status is terminal (completed, diverged) and whose stored config is
this one is skipped; anything else starts again from scratch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from lorasweep import results
from lorasweep.config import StudyConfig, from_dict, to_dict
from lorasweep.errors import ConfigError, UserError
from lorasweep.rundir import RunDir
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
    "eval": ("same_step_loss", "same_step_rows"),  # a measurement during training; training is unchanged
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
        d = RunDir(run_dir).trial(t)
        if d.state() in results.TERMINAL:
            if not same_trial_config(results.read_json(d.config), cfg, t):
                raise UserError(
                    f"holds trial {t.id} run with a different config; use another output_dir",
                    str(run_dir),
                )
            continue
        out.append(t)
    return out


class Progress:
    """Sweep progress (trials finished) and current-trial progress (steps, from steps.jsonl)."""

    def __init__(
        self, total: int, done: int, steps: dict[str, int], run_dir: Path, log: Callable[[str], None]
    ):
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
            n = RunDir(self.run_dir).trial(tid).steps_done()
            parts.append(f"{tid} step {n}/{self.steps.get(tid, '?')}")
        self.log("        running: " + "; ".join(parts))
