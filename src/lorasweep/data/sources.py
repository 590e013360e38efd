"""Where rows come from: the built-in TinyWorld generator or a local JSONL file.

A row is ``{"question": ..., "answer": ...}`` (GSM8K's schema: the answer ends in ``#### N``); Alpaca
rows (``instruction``/``input``/``output``) are accepted and mapped onto it.  Malformed rows raise
:class:`UserError` naming the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path

from lorasweep.data import tinyworld
from lorasweep.errors import UserError

# Built-in split sizes: the train split is larger than any demo budget; the test split is held out.
BUILTIN_TRAIN, BUILTIN_TEST = 20_000, 1_000


def load_rows(source: str, split: str, limit: int) -> list[dict]:
    """The first ``limit`` rows of ``source`` (``builtin:tinyworld`` or a .jsonl path)."""
    if source == "builtin:tinyworld":
        train, test = _tinyworld_split()
        problems = train if split == "train" else test
        if limit > len(problems):
            raise UserError(f"asks for {limit} rows; builtin:tinyworld has {len(problems)} {split} rows")
        return [{"question": p.question, "answer": p.answer} for p in problems[:limit]]
    path = Path(source)
    if path.suffix == ".jsonl" and path.exists():
        return _read_jsonl(path, limit)
    raise UserError(f"data source not found: {source!r} (use builtin:tinyworld or a .jsonl file)")


_SPLIT_CACHE: dict = {}


def _tinyworld_split():
    if "tw" not in _SPLIT_CACHE:
        _SPLIT_CACHE["tw"] = tinyworld.split(BUILTIN_TRAIN, BUILTIN_TEST)
    return _SPLIT_CACHE["tw"]


def _read_jsonl(path: Path, limit: int) -> list[dict]:
    rows = []
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"invalid JSON ({e.msg})", f"{path}:{lineno}") from None
            rows.append(_normalise(row, f"{path}:{lineno}"))
    if len(rows) < limit:
        raise UserError(f"asks for {limit} rows; the file has {len(rows)}", str(path))
    return rows


def _normalise(row: object, where: str) -> dict:
    if not isinstance(row, dict):
        raise UserError("each line must be a JSON object", where)
    if "instruction" in row and "output" in row:
        q = row["instruction"] + (f"\n{row['input']}" if row.get("input") else "")
        row = {"question": q, "answer": row["output"]}
    for key in ("question", "answer"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise UserError(f"missing or empty string field {key!r}", where)
    return {"question": row["question"], "answer": row["answer"]}
