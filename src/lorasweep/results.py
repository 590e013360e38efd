"""Results on disk: atomic writes, the per-trial record, and provenance.

Every file is written to a temporary sibling, fsynced and renamed, so a reader (or a restarted sweep)
sees either the old file or the new one, never half of one.  A trial directory holds:

  config.json     the resolved study config + this trial's (method, batch size, LR, seed)
  status.json     {"state": pending|running|completed|diverged|failed, ...}; written last on success
  steps.jsonl     one line per optimizer step (step, loss, lr, grad_norm, tokens, seconds)
  metrics.json    evaluation and training metrics
  provenance.json git sha + dirty flag, package versions, hardware, timings
  eval/           per-task generations and scores (JSONL stages)
  adapter/        the trained adapter in PEFT format
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lorasweep.errors import UserError
from lorasweep.jsonl import read_jsonl as read_jsonl  # the one reader; kept importable from here

SCHEMA_VERSION = 1
STATES = ("pending", "running", "completed", "diverged", "failed")
TERMINAL = ("completed", "diverged")  # a resumed sweep never re-runs these
STATUS_FILE = "status.json"


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"corrupt JSON ({e.msg})", f"{path}:{e.lineno}") from None


def read_state(trial_dir: Path) -> str:
    path = trial_dir / STATUS_FILE
    if not path.exists():
        return "pending"
    status = read_json(path)
    if status.get("schema") != SCHEMA_VERSION:
        raise UserError(
            f"written by another lorasweep version (schema {status.get('schema')}, this is {SCHEMA_VERSION})",
            str(path),
        )
    return status["state"]


def write_status(trial_dir: Path, state: str, **extra: Any) -> None:
    assert state in STATES, state
    atomic_write_json(trial_dir / STATUS_FILE, {"schema": SCHEMA_VERSION, "state": state, **extra})


# ---------------------------------------------------------------- provenance


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict:
    """Where a result came from: code version, packages, hardware."""
    import importlib.metadata as md

    import torch

    versions = {}
    for pkg in ("lorasweep", "torch", "transformers", "peft", "accelerate", "tokenizers", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "versions": versions,
        "python": platform.python_version(),
        "hardware": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
