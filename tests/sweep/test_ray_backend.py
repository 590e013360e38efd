"""The Ray backend on a real local Ray cluster (2 CPUs): the same per-trial results as the local
backend, and an interrupted Ray sweep resumes (Tuner.restore) without re-running finished trials."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")

from lorasweep.config import load_config  # noqa: E402
from lorasweep.study import trials_of  # noqa: E402
from lorasweep.sweep import local  # noqa: E402
from lorasweep.sweep.ray_backend import run_sweep_ray  # noqa: E402

pytestmark = pytest.mark.ray

MICRO = [
    "report.curvature_examples=0",  # the demo computes λmax first; tests of other things skip it
    "adapter.methods=[lora,milora]",
    "train.batch_sizes=[4,16]",
    "train.lr_search=grid",
    "report.reference_batch_size=null",
    "report.reference_lr=null",
    "eval.selection.num_examples=8",
    "train.learning_rates=[5e-3]",
    "train.seeds=[0]",
    "data.num_train=64",
    "eval.num_examples=8",
    "eval.max_new_tokens=8",
    "sweep.workers=2",  # a local Ray cluster of 2 CPUs: 2 trials at once, as the local backend
    "sweep.threads_per_worker=1",
]
IDS = ["lora-b4-lr0.005-s0", "lora-b16-lr0.005-s0", "milora-b4-lr0.005-s0", "milora-b16-lr0.005-s0"]
# facts of the machine and the moment, not of the result (the tree may be committed between runs)
VOLATILE = {
    "seconds",
    "started",
    "tokens_per_second",
    "timings",
    "hardware",
    "peak_memory",
    "git_sha",
    "git_dirty",
}

DRIVER = """
import sys
from lorasweep.config import load_config
from lorasweep.study import trials_of
from lorasweep.sweep.ray_backend import run_sweep_ray

cfg = load_config("configs/demo.yaml", sys.argv[1:])
run_sweep_ray(cfg, trials_of(cfg), cfg.output_dir, log=lambda m: print(m, flush=True))
"""


def config(out: Path):
    return load_config("configs/demo.yaml", [f"output_dir={out}", *MICRO])


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    cfg = config(out)
    local.run_sweep(cfg, trials_of(cfg), out, {}, log=lambda m: None)
    return out


def same(a, b, where: str) -> None:
    """Equal JSON-like values; floats within 1e-6 relative; wall-clock keys ignored."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a.keys() - VOLATILE:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if where.endswith("target_modules"):  # PEFT writes a set: its order follows the hash seed
            a, b = sorted(a), sorted(b)
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_trial(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    files = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()), a.name
    for name in files:
        pa, pb = a / name, b / name
        if name.endswith(".json"):
            same(json.loads(pa.read_text()), json.loads(pb.read_text()), f"{a.name}/{name}")
        elif name.endswith(".jsonl"):
            rows = [[json.loads(x) for x in p.read_text().splitlines()] for p in (pa, pb)]
            same(*rows, f"{a.name}/{name}")
        elif name.endswith(".safetensors"):
            ta, tb = load_file(pa), load_file(pb)
            assert ta.keys() == tb.keys(), name
            for k in ta:
                assert (ta[k] - tb[k]).abs().max().item() <= 1e-6, f"{a.name}/{name}:{k}"
        else:
            assert pa.read_bytes() == pb.read_bytes(), f"{a.name}/{name}"
    trial = json.loads((a / "config.json").read_text())["trial"]
    assert trial == json.loads((b / "config.json").read_text())["trial"]  # same seed, LR, batch, method


def completed(out: Path) -> dict[str, tuple[int, str]]:
    done = {}
    for status in out.glob("trials/*/status.json"):
        text = status.read_text()
        if json.loads(text)["state"] == "completed":
            done[status.parent.name] = (status.stat().st_mtime_ns, text)
    return done


def test_ray_sweep_equals_local_sweep(tmp_path, local_run):
    out = tmp_path / "run"
    cfg = config(out)
    lines: list[str] = []
    run_sweep_ray(cfg, trials_of(cfg), out, log=lines.append)
    assert "ray: started a local cluster (2 CPUs, 0 GPUs)" in lines, lines
    assert not ray.is_initialized()  # the cluster it started is shut down
    assert sorted(p.name for p in (out / "trials").iterdir()) == sorted(IDS)
    for tid in IDS:
        assert_same_trial(out / "trials" / tid, local_run / "trials" / tid)
    assert sum(" completed " in line for line in lines) == 4, lines
    # Ray's own storage: one Tune experiment, one folder per trial named by the trial id
    (experiment,) = [p for p in (out / "ray").iterdir() if p.is_dir()]
    assert {p.name for p in experiment.iterdir() if p.is_dir()} == set(IDS)
    # nothing left to do: no cluster is started
    again: list[str] = []
    run_sweep_ray(cfg, trials_of(cfg), out, log=again.append)
    assert again[0].startswith("4 trials: 4 already finished, 0 to run") and len(again) == 1


PACKED = [
    "adapter.methods=[lora]",
    "train.batch_sizes=[4]",
    "train.learning_rates=[2e-3,5e-3]",
    "train.seeds=[0,1]",
    "train.max_micro_batch=64",
    "sweep.pack=auto",
    "sweep.workers=1",  # one unit at a time: the four trials stay one packed group
]


def test_ray_packs_trials_as_the_local_backend_does(tmp_path):
    """sweep.pack: auto on Ray: a packed group is one Ray trial (named by its first member and how many
    more), and every member's directory equals the one the local backend's packed group writes."""
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    local_cfg = load_config("configs/demo.yaml", [f"output_dir={local_out}", *MICRO, *PACKED])
    local.run_sweep(local_cfg, trials_of(local_cfg), local_out, {}, log=lambda m: None)
    cfg = load_config("configs/demo.yaml", [f"output_dir={ray_out}", *MICRO, *PACKED])
    lines: list[str] = []
    run_sweep_ray(cfg, trials_of(cfg), ray_out, log=lines.append)
    ids = sorted(t.id for t in trials_of(cfg))
    assert len(ids) == 4 and sorted(p.name for p in (ray_out / "trials").iterdir()) == ids
    for tid in ids:
        prov = json.loads((ray_out / "trials" / tid / "provenance.json").read_text())
        assert sorted(prov["packed"]["group"]) == ids  # trained in one pass on a Ray worker
        assert_same_trial(ray_out / "trials" / tid, local_out / "trials" / tid)
    (experiment,) = [p for p in (ray_out / "ray").iterdir() if p.is_dir()]
    assert [p.name for p in experiment.iterdir() if p.is_dir()] == ["lora-b4-lr0.002-s0+3"]


def tree(root: int) -> dict[int, str]:
    """The processes under ``root`` (pid -> command line), itself included."""
    rows = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    children: dict[int, list[tuple[int, str]]] = {}
    for row in rows.splitlines():
        pid, ppid, cmd = (row.split(None, 2) + [""])[:3]
        children.setdefault(int(ppid), []).append((int(pid), cmd))
    found, todo = {root: "driver"}, [root]
    while todo:
        for pid, cmd in children.get(todo.pop(), []):
            found[pid] = cmd
            todo.append(pid)
    return found


def alive(pids) -> list[int]:
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    return [p for p in pids if running(p)]


def interrupt_after_first_completion(out: Path, log_path: Path, how: str) -> str:
    """Run the Ray sweep in a driver process; stop it once a trial has completed; its log.

    Ctrl-C: Tune stops the trials, saves its state and the driver shuts its cluster down.  SIGKILL:
    Ray's saved state may lag behind the trial directories; the trial processes stop on their own
    (their raylet dies with the driver) and the watchdog (``orphans.reaped``) ends the rest: no Ray
    process the driver started outlives it either way."""
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            # one trial at a time, so the stop lands while the next (b=4, the longest) is running
            [sys.executable, "-c", DRIVER, f"output_dir={out}", *MICRO, "sweep.workers=1"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    ray_procs: dict[int, str] = {}
    try:
        t0 = time.time()
        while not completed(out):
            assert proc.poll() is None, log_path.read_text()
            assert time.time() - t0 < 240, log_path.read_text()
            time.sleep(0.2)
        ray_procs = tree(proc.pid)
        assert any("ImplicitFunc" in cmd for cmd in ray_procs.values()), ray_procs  # a trial is running
        os.kill(proc.pid, signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        proc.wait(timeout=120)
        must_stop = list(ray_procs)
        deadline = time.time() + 30
        while alive(must_stop) and time.time() < deadline:
            time.sleep(0.5)
        assert not alive(must_stop), {p: ray_procs[p] for p in alive(must_stop)}
    finally:
        for pid in alive(ray_procs):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log_path.read_text()


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_interrupted_ray_sweep_resumes_without_rerunning(tmp_path, local_run, how):
    out = tmp_path / "run"
    log = interrupt_after_first_completion(out, tmp_path / "driver.log", how)
    if how == "ctrl-c":
        assert "KeyboardInterrupt" in log, log
    before = completed(out)
    assert 1 <= len(before) < 4, log

    cfg = config(out)  # resumed on 2 CPUs: the number of workers is not part of a trial's result
    lines: list[str] = []
    run_sweep_ray(cfg, trials_of(cfg), out, log=lines.append)
    assert lines[0].startswith(f"4 trials: {len(before)} already finished, {4 - len(before)} to run"), lines
    assert any(line.endswith("(Tuner.restore)") for line in lines), lines
    after = completed(out)
    assert sorted(after) == sorted(IDS)
    for tid, stamp in before.items():
        assert after[tid] == stamp, f"{tid} was re-run after it completed"
    for tid in IDS:
        assert_same_trial(out / "trials" / tid, local_run / "trials" / tid)


def test_unreachable_address_fails_within_30_s_naming_the_key(tmp_path, capsys):
    from lorasweep.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once this block ends
    out = tmp_path / "run"
    t0 = time.monotonic()
    code = main(["run", "configs/demo.yaml", f"output_dir={out}", *MICRO, "sweep.backend=ray",
                 f"sweep.ray_address=127.0.0.1:{port}"])  # fmt: skip
    assert code == 2 and time.monotonic() - t0 < 30
    assert f"sweep.ray_address: cannot reach the Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_settings_from_config_and_errors_name_the_key(tmp_path):
    from lorasweep.errors import UserError
    from lorasweep.sweep.ray_backend import ray_settings

    cfg = config(tmp_path)
    s = ray_settings(cfg)
    assert (s.address, s.cpus_per_trial, s.gpus_per_trial, s.threads, s.local_cpus) == (None, 1.0, 0.0, 1, 2)
    cfg.sweep.gpus_per_trial = 0.25  # four trials share a GPU
    cfg.sweep.cpus_per_trial = 0.5
    s = ray_settings(cfg)
    assert (s.gpus_per_trial, s.local_cpus) == (0.25, 1)
    cfg.sweep.gpus_per_trial = 1.5
    with pytest.raises(UserError, match="sweep.gpus_per_trial"):
        ray_settings(cfg)


def test_importing_lorasweep_does_not_import_ray():
    code = "import sys, lorasweep.study, lorasweep.sweep.ray_backend; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
