"""Kill test: SIGKILL the runner and its workers at 10 random moments, restarting each time.

At the end every trial is completed exactly once (a completed trial's status never changes again),
and the results are bit-identical to an uninterrupted run with the same seeds, packed groups included.  The default grid is small; set
LORASWEEP_KILL_GRID=demo to run it on the full demo-sized sweep (108 trials, ~30 min), and
LORASWEEP_KILL_REFERENCE=runs/demo to compare with an existing uninterrupted run of the same config
instead of running one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SMALL = [
    "report.curvature_examples=0",
    "adapter.methods=[lora,pissa,milora]",
    "train.batch_sizes=[4,16]",
    "train.lr_search=grid",
    "report.reference_batch_size=null",
    "report.reference_lr=null",
    "eval.selection.num_examples=8",
    "train.learning_rates=[5e-3]",
    "train.seeds=[0,1]",
    "data.num_train=64",
    "eval.num_examples=8",
    "eval.max_new_tokens=8",
    # sweep.pack: auto (the default): at B=4 each method's two seeds train as one packed group, at
    # B=16 (a micro-batch of 16 fills train.max_micro_batch) every trial alone.  A group killed
    # part-way re-runs whole, its finished members kept as written.
]
DEMO = os.environ.get("LORASWEEP_KILL_GRID") == "demo"
GRID = [] if DEMO else SMALL
KILL_AFTER_S = (5.0, 90.0) if DEMO else (1.0, 10.0)  # demo trials take 11-17 s each


def cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "lorasweep.cli", "run", "configs/demo.yaml", f"output_dir={out}", *GRID]


def completed(out: Path) -> dict[str, str]:
    done = {}
    for status in out.glob("trials/*/status.json"):
        text = status.read_text()
        if json.loads(text)["state"] == "completed":
            done[status.parent.name] = text
    return done


def metrics(out: Path) -> dict[str, tuple]:
    """Per trial: scores, final loss, the per-step losses and the adapter's bytes (bit for bit)."""
    res = {}
    for m in out.glob("trials/*/metrics.json"):
        d = json.loads(m.read_text())
        losses = [json.loads(line)["loss"] for line in (m.parent / "steps.jsonl").read_text().splitlines()]
        adapter = hashlib.sha256(
            (m.parent / "adapter" / "adapter_model.safetensors").read_bytes()
        ).hexdigest()
        res[m.parent.name] = (
            d["gsm8k"]["strict"],
            d["gsm8k"]["flexible"],
            d["train"]["final_loss"],
            losses,
            adapter,
        )
    return res


@pytest.mark.slow
def test_ten_random_kills_then_identical_results(tmp_path):
    rng = random.Random(20261129)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    seen: dict[str, str] = {}
    kills = 0
    while kills < 10:
        proc = subprocess.Popen(
            cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        time.sleep(rng.uniform(*KILL_AFTER_S))
        if proc.poll() is not None:
            break  # finished before this kill
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers
        proc.wait()
        kills += 1
        now = completed(killed)
        for tid, text in seen.items():
            assert now.get(tid) == text, f"{tid} was re-run after it completed"
        seen.update(now)
    final = subprocess.run(cmd(killed), capture_output=True, text=True, timeout=3600)
    assert final.returncode == 0, final.stdout + final.stderr
    done = completed(killed)
    for tid, text in seen.items():
        assert done[tid] == text, f"{tid} was re-run after it completed"
    if os.environ.get("LORASWEEP_KILL_REFERENCE"):
        clean = Path(os.environ["LORASWEEP_KILL_REFERENCE"])
    else:
        ref = subprocess.run(cmd(clean), capture_output=True, text=True, timeout=3600)
        assert ref.returncode == 0, ref.stderr
    assert set(done) == set(completed(clean))
    a, b = metrics(killed), metrics(clean)
    assert a.keys() == b.keys()
    for tid in a:
        assert a[tid] == b[tid], tid  # bit-identical: scores, losses, adapter bytes
    assert kills == 10, f"the sweep finished after {kills} kills; make the grid larger"
    print(f"{kills} kills, {len(seen)} trials had completed before the last kill")
