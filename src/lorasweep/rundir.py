"""The layout of a run directory, in one place: every other module asks ``RunDir`` / ``TrialDir``
for a path instead of joining names itself.

    <output_dir>/
      study.json            resolved config + schema version
      .lock                 held by the process writing into the directory (holds its pid)
      judge-cache.jsonl     every judge reply paid for, shared by the baseline and all trials
      baseline/             the untrained model: config.json, metrics.json, its evaluation files
      trials/<trial id>/    one trial (``TrialDir``)
      report/               report.md, summary.json, figures
      ray/                  Ray Tune's own experiment state (Ray backend only)
      trackers/             report.trackers' copies: tensorboard/<trial id>/, mlflow.db, wandb/

A trial directory (see ``results.py`` for what each file holds)::

    config.json status.json steps.jsonl metrics.json provenance.json error.txt
    adapter/ adapter_plain_lora/ eval/ (eval/validation/)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lorasweep import results

if TYPE_CHECKING:
    from lorasweep.sweep.grid import Trial


@dataclass(frozen=True)
class TrialDir:
    """One trial's directory."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def status(self) -> Path:
        return self.path / results.STATUS_FILE

    @property
    def steps(self) -> Path:
        return self.path / "steps.jsonl"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def provenance(self) -> Path:
        return self.path / "provenance.json"

    @property
    def error(self) -> Path:
        return self.path / "error.txt"

    @property
    def adapter(self) -> Path:
        """The trained adapter, valid on the base model it trained on (the residual base for PiSSA/MiLoRA)."""
        return self.path / "adapter"

    @property
    def plain_adapter(self) -> Path:
        """PiSSA/MiLoRA exported as a plain LoRA for the original base model."""
        return self.path / "adapter_plain_lora"

    @property
    def eval(self) -> Path:
        """The test rows' evaluation files."""
        return self.path / "eval"

    @property
    def validation_eval(self) -> Path:
        """The validation rows' evaluation files."""
        return self.eval / "validation"

    def state(self) -> str:
        return results.read_state(self.path)

    def steps_done(self) -> int:
        """Optimizer steps logged so far (lines of steps.jsonl)."""
        if not self.steps.exists():
            return 0
        with self.steps.open() as f:
            return sum(1 for _ in f)

    def stored_trial(self) -> Trial | None:
        """The grid point recorded in config.json, or None where there is none (yet)."""
        from lorasweep.sweep.grid import Trial

        if not self.config.exists():
            return None
        t = results.read_json(self.config).get("trial")
        return Trial(t["method"], t["batch_size"], t["lr"], t["seed"]) if isinstance(t, dict) else None


@dataclass(frozen=True)
class RunDir:
    """A study's output directory."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    @property
    def study(self) -> Path:
        return self.path / "study.json"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    @property
    def judge_cache(self) -> Path:
        return self.path / "judge-cache.jsonl"

    @property
    def baseline(self) -> Path:
        """The untrained model's folder; its evaluation files sit directly in it."""
        return self.path / "baseline"

    @property
    def baseline_config(self) -> Path:
        return self.baseline / "config.json"

    @property
    def baseline_metrics(self) -> Path:
        return self.baseline / "metrics.json"

    @property
    def baseline_validation(self) -> Path:
        return self.baseline / "validation"

    @property
    def trials(self) -> Path:
        return self.path / "trials"

    @property
    def report(self) -> Path:
        return self.path / "report"

    @property
    def ray(self) -> Path:
        return self.path / "ray"

    @property
    def trackers(self) -> Path:
        """Where ``report.trackers`` write (``trackers.py``): one run per trial."""
        return self.path / "trackers"

    def trial(self, trial: Trial | str) -> TrialDir:
        """The directory of ``trial`` (a grid point or its id)."""
        return TrialDir(self.trials / (trial if isinstance(trial, str) else trial.id))

    def trial_dirs(self) -> list[TrialDir]:
        """Every trial directory that has a config.json, in name order."""
        if not self.trials.is_dir():
            return []
        found = (TrialDir(d) for d in sorted(self.trials.iterdir()) if d.is_dir())
        return [d for d in found if d.config.exists()]

    def existing_trials(self) -> list[Trial]:
        """Every trial with a directory (and config) here."""
        return [t for d in self.trial_dirs() if (t := d.stored_trial()) is not None]
