"""Table-driven MATH scoring: extraction protocols, Hendrycks' equivalence, HF math-verify."""

from __future__ import annotations

import sys

import pytest

from lorasweep.evals import math as m
from lorasweep.evals import registry

# --- extraction: completion -> (paper, boxed, minerva) ---------------------------------------------

EXTRACT_CASES = [
    ("so \\boxed{\\frac{1}{2}}.", None, "\\frac{1}{2}", None),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", None, "\\frac{\\sqrt{3}}{2}", None),  # nested braces kept
    ("first \\boxed{1}, then \\boxed{2}", None, "2", None),  # the last box wins
    ("$\\fbox{7}$", None, "7", None),
    ("\\boxed{3} then \\fbox{4}", None, "4", None),
    ("\\boxed{\\text{(A)}}", None, "\\text{(A)}", None),
    ("so $\\boxed 5$.", None, "5", None),  # lm-eval's space form
    ("\\boxed{3", None, None, None),  # unbalanced: no answer
    ("\\boxed{}", None, "", None),
    ("The answer is: 5.\nExtra text.", "5", None, None),
    ("The answer is: \\frac{1}{2}", "\\frac{1}{2}", None, None),
    ("The answer is: 4\nThe answer is: 7.", "7", None, None),  # the last marker wins
    ("The answer is: 3.5", "3.5", None, None),  # only ".\n" cuts, not a decimal point
    ("The answer is 5", None, None, None),  # no colon, no paper answer
    ("The answer is: \\boxed{9}", "\\boxed{9}", "9", None),
    ("Final Answer: The final answer is $5$. I hope it is correct.", None, None, "5"),
    ("Final Answer: The final answer is $\\boxed{x=3}$. I hope it is correct.", None, "x=3", "x=3"),
    ("Final Answer: The final answer is \\frac{1}{2}. I hope it is correct.", None, None, "\\frac{1}{2}"),
    ("Final Answer: The final answer is $(1,2]$. ", None, None, "(1,2]"),  # stop sequence cut off
    ("Final Answer: The final answer is 12", None, None, None),  # lm-eval's regex needs ". " before it
    ("Final Answer: The final answer is\n5. I hope it is correct.", None, None, None),  # no DOTALL
    ("I do not know.", None, None, None),
    ("", None, None, None),
]


@pytest.mark.parametrize(("completion", "paper", "boxed", "minerva"), EXTRACT_CASES)
def test_extraction(completion, paper, boxed, minerva):
    got = (m.extract_paper(completion), m.extract_boxed(completion), m.extract_minerva(completion))
    assert got == (paper, boxed, minerva)


# --- equivalence: (extracted, gold) -> (Hendrycks is_equiv, math_verify) -----------------------------

EQUIV_CASES = [
    ("0.5", "\\frac{1}{2}", True, True),  # Hendrycks special-cases exactly "0.5"
    (".5", "\\frac{1}{2}", True, True),  # leading "." gets a "0"
    ("0.25", "\\frac{1}{4}", False, True),  # ... and nothing else
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True, True),
    ("\\tfrac{3}{4}", "\\frac{3}{4}", True, True),
    ("\\frac12", "\\frac{1}{2}", True, True),
    ("\\frac1{72}", "\\frac{1}{72}", True, True),
    ("1/2", "\\frac{1}{2}", True, True),
    ("-1/2", "-\\frac{1}{2}", False, True),  # a/b -> \frac{-1}{2}, not -\frac{1}{2}
    ("5\\text{ cm}", "5", True, True),
    ("5\\text{cm}", "5", False, True),  # units only recognised after "\text{ "
    ("90^\\circ", "90", True, True),
    ("90^{\\circ}", "90", True, True),
    ("\\$5", "5", True, True),
    ("10\\%", "10", True, True),
    ("-3", "-3", True, True),
    ("-3", "3", False, False),
    ("x = 3", "3", True, True),
    ("xy = 3", "3", False, True),  # Hendrycks drops only a <=2-char left side; math-verify takes the rhs
    ("(1,2]", "(1,2]", True, True),
    ("\\left( 1, 2 \\right]", "(1,2]", True, True),
    ("[1,2)", "(1,2]", False, False),
    ("\\sqrt2", "\\sqrt{2}", True, True),
    ("2\\sqrt{2}", "\\sqrt{8}", False, True),
    ("\\text{(A)}", "\\text{(A)}", True, True),
    ("\\text{(B)}", "\\text{(A)}", False, False),
    ("3", "3.0", False, True),
    ("\\frac{2}{4}", "\\frac{1}{2}", False, True),
    ("1,000", "1000", False, True),
    ("", "3", False, False),
]


@pytest.mark.parametrize(("extracted", "gold", "hendrycks", "verify"), EQUIV_CASES)
def test_hendrycks_equiv(extracted, gold, hendrycks, verify):
    assert m.is_equiv(extracted, gold) is hendrycks


@pytest.mark.parametrize(("extracted", "gold", "hendrycks", "verify"), EQUIV_CASES)
def test_math_verify_equiv(extracted, gold, hendrycks, verify):
    pytest.importorskip("math_verify")
    assert m.math_verify_equiv(extracted, gold) is verify


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("\\left(\\dfrac{1}{2}\\right)", "(\\frac{1}{2})"),
        ("k = \\frac12", "\\frac{1}{2}"),
        ("\\sqrt3 + 1", "\\sqrt{3}+1"),
        ("\\sqrt32", "\\sqrt{3}2"),  # one character only, as published
        ("\\frac{72}1", "\\frac{72}1"),
        ("\\frac1", "\\frac1"),  # too short to fix: left as it was
        ("3/4", "\\frac{3}{4}"),
        ("03/4", "03/4"),  # a/b only for canonically written integers
        ("50\\%", "50"),
        ("{.3}", "{0.3}"),
        ("", ""),
    ],
)
def test_strip_string(raw, normalised):
    assert m.strip_string(raw) == normalised


def test_is_equiv_compares_raw_where_it_cannot_normalise():
    two_units = "5\\text{ cm}\\text{ m}"  # the published code asserts a single "\text{ "
    assert m.is_equiv(two_units, two_units)
    assert not m.is_equiv(two_units, "5")
    assert m.is_equiv("2\\sqrt", "2\\sqrt")
    assert m.is_equiv(None, None) and not m.is_equiv(None, "3") and not m.is_equiv("3", None)


# --- scoring a completion against a MATH solution -----------------------------------------------------

SOLUTION_HALF = "Divide both sides: $x = \\dfrac{1}{2}$, so the answer is $\\boxed{\\frac{1}{2}}$."

SCORE_CASES = [
    # completion, paper, boxed, minerva, math_verify
    ("so $\\boxed{\\frac{1}{2}}$", False, True, False, True),
    ("The answer is: 0.5", True, False, False, True),
    ("The answer is: 1/2.", True, False, False, True),
    ("Final Answer: The final answer is $\\dfrac{1}{2}$. I hope it is correct.", False, False, True, True),
    ("\\boxed{\\frac{1}{2}} and later \\boxed{3}", False, False, False, False),
    ("The answer is: 0.50", False, False, False, True),
    ("The half is 1/2", False, False, False, True),  # only math_verify reads bare text
    ("I cannot solve this.", False, False, False, False),
    ("", False, False, False, False),
]


@pytest.mark.parametrize(("completion", "paper", "boxed", "minerva", "verify"), SCORE_CASES)
def test_score_item(completion, paper, boxed, minerva, verify):
    pytest.importorskip("math_verify")
    scores = m.score_item(completion, SOLUTION_HALF)
    assert set(scores) == set(m.PROTOCOLS)
    got = tuple(scores[p]["correct"] for p in ("paper", "boxed", "minerva", "math_verify"))
    assert got == (paper, boxed, minerva, verify)


def test_score_item_records_what_each_protocol_extracted():
    pytest.importorskip("math_verify")
    scores = m.score_item("The answer is: 2\nso \\boxed{x = 2}", "thus $\\boxed{2}$")
    assert {p: s["extracted"] for p, s in scores.items()} == {
        "paper": "2\nso \\boxed{x = 2}",
        "boxed": "x = 2",
        "minerva": None,
        "math_verify": "x = 2",
    }
    assert [s["correct"] for s in scores.values()] == [False, True, False, True]


def test_gold_answer_is_the_last_box():
    assert m.gold_answer("First $\\boxed{1}$, finally $\\boxed{\\{1, 2\\}}$.") == "\\{1, 2\\}"
    with pytest.raises(ValueError, match="no \\\\boxed"):
        m.gold_answer("The answer is 4.")


def test_math_verify_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)
    with pytest.raises(ImportError, match="pip install 'math-verify=="):
        m.score_math_verify("\\boxed{1}", "1")


# --- the evaluator --------------------------------------------------------------------------------------

ROWS = [
    {"problem": "What is $1/2$ as a fraction?", "solution": SOLUTION_HALF, "level": "Level 1"},
    {"problem": "Compute $2+2$.", "solution": "$2+2=\\boxed{4}$", "level": "Level 1"},
    {"problem": "Which choice?", "solution": "It is $\\boxed{\\text{(C)}}$.", "level": "Level 2"},
    {"problem": "Angle?", "solution": "The angle is $\\boxed{90^\\circ}$.", "level": "Level 3"},
]
COMPLETIONS = [
    "The answer is: 0.5",
    "Final Answer: The final answer is $4$. I hope it is correct.",
    "so \\boxed{\\text{(C)}}",
    "The answer is: 45",
]


def test_evaluator_scores_rows_in_the_math_schema():
    pytest.importorskip("math_verify")
    task = registry.get("math")  # the path a trial takes: prompt and scorer from the registry
    assert task.prompt(ROWS[1]) == "Compute $2+2$."
    items, metrics = task.scorer.score(ROWS, COMPLETIONS)
    assert [it["task_id"] for it in items] == [0, 1, 2, 3]
    assert [it["gold"] for it in items] == ["\\frac{1}{2}", "4", "\\text{(C)}", "90^\\circ"]
    assert items[1]["completion"] == COMPLETIONS[1]
    assert metrics == {"paper": 0.25, "boxed": 0.25, "minerva": 0.25, "math_verify": 0.75, "n": 4}
    assert set(task.metrics) <= set(metrics)  # the names the report reads are the names produced


def test_evaluator_rejects_mismatched_lengths_and_empty_input():
    pytest.importorskip("math_verify")
    with pytest.raises(ValueError):
        m.MathEvaluator().score(ROWS, COMPLETIONS[:2])
    with pytest.raises(ValueError, match="no scored MATH items"):
        m.MathEvaluator().score([], [])
