"""MATH answer extraction and scoring: named protocols, side by side (docs/method.md, Evaluation protocols).

Protocols (each extracts an answer string, ``None`` when there is none, and judges it):

- ``paper``       MetaMath/PiSSA ``eval_math.py``: the text after the last "The answer is: ", cut at the
                  first ".\\n", one trailing "." dropped; no marker means no answer.
- ``boxed``       Hendrycks et al. 2021 (hendrycks/math): the content of the last ``\\boxed{...}`` or
                  ``\\fbox{...}``, braces balanced (also lm-eval's ``\\boxed 5`` form).
- ``minerva``     lm-evaluation-harness ``minerva_math``: "Final Answer: The final answer is X. I hope it
                  is correct." (lm-eval's regex); ``$...$`` and a whole-answer ``\\boxed{}`` are unwrapped.
- ``math_verify`` HF ``math-verify``: its ``parse`` picks the answer (boxed first, then final-answer
                  phrases, then the last expression) and its ``verify`` judges equivalence symbolically.

The first three are judged with Hendrycks' ``is_equiv``: both strings pass ``strip_string`` and must then
be identical. ``strip_string`` reproduces the published algorithm (modeling/math_equivalence.py), quirks
included, because the paper numbers were computed with it: ``0.5`` becomes ``\\frac{1}{2}`` (but ``0.25``
stays ``0.25``), a ``k = `` prefix is dropped only when the left side has at most two characters, and a
string it cannot normalise (two ``\\text{ `` units, a bare ``\\sqrt`` at the end) is compared raw.

The gold answer of a MATH row is the last ``\\boxed{}`` of its ``solution``. Every function here is pure;
tests/evals/test_math.py is the table of cases. ``math-verify`` is imported lazily: without it, the
``math_verify`` protocol (and so ``score_item``) raises an ImportError that says how to install it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

PAPER_MARKER = "The answer is: "
MATH_VERIFY_REQUIREMENT = "math-verify==0.9.0"
# lm-eval minerva_math get_unnormalized_answer, verbatim: unescaped dots, no DOTALL (the answer is one line).
_MINERVA = re.compile(r"Final Answer: The final answer is(.*?). I hope it is correct.")
_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)")
_DELIMITED = re.compile(r"\$(.*?)\$", re.DOTALL)


class _Unnormalisable(ValueError):
    """Hendrycks' normaliser hit an assert or an index error; ``is_equiv`` then compares raw strings."""


# --- extraction -------------------------------------------------------------------------------------


def _braced(text: str, start: int) -> str | None:
    """The content of the brace group opening at ``text[start]``, or None when it never closes."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}``; nested braces kept, unclosed -> None."""
    matches = list(_BOX_COMMAND.finditer(text))
    if not matches:
        return None
    rest = matches[-1].end()
    if text.startswith("{", rest):
        return _braced(text, rest)
    if text.startswith(" ", rest):  # lm-eval's "\boxed 5$" form: up to the closing dollar or line end
        return re.split(r"[$\n]", text[rest + 1 :], maxsplit=1)[0].strip() or None
    return None


def extract_boxed(completion: str) -> str | None:
    return last_boxed(completion)


def extract_paper(completion: str) -> str | None:
    if PAPER_MARKER not in completion:
        return None
    answer = completion.rsplit(PAPER_MARKER, 1)[1].split(".\n")[0].strip()
    return answer[:-1].strip() if answer.endswith(".") else answer


def extract_minerva(completion: str) -> str | None:
    m = _MINERVA.search(completion + "I hope it is correct.")
    if m is None:
        return None
    answer = m.group(1).strip()
    delimited = _DELIMITED.search(answer)  # Minerva's normaliser keeps what sits between the dollars
    if delimited:
        answer = delimited.group(1).strip()
    if _BOX_COMMAND.match(answer) and (boxed := last_boxed(answer)) is not None:
        answer = boxed
    return answer


def gold_answer(solution: str) -> str:
    """The reference answer of a MATH ``solution`` field: its last ``\\boxed{}`` content."""
    answer = last_boxed(solution)
    if answer is None:
        raise ValueError(f"MATH solution has no \\boxed{{}} answer: {solution[-60:]!r}")
    return answer


# --- Hendrycks' normalisation -------------------------------------------------------------------------


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{72}`` -> ``\\frac{1}{72}``; ``\\frac{72}1`` is left alone."""
    head, *pieces = s.split("\\frac")
    out = [head]
    for piece in pieces:
        if not piece:
            raise _Unnormalisable(s)
        if piece[0] == "{":
            out.append(piece)
        elif len(piece) < 2:
            return s
        elif piece[1] == "{":
            out.append("{" + piece[0] + "}" + piece[1:])
        else:
            out.append("{" + piece[0] + "}{" + piece[1] + "}" + piece[2:])
    return "\\frac".join(out)


def _fix_a_slash_b(s: str) -> str:
    """``3/4`` -> ``\\frac{3}{4}``, only for two plain integers written canonically."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def _remove_right_units(s: str) -> str:
    """``5\\text{ cm}`` -> ``5``: in MATH, ``\\text{ `` with a space only ever introduces units."""
    if "\\text{ " not in s:
        return s
    parts = s.split("\\text{ ")
    if len(parts) != 2:
        raise _Unnormalisable(s)
    return parts[0]


def _fix_sqrt(s: str) -> str:
    """``\\sqrt3`` -> ``\\sqrt{3}`` (one character only: ``\\sqrt32`` -> ``\\sqrt{3}2``)."""
    head, *pieces = s.split("\\sqrt")
    out = [head]
    for piece in pieces:
        if not piece:
            raise _Unnormalisable(s)
        out.append(piece if piece[0] == "{" else "{" + piece[0] + "}" + piece[1:])
    return "\\sqrt".join(out)


def strip_string(s: str) -> str:
    """Hendrycks' MATH normalisation; raises ValueError where the published code would raise."""
    for old, new in (
        ("\n", ""),
        ("\\!", ""),
        ("\\\\", "\\"),
        ("tfrac", "frac"),
        ("dfrac", "frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\$", ""),
    ):
        s = s.replace(old, new)
    s = _remove_right_units(s)
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:  # "k = 3" -> "3", but "xy + z = 3" is kept
        s = sides[1]
    s = _fix_fracs(_fix_sqrt(s).replace(" ", ""))
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def is_equiv(a: str | None, b: str | None) -> bool:
    """Hendrycks' equivalence: equal after ``strip_string`` (raw equality where it cannot normalise)."""
    if a is None or b is None:
        return a is None and b is None
    try:
        return strip_string(a) == strip_string(b)
    except _Unnormalisable:
        return a == b


# --- HF math-verify ----------------------------------------------------------------------------------


def _math_verify():
    try:
        from math_verify import parse, verify
    except ImportError as e:
        raise ImportError(
            f"the 'math_verify' MATH protocol needs HF math-verify: pip install '{MATH_VERIFY_REQUIREMENT}'"
        ) from e
    return parse, verify


def score_math_verify(completion: str, gold: str) -> dict:
    """math-verify on the whole completion: ``parse`` picks the answer, ``verify`` judges it.

    Correctness comes from the parsed completion, not from re-reading ``extracted``: re-parsing the
    string it reports can differ (``1/2.`` read as a plain expression is 1/2, as LaTeX it is 1).
    """
    parse, verify = _math_verify()
    parsed = parse(completion)  # signal-based timeout: call from the main thread
    if not parsed:
        return {"extracted": None, "correct": False}
    extracted = parsed[-1] if isinstance(parsed[-1], str) else str(parsed[0])
    return {"extracted": extracted, "correct": verify(parse(f"${gold}$"), parsed)}  # gold first


def math_verify_equiv(answer: str | None, gold: str) -> bool:
    """math-verify on two answer strings, both read as inline LaTeX (the protocol parses completions)."""
    if answer is None:
        return False
    parse, verify = _math_verify()
    return verify(parse(f"${gold}$"), parse(f"${answer}$"))  # gold first: verify is not symmetric


# --- scoring ------------------------------------------------------------------------------------------


def _score_hendrycks(extract: Callable[[str], str | None], completion: str, gold: str) -> dict:
    extracted = extract(completion)
    return {"extracted": extracted, "correct": extracted is not None and is_equiv(extracted, gold)}


PROTOCOLS: dict[str, Callable[[str, str], dict]] = {
    "paper": partial(_score_hendrycks, extract_paper),
    "boxed": partial(_score_hendrycks, extract_boxed),
    "minerva": partial(_score_hendrycks, extract_minerva),
    "math_verify": score_math_verify,
}


def score_item(completion: str, solution: str) -> dict:
    """Per protocol, ``{"extracted": str | None, "correct": bool}`` against the solution's last box."""
    gold = gold_answer(solution)
    return {name: score(completion, gold) for name, score in PROTOCOLS.items()}


def aggregate(items: list[dict]) -> dict[str, float]:
    if not items:
        raise ValueError("no scored MATH items to aggregate")
    n = len(items)
    return {name: sum(it["scores"][name]["correct"] for it in items) / n for name in PROTOCOLS}


@dataclass(frozen=True)
class MathEvaluator:
    """Accuracy on MATH-format rows (``problem``, ``solution`` whose last ``\\boxed{}`` is the answer)."""

    name: str = "math"
    prompt_field: str = "problem"

    def score(self, rows: list[dict], completions: list[str]) -> tuple[list[dict], dict]:
        items = []
        for i, (row, completion) in enumerate(zip(rows, completions, strict=True)):
            items.append(
                {
                    "task_id": i,
                    "gold": gold_answer(row["solution"]),
                    "completion": completion,
                    "scores": score_item(completion, row["solution"]),
                }
            )
        metrics = aggregate(items)
        metrics["n"] = len(items)
        return items, metrics
