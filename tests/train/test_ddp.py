"""Data parallelism is exact: 2 real processes (gloo) x micro 2 x accumulation 2 == one process, batch 8.

docs/method.md, Batch semantics: effective batch = micro x accumulation x world, and the loss is normalised by
the label tokens of the whole step across processes.  ``ddp_worker.py`` is launched with ``torchrun``
(two CPU processes, one thread each); the same functions run here with world 1 as the reference.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from lorasweep.train import batching
from tests.train import ddp_worker
from tests.train.test_accumulation import lora_model, rel

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ddp_worker.py ARGS``; the whole process group is
    killed on timeout, so no worker outlives the test."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.Popen(
        [*cmd, str(WORKER), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, f"torchrun exited {proc.returncode}\n{out[-4000:]}\n{err[-4000:]}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def two_process(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ddp")
    torchrun("step", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["rank0.pt"]  # rank 1 wrote nothing
    return torch.load(out / "rank0.pt")


@pytest.fixture(scope="module")
def one_process() -> dict:
    torch.set_num_threads(1)
    acc = Accelerator(cpu=True)
    split = batching.derive_split(8, 8, acc.num_processes)
    assert (split.micro, split.accumulation, split.world) == (8, 1, 1)
    return {**ddp_worker.one_step(acc, split), **ddp_worker.five_steps(acc, split)}


def test_two_gloo_processes_with_micro2_accum2(two_process):
    assert two_process["world"] == 2 and two_process["backend"] == "gloo"
    assert two_process["split"] == "effective batch 8 = micro-batch 2 x accumulation 2 x world 2"


def test_same_gradients_as_one_process_with_batch8(two_process, one_process):
    assert two_process["tokens"] == one_process["tokens"]  # label tokens counted across processes
    assert abs(two_process["loss"] - one_process["loss"]) <= 1e-6 * abs(one_process["loss"])
    assert rel(two_process["grads"], one_process["grads"]) <= 1e-5
    assert two_process["rank_spread"]["grads"] == 0.0  # every rank steps with the same gradient


def test_same_loss_curve_over_five_steps(two_process, one_process):
    ddp, ref = two_process["losses"], one_process["losses"]
    assert len(ddp) == len(ref) == ddp_worker.STEPS
    assert max(abs(a - b) for a, b in zip(ddp, ref, strict=True)) <= 1e-4
    init = torch.cat([p.detach().flatten() for p in lora_model().parameters() if p.requires_grad])
    assert rel(one_process["weights"], init) > 1e-3  # the steps moved the adapter: not a trivial match
    assert two_process["step_tokens"] == one_process["step_tokens"]
    assert two_process["rank_spread"]["weights"] == 0.0
    assert rel(two_process["weights"], one_process["weights"]) <= 1e-4


OVERRIDES = [
    "data.num_train=32",
    "train.max_micro_batch=2",
    "eval.num_examples=8",
    "eval.max_new_tokens=8",
    "eval.batch_size=8",
]
OPTIONS = ["--method=lora", "--batch-size=8", "--lr=5e-3", "--seed=0"]


def test_lorasweep_train_on_two_processes_writes_from_rank0_only(tmp_path):
    out, audit = tmp_path / "run", tmp_path / "audit"
    args = ["configs/demo.yaml", f"output_dir={out}", *OVERRIDES, *OPTIONS]
    proc = torchrun("train", str(out), str(audit), *args)
    assert proc.stdout.count("effective batch 8 = micro-batch 2 x accumulation 2 x world 2") == 1
    d = out / "trials" / "lora-b8-lr0.005-s0"
    assert json.loads((d / "status.json").read_text())["state"] == "completed"
    train = json.loads((d / "metrics.json").read_text())["train"]
    assert train["split"] == {"micro": 2, "accumulation": 2, "world": 2}
    assert train["device"]["world_size"] == 2 and train["steps"] == 4
    assert len((d / "steps.jsonl").read_text().splitlines()) == 4
    ranks = {r: json.loads((audit / f"rank{r}.json").read_text()) for r in (0, 1)}
    assert ranks[0]["rc"] == ranks[1]["rc"] == 0
    assert any(p.endswith("steps.jsonl") for _, p in ranks[0]["touched"])
    assert ranks[1]["touched"] == []  # rank 1 never opened, created or removed anything in the run
