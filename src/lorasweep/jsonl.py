"""The one JSONL reader: data files, evaluation stages, predictions, the judgment cache.

Blank lines are skipped; a line that is not JSON is a ``UserError`` naming ``file:line`` (or, with
``skip_invalid``, skipped: a line cut short by a crash in an append-only file).  ``.gz`` files are
read through gzip.  Writing is ``results.write_jsonl`` (atomic).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lorasweep.errors import UserError


def iter_jsonl(path: str | Path, skip_invalid: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every non-blank line, read lazily (stop early to read a prefix)."""
    path = Path(path)
    if not path.is_file():
        raise UserError("file not found", str(path))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                if skip_invalid:
                    continue
                raise UserError(f"invalid JSON ({e.msg})", f"{path}:{lineno}") from None
            yield lineno, value


def read_jsonl(path: str | Path) -> list:
    """Every value of a JSONL file, in order."""
    return [value for _, value in iter_jsonl(path)]
