"""``lorasweep status``: a trial left ``running`` by a runner that is gone reads ``interrupted``; one whose
runner holds the run directory (in this process or another) reads ``running``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lorasweep import results
from lorasweep.cli import main
from lorasweep.config import load_config, to_dict
from lorasweep.locks import RunLock, runner_alive
from lorasweep.rundir import RunDir
from lorasweep.sweep.grid import Trial
from lorasweep.sweep.resume import trial_config

SRC = Path(__file__).resolve().parents[1] / "src"
ONE_TRIAL = [
    "report.curvature_examples=0",
    "train.lr_search=grid",
    "adapter.methods=[lora]",
    "train.batch_sizes=[4]",
    "train.learning_rates=[5e-3]",
    "train.seeds=[0]",
    "report.reference_batch_size=null",
    "report.reference_lr=null",
]
TID = "lora-b4-lr0.005-s0"
HOLDER = """
import sys, time
from lorasweep.locks import RunLock
RunLock(sys.argv[1]).__enter__()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory whose one trial's status says ``running`` after 2 logged steps (no training)."""
    cfg = load_config("configs/demo.yaml", [f"output_dir={tmp_path / 'run'}", *ONE_TRIAL])
    rd = RunDir(cfg.output_dir)
    results.atomic_write_json(rd.study, {"schema": results.SCHEMA_VERSION, "config": to_dict(cfg)})
    trial = Trial("lora", 4, 5e-3, 0)
    d = rd.trial(trial)
    d.path.mkdir(parents=True)
    results.atomic_write_json(d.config, trial_config(cfg, trial))
    results.write_status(d.path, "running", started=0)
    d.steps.write_text('{"step": 1}\n{"step": 2}\n')
    return rd.path


def status(run_dir: Path, capsys) -> tuple[str, str]:
    """(summary line, the trial's line) of ``lorasweep status``."""
    assert main(["status", str(run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    return lines[0], next(line for line in lines if line.startswith(TID))


def test_running_without_a_runner_is_interrupted(run_dir, capsys):
    summary, line = status(run_dir, capsys)
    assert "running: 0" in summary and "interrupted: 1" in summary
    assert line.split()[1] == "interrupted" and "step 2" in line and "re-run to resume" in line
    assert results.read_state(run_dir / "trials" / TID) == "running"  # status only reads


def test_running_while_this_process_holds_the_run(run_dir, capsys):
    with RunLock(run_dir):
        summary, line = status(run_dir, capsys)
    assert "running: 1" in summary and "interrupted: 0" in summary
    assert line.split()[1:] == ["running", "step", "2"]


def test_a_killed_runner_process_reads_as_gone(run_dir, capsys):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert runner_alive(run_dir)
        assert "running: 1" in status(run_dir, capsys)[0]
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        assert not runner_alive(run_dir)  # the kernel dropped its lock; its pid is still in the file
        assert (run_dir / ".lock").read_text().strip() == str(holder.pid)
        assert "interrupted: 1" in status(run_dir, capsys)[0]
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_second_writer_is_told_the_holders_pid(run_dir):
    from lorasweep.errors import UserError

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(UserError, match=rf"another sweep \(pid {holder.pid}\) is writing"),
            RunLock(run_dir),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
