"""Kill the real runner (and Ctrl-C it) mid-sweep; re-running finishes without re-running finished trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = [
    "report.curvature_examples=0",  # the demo computes λmax first; tests of other things skip it
    "adapter.methods=[lora,pissa]",
    "train.batch_sizes=[4,8]",
    "train.lr_search=grid",
    "report.reference_batch_size=null",
    "report.reference_lr=null",
    "eval.selection.num_examples=8",
    "train.learning_rates=[5e-3,1e-2]",
    "train.seeds=[0]",
    "data.num_train=96",
    "eval.num_examples=8",
    "eval.max_new_tokens=8",
]


def start(out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lorasweep.cli", "run", "configs/demo.yaml", f"output_dir={out}", *ARGS]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def completed(out: Path) -> dict[str, int]:
    stamps = {}
    for status in out.glob("trials/*/status.json"):
        if json.loads(status.read_text())["state"] == "completed":
            stamps[status.parent.name] = status.stat().st_mtime_ns
    return stamps


def wait_for_first_completion(proc: subprocess.Popen, out: Path, timeout: float = 240) -> None:
    t0 = time.time()
    while not completed(out):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < timeout
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.parametrize("how", ["sigkill-runner", "ctrl-c"])
def test_interrupted_sweep_resumes_without_rerunning(tmp_path, how):
    out = tmp_path / "run"
    proc = start(out)
    wait_for_first_completion(proc, out)
    workers = children(proc.pid)
    if how == "sigkill-runner":
        proc.kill()  # the runner only: its workers must notice and stop on their own
    else:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    proc.wait(timeout=60)
    deadline = time.time() + 10
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "a worker outlived the runner"
    before = completed(out)
    assert before
    proc = start(out)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log
    # (a CI run once missed this line after Ctrl-C with no way to tell why: show the log's head)
    expected = f"8 trials: {len(before)} already finished, {8 - len(before)} to run"
    assert expected in log, (expected, sorted(before), log[:3000])
    after = completed(out)
    assert len(after) == 8
    assert all(after[t] == stamp for t, stamp in before.items())  # finished trials were not re-run
    assert (out / "report" / "report.md").exists()
