"""Experiment trackers: a trial's step records and final metrics also sent to TensorBoard, MLflow or
Weights & Biases (``report.trackers``), through accelerate's tracker classes (``accelerate.tracking``).

The trial directory stays the record the report reads; a tracker is a copy for browsing.  One tracker
run per trial, named by the trial id, its files under the run directory (``RunDir.trackers``):

- tensorboard: ``trackers/tensorboard/<trial id>/`` (event files);
- mlflow: a SQLite store ``trackers/mlflow.db`` (experiment = the study name), unless
  ``MLFLOW_TRACKING_URI`` names another store;
- wandb: ``trackers/wandb/`` (project = the study name); online or offline as ``WANDB_MODE`` says.

Per step: ``train/<key>`` for the step record's loss, lr, grad_norm, tokens, b_simple and val_loss
(the last two where present), at the optimizer step.  Per trial, at its last step: every number of
metrics.json, flattened to ``test/<task>/<metric>``, ``validation/<task>/<metric>`` and
``summary/<key>`` (the ``train`` record).  Trackers never change a trial's result (``report`` is not
part of a trial's identity, ``sweep/resume.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasweep.errors import ConfigError

STEP_KEYS = ("loss", "lr", "grad_norm", "tokens", "b_simple", "val_loss")


def _tensorboard(study: str, trial_id: str, root: Path) -> Any:
    from accelerate.tracking import TensorBoardTracker

    return TensorBoardTracker(trial_id, root / "tensorboard")


def _mlflow(study: str, trial_id: str, root: Path) -> Any:
    import os

    import mlflow
    from accelerate.tracking import MLflowTracker

    if "MLFLOW_TRACKING_URI" not in os.environ:  # a local store beside the results (MLflow 3's
        root.mkdir(parents=True, exist_ok=True)  # ./mlruns file store is deprecated: SQLite)
        mlflow.set_tracking_uri(f"sqlite:///{(root / 'mlflow.db').resolve()}")
    return MLflowTracker(experiment_name=study, run_name=trial_id)


def _wandb(study: str, trial_id: str, root: Path) -> Any:
    from accelerate.tracking import WandBTracker

    root.mkdir(parents=True, exist_ok=True)
    return WandBTracker(study, name=trial_id, dir=str(root))


@dataclass(frozen=True)
class TrackerKind:
    module: str  # the package it needs
    build: Callable[[str, str, Path], Any]  # (study name, trial id, RunDir.trackers) -> accelerate tracker


TRACKERS = {
    "tensorboard": TrackerKind("tensorboard", _tensorboard),
    "mlflow": TrackerKind("mlflow", _mlflow),
    "wandb": TrackerKind("wandb", _wandb),
}


def require(names: list[str]) -> None:
    """Every requested tracker's package is importable; else a config error naming the key and the
    pip extra (checked at preflight, before anything is written)."""
    for i, name in enumerate(names):
        module = TRACKERS[name].module
        if importlib.util.find_spec(module) is None:
            extra = "lorasweep[trackers]" if name == "tensorboard" else module
            raise ConfigError(
                f"tracker {name!r} needs the {module} package, which is not installed: "
                f"pip install '{extra}', or remove it from report.trackers",
                f"report.trackers[{i}]",
            )


def step_values(record: dict) -> dict[str, float]:
    """The tracked numbers of one step record (``train/<key>``); absent or null keys are left out."""
    return {f"train/{k}": float(record[k]) for k in STEP_KEYS if isinstance(record.get(k), int | float)}


def result_values(metrics: dict) -> dict[str, float]:
    """Every number of a trial's metrics.json, flattened: ``test/<task>/...``, ``validation/<task>/...``
    and ``summary/...`` (the ``train`` record).  Booleans, strings and nulls are left out."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[prefix] = float(value)

    for section, value in metrics.items():
        name = {"train": "summary", "validation": "validation"}.get(section, f"test/{section}")
        walk(name, value)
    return out


class Tracked:
    """A trial's open tracker runs (none: every call does nothing)."""

    def __init__(self, trackers: list[Any]):
        self.trackers = trackers
        self.step = 0

    def log_step(self, record: dict) -> None:
        self.step = int(record["step"])
        values = step_values(record)
        for t in self.trackers:
            t.log(values, step=self.step)

    def log_result(self, metrics: dict) -> None:
        values = result_values(metrics)
        for t in self.trackers:
            t.log(values, step=self.step)


@contextlib.contextmanager
def trial_run(
    names: list[str], study: str, trial_id: str, hparams: dict, root: Path | None
) -> Iterator[Tracked]:
    """One tracker run per requested tracker for a trial, finished on exit (also on an error).
    ``root`` None (a non-main process, or no trackers asked): nothing is opened."""
    opened: list[Any] = []
    try:
        if root is not None:
            for name in names:
                tracker = TRACKERS[name].build(study, trial_id, root)
                tracker.start()
                opened.append(tracker)
                tracker.store_init_configuration(hparams)
        yield Tracked(opened)
    finally:
        for tracker in opened:
            tracker.finish()


def replay(
    names: list[str], study: str, trial_id: str, hparams: dict, root: Path, steps: Path, metrics: Path
) -> None:
    """Send a finished trial's steps.jsonl and metrics.json to the trackers (packed training writes
    several trials at once; they are sent one by one when each is written)."""
    from lorasweep import jsonl, results

    with trial_run(names, study, trial_id, hparams, root) as tracked:
        for record in jsonl.read_jsonl(steps) if steps.exists() else []:
            tracked.log_step(record)
        if metrics.exists():
            tracked.log_result(results.read_json(metrics))
