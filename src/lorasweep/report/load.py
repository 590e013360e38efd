"""Read a run directory into flat rows (one per trial); the report needs nothing else."""

from __future__ import annotations

from pathlib import Path

from lorasweep import results
from lorasweep.errors import UserError
from lorasweep.jsonl import read_jsonl
from lorasweep.rundir import RunDir


def unit(metric: str) -> str:
    """Display unit: accuracies as %, judge scores (MT-Bench, 1-10) as they are."""
    from lorasweep.evals.registry import EVALUATORS

    task = EVALUATORS.get(metric.split(".")[0])
    return "score" if task is not None and not task.percent else "%"


def _display(value: float | None, metric: str) -> float | None:
    return None if value is None else value * (100.0 if unit(metric) == "%" else 1.0)


def metric_value(metrics: dict, metric: str) -> float | None:
    """``"gsm8k.strict"`` -> metrics["gsm8k"]["strict"]."""
    node = metrics
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def load_trials(run_dir: Path, metric: str, selection: str | None = None) -> list[dict]:
    """One row per trial: test ``metric`` (reported) and validation ``selection`` metric (chooses;
    default: the same metric)."""
    selection = selection or metric
    rd = RunDir(run_dir)
    if not rd.trials.is_dir():
        raise UserError("not a lorasweep run directory (no trials/ folder)", str(run_dir))
    rows = []
    for d in rd.trial_dirs():
        state = d.state()
        trial = results.read_json(d.config)["trial"]
        metrics = results.read_json(d.metrics) if d.metrics.exists() else {}
        status = results.read_json(d.status) if d.status.exists() else {}
        task = metric.split(".")[0]
        rows.append(
            {
                **trial,
                "id": d.id,
                "state": state,
                "value": _display(metric_value(metrics, metric), metric) if state == "completed" else None,
                "heldout_loss": metric_value(metrics, f"{task}.heldout_loss"),
                "val_value": _display(metric_value(metrics, f"validation.{selection}"), selection)
                if state == "completed"
                else None,
                "val_loss": metric_value(metrics, f"validation.{selection.split('.')[0]}.heldout_loss"),
                "steps": status.get("steps"),
                "tokens": metrics.get("train", {}).get("input_tokens"),
                "diverged_at": status.get("diverged_at"),
                "seconds": status.get("seconds"),
                "train": metrics.get("train", {}),  # steps, tokens, timings, noise scale (report/insight.py)
            }
        )
    return sorted(rows, key=_study_order(run_dir))


def _study_order(run_dir: Path):
    """Rows in the study's method order (as configured), then batch size, LR, seed."""
    methods: list[str] = []
    if RunDir(run_dir).study.exists():
        config = results.read_json(RunDir(run_dir).study).get("config", {})
        methods = config.get("adapter", {}).get("methods", [])
    rank = {m: i for i, m in enumerate(methods)}
    return lambda r: (rank.get(r["method"], len(rank)), r["method"], r["batch_size"], r["lr"], r["seed"])


def load_baseline(run_dir: Path, metric: str) -> float | None:
    path = RunDir(run_dir).baseline_metrics
    return _display(metric_value(results.read_json(path), metric), metric) if path.exists() else None


def item_scores(eval_dir: Path, metric: str) -> list[float] | None:
    """Per-item scores of ``metric`` in display units, in item order, from an evaluation folder (a
    trial's ``eval/`` holds the test rows' files); None where the task writes no per-item scores."""
    task, name = metric.split(".", 1)
    path = eval_dir / f"{task}.scored.jsonl"
    if not path.exists():
        return None
    scale = 100.0 if unit(metric) == "%" else 1.0
    out = []
    for item in read_jsonl(path):
        scores = item.get("scores")
        if isinstance(scores, dict) and isinstance(scores.get(name), dict) and "correct" in scores[name]:
            out.append(scale * float(scores[name]["correct"]))
        elif name == "pass@1" and "passed" in item:
            out.append(scale * float(item["passed"]))
        else:
            return None
    return out


def load_baseline_items(run_dir: Path, metric: str) -> list[float] | None:
    return item_scores(RunDir(run_dir).baseline, metric)  # the baseline's test files sit in baseline/
