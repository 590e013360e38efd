"""Evaluation tasks by registry name: how to prompt a row, how to score completions, where data lives.

Adding a benchmark = one scorer module + one entry here + its table of tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lorasweep.evals.gsm8k import Gsm8kEvaluator
from lorasweep.evals.math import MathEvaluator


@dataclass(frozen=True)
class Task:
    name: str
    scorer: object  # .score(rows, completions) -> (items, metrics)
    prompt: Callable[[dict], str]  # the instruction text the prompt template wraps
    reference: Callable[[dict], str] | None  # reference response, for held-out loss (None: no loss)
    default_data: str | None  # data source when eval.data names none
    metrics: tuple[str, ...]  # metric names, primary first


EVALUATORS: dict[str, Task] = {
    "gsm8k": Task(
        "gsm8k",
        Gsm8kEvaluator(),
        prompt=lambda row: row["question"],
        reference=lambda row: row["answer"],
        default_data="builtin:tinyworld",
        metrics=("strict", "flexible", "paper"),
    ),
    "math": Task(
        "math",
        MathEvaluator(),
        prompt=lambda row: row["problem"],
        reference=lambda row: row["solution"],
        default_data=None,  # MATH is not available offline: a file or hub id (hendrycks MATH, MATH-500)
        metrics=("paper", "boxed", "minerva", "math_verify"),
    ),
}


def get(name: str) -> Task:
    try:
        return EVALUATORS[name]
    except KeyError:
        raise ValueError(f"unknown evaluator {name!r}; valid: {', '.join(EVALUATORS)}") from None


def data_source(name: str, configured: dict[str, str]) -> str:
    """The data source of task ``name``: the configured one, else the task's built-in default."""
    source = configured.get(name) or get(name).default_data
    if source is None:
        raise ValueError(f"task {name!r} has no built-in data; set eval.data.{name}")
    return source
