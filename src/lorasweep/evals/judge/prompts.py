"""Judge prompts for MT-Bench single-answer grading (1-10), written for lorasweep.

They follow the published MT-Bench rubric (Zheng et al. 2023, "Judging LLM-as-a-Judge", single-answer
grading): an impartial judge; general questions weighed on helpfulness, relevance, accuracy, depth,
creativity and detail; math, reasoning and coding graded against a reference answer with the judge
asked to compare and correct; the explanation first, then the rating as ``[[N]]``; on turn 2 the judge
sees the whole conversation and grades the second reply only.  The wording is ours, so scores are
comparable within lorasweep runs of the same ``PROMPT_VERSION``; bump it whenever a word changes (it is
part of every cache key, so changed prompts are never answered from old judgments).
"""

from __future__ import annotations

from lorasweep.data.mtbench import REFERENCE_CATEGORIES as REFERENCE_CATEGORIES
from lorasweep.data.mtbench import uses_reference

PROMPT_VERSION = "lorasweep-mtbench-single-1"

SYSTEM = "You are a careful, impartial evaluator of AI assistant responses."

_GENERAL = (
    "Evaluate how good the AI assistant's reply is{focus}. Take into account how helpful, relevant, "
    "accurate, deep, creative and detailed it is. Start with a short explanation of your assessment, "
    "staying as objective as possible. Then give a rating from 1 to 10, written exactly as "
    '"[[rating]]", for example "Rating: [[6]]".'
)
_REFERENCED = (
    "Evaluate how good the AI assistant's reply is{focus}, judging above all whether it is correct and "
    "helpful. A reference answer is provided. Start by comparing the assistant's reply with the "
    "reference, pointing out and correcting any mistakes, and stay as objective as possible. Then give "
    'a rating from 1 to 10, written exactly as "[[rating]]", for example "Rating: [[6]]".'
)
_FOCUS = {1: " to the user's question below", 2: " to the user's SECOND question in the conversation below"}


def build_messages(
    turns: list[str], answers: list[str], turn: int, category: str, reference: list[str] | None
) -> list[dict]:
    """Chat messages asking for the rating of the assistant's answer to ``turns[turn - 1]``.

    ``reference`` (one reference answer per turn) is shown for math/reasoning/coding only.
    """
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2, got {turn}")
    referenced = uses_reference(category) and bool(reference)
    instructions = (_REFERENCED if referenced else _GENERAL).format(focus=_FOCUS[turn])
    parts = [instructions, ""]
    if turn == 1:
        parts += _block("question", turns[0])
        if referenced:
            parts += _block("reference answer", reference[0])
        parts += _block("assistant's reply", answers[0])
    else:
        if referenced:
            parts += _block("reference conversation", _transcript(turns, reference))
        parts += _block("conversation with the assistant", _transcript(turns, answers))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(parts).rstrip()}]


def _block(name: str, text: str) -> list[str]:
    return [f"=== BEGIN {name.upper()} ===", text, f"=== END {name.upper()} ===", ""]


def _transcript(turns: list[str], answers: list[str]) -> str:
    lines = []
    for i, (q, a) in enumerate(zip(turns, answers, strict=True), 1):
        lines += [f"--- User (question {i}) ---", q, f"--- Assistant (reply {i}) ---", a, ""]
    return "\n".join(lines).rstrip()
