"""report.trackers: a trial's step records and final metrics reach the experiment trackers (read back
from TensorBoard's event files), trackers do not change a trial's identity, and a tracker whose
package is missing is a config error at preflight (exit 2)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from lorasweep import results, trackers
from lorasweep.cli import main
from lorasweep.config import TRACKER_NAMES, load_config
from lorasweep.rundir import RunDir
from lorasweep.sweep.grid import Trial
from lorasweep.sweep.resume import same_trial_config
from tests.conftest import TINY_STUDY

TINY = [*TINY_STUDY, "train.batch_sizes=[4]"]
TRIAL = Trial("lora", 4, 5e-3, 0)


def argv(out: Path, *extra: str) -> list[str]:
    return ["run", "configs/demo.yaml", f"output_dir={out}", *TINY, *extra]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'lorasweep[trackers]')")
    out = tmp_path_factory.mktemp("trackers") / "run"
    assert main(argv(out, "report.trackers=[tensorboard]")) == 0
    return out


def _scalars(run_dir: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(RunDir(run_dir).trackers / "tensorboard" / TRIAL.id))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_every_step_of_steps_jsonl(run_dir):
    steps = [json.loads(line) for line in RunDir(run_dir).trial(TRIAL).steps.read_text().splitlines()]
    scalars = _scalars(run_dir)
    assert len(steps) == 4  # 16 rows / batch 4
    loss = scalars["train/loss"]
    assert [e.step for e in loss] == [r["step"] for r in steps]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in steps], rel=1e-6)  # float32
    assert [e.value for e in scalars["train/lr"]] == pytest.approx([r["lr"] for r in steps], rel=1e-6)
    assert [e.value for e in scalars["train/tokens"]] == [r["tokens"] for r in steps]
    probed = [r for r in steps if "val_loss" in r]  # the same-step view: after steps 1, 2, 4
    assert [e.step for e in scalars["train/val_loss"]] == [r["step"] for r in probed] == [1, 2, 4]


def test_tensorboard_holds_the_trials_final_metrics(run_dir):
    metrics = results.read_json(RunDir(run_dir).trial(TRIAL).metrics)
    scalars = _scalars(run_dir)
    for tag, value in [
        ("test/gsm8k/strict", metrics["gsm8k"]["strict"]),
        ("validation/gsm8k/strict", metrics["validation"]["gsm8k"]["strict"]),
        ("summary/final_loss", metrics["train"]["final_loss"]),
        ("summary/steps", 4),
    ]:
        (event,) = scalars[tag]
        assert (event.step, event.value) == (4, pytest.approx(value, rel=1e-6)), tag


def test_trackers_do_not_change_a_trials_identity(run_dir):
    stored = results.read_json(RunDir(run_dir).trial(TRIAL).config)
    without = load_config("configs/demo.yaml", [f"output_dir={run_dir}", *TINY])
    assert without.report.trackers == []
    assert same_trial_config(stored, without, TRIAL)


def test_a_missing_tracker_package_is_a_config_error(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    absent = {"tensorboard"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a)
    )
    out = tmp_path / "run"
    assert main(argv(out, "report.trackers=[tensorboard]")) == 2
    err = capsys.readouterr().err
    assert "report.trackers[0]" in err and "pip install 'lorasweep[trackers]'" in err
    assert not out.exists()  # nothing written


def test_an_unknown_tracker_names_the_key(tmp_path, capsys):
    assert main(argv(tmp_path / "run", "report.trackers=[tensorbord]")) == 2
    err = capsys.readouterr().err
    assert "report.trackers[0]" in err and "did you mean 'tensorboard'" in err


def test_config_names_agree_with_the_registry():
    assert tuple(trackers.TRACKERS) == TRACKER_NAMES


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"step": 1, "loss": 2.5, "lr": 1e-3, "grad_norm": 0.5, "tokens": 40, "seconds": 0.1},
         {"train/loss": 2.5, "train/lr": 1e-3, "train/grad_norm": 0.5, "train/tokens": 40.0}),
        ({"step": 2, "loss": 2.0, "b_simple": None, "val_loss": 1.5, "noise_g2": 3.0},
         {"train/loss": 2.0, "train/val_loss": 1.5}),
    ],
)  # fmt: skip
def test_step_values(record, expected):
    assert trackers.step_values(record) == expected


def test_result_values_flatten_numbers_only():
    metrics = {
        "gsm8k": {"strict": 12.5, "n": 4, "ci": {"low": 1.0, "high": 30.0}},
        "validation": {"gsm8k": {"strict": 25.0}},
        "train": {"steps": 4, "device": "cpu", "noise_scale": {"estimable": False, "b_simple": None}},
    }
    assert trackers.result_values(metrics) == {
        "test/gsm8k/strict": 12.5,
        "test/gsm8k/n": 4.0,
        "test/gsm8k/ci/low": 1.0,
        "test/gsm8k/ci/high": 30.0,
        "validation/gsm8k/strict": 25.0,
        "summary/steps": 4.0,
    }


def test_mlflow_local_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install mlflow)")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with trackers.trial_run(["mlflow"], "study", TRIAL.id, TRIAL.as_dict(), tmp_path) as tracked:
        for step, loss in enumerate([2.0, 1.5, 1.25], start=1):
            tracked.log_step({"step": step, "loss": loss, "lr": 1e-3})
        tracked.log_result({"gsm8k": {"strict": 50.0}})
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("study").experiment_id])
    assert run.info.run_name == TRIAL.id
    assert [m.value for m in client.get_metric_history(run.info.run_id, "train/loss")] == [2.0, 1.5, 1.25]
    assert run.data.metrics["test/gsm8k/strict"] == 50.0
    assert run.data.params["method"] == "lora"


def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb not installed (pip install wandb)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    with trackers.trial_run(["wandb"], "study", TRIAL.id, TRIAL.as_dict(), tmp_path) as tracked:
        tracked.log_step({"step": 1, "loss": 2.0})
        tracked.log_result({"gsm8k": {"strict": 50.0}})
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_packed_trials_reach_the_trackers_too(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install 'lorasweep[trackers]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    extra = ["sweep.pack=auto", "train.learning_rates=[5e-3,1e-2]", "report.trackers=[tensorboard]"]
    assert main(argv(out, *extra)) == 0
    for lr in (5e-3, 1e-2):
        trial_dir = RunDir(out).trial(Trial("lora", 4, lr, 0))
        assert "packed" in results.read_json(trial_dir.provenance)  # trained in one packed group
        acc = EventAccumulator(str(RunDir(out).trackers / "tensorboard" / trial_dir.id))
        acc.Reload()
        steps = [json.loads(line) for line in trial_dir.steps.read_text().splitlines()]
        losses = [e.value for e in acc.Scalars("train/loss")]
        assert losses == pytest.approx([r["loss"] for r in steps], rel=1e-6)
        metric = results.read_json(trial_dir.metrics)["gsm8k"]["strict"]
        assert acc.Scalars("test/gsm8k/strict")[0].value == pytest.approx(metric, rel=1e-6)
