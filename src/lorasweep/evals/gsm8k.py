"""GSM8K answer extraction and scoring: named protocols, side by side (docs/method.md, Evaluation protocols).

- ``strict``   lm-evaluation-harness ``strict-match``: the first ``#### N``.
- ``flexible`` lm-evaluation-harness ``flexible-extract``: the last number anywhere in the text.
- ``paper``    MetaMath/PiSSA: the first number after the last "The answer is: "; commas stripped,
               fractions allowed, compared as numbers after rounding.
Every function here is pure; tests/evals/test_gsm8k.py is the table of cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_PAPER_NUM = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:/[0-9][0-9,]*)?")
PAPER_MARKER = "The answer is: "


def to_number(text: str | None) -> float | None:
    """'1,234' -> 1234.0, '$18.' -> 18.0, '3/4' -> 0.75; None when it is not a number."""
    if text is None:
        return None
    t = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        return float(Fraction(t)) if "/" in t else float(t)
    except (ValueError, ZeroDivisionError):
        return None


def extract_strict(completion: str) -> str | None:
    m = _STRICT.search(completion)
    return m.group(1) if m else None


def extract_flexible(completion: str) -> str | None:
    matches = _FLEXIBLE.findall(completion)
    for a, b in reversed(matches):
        candidate = a or b
        if to_number(candidate) is not None:
            return candidate
    return None


def extract_paper(completion: str) -> str | None:
    if PAPER_MARKER not in completion:
        return None
    m = _PAPER_NUM.search(completion.rsplit(PAPER_MARKER, 1)[1])
    return m.group(0) if m else None


PROTOCOLS = {"strict": extract_strict, "flexible": extract_flexible, "paper": extract_paper}


def reference_value(answer: str) -> float:
    """The gold number of a GSM8K ``answer`` field (text after the last '####')."""
    if not isinstance(answer, str):
        raise ValueError(f"GSM8K 'answer' must be a string, got {type(answer).__name__}")
    value = to_number(answer.rsplit("####", 1)[-1])
    if value is None:
        raise ValueError(f"GSM8K answer has no '#### N': {answer[-60:]!r}")
    return value


def is_correct(extracted: str | None, gold: float, protocol: str) -> bool:
    value = to_number(extracted)
    if value is None:
        return False
    if protocol == "paper":  # MetaMath's eval rounds the prediction before comparing
        return round(value) == round(gold) if abs(gold - round(gold)) < 1e-9 else abs(value - gold) < 1e-4
    return abs(value - gold) < 1e-4


def score_item(completion: str, gold: float) -> dict:
    out = {}
    for name, extract in PROTOCOLS.items():
        extracted = extract(completion)
        out[name] = {"extracted": extracted, "correct": is_correct(extracted, gold, name)}
    return out


def aggregate(items: list[dict]) -> dict[str, float]:
    n = len(items)
    return {name: sum(it["scores"][name]["correct"] for it in items) / n for name in PROTOCOLS}


@dataclass(frozen=True)
class Gsm8kEvaluator:
    """Exact-match accuracy on rows in GSM8K's schema (``question``, ``answer`` ending in ``#### N``)."""

    name: str = "gsm8k"

    def score(self, rows: list[dict], completions: list[str]) -> tuple[list[dict], dict]:
        items = []
        for i, (row, completion) in enumerate(zip(rows, completions, strict=True)):
            gold = reference_value(row["answer"])
            items.append(
                {"task_id": i, "gold": gold, "completion": completion, "scores": score_item(completion, gold)}
            )
        metrics: dict = aggregate(items)
        metrics["n"] = len(items)
        return items, metrics
