"""Table-driven GSM8K extraction: strict (#### N), flexible (last number), paper ("The answer is: ")."""

from __future__ import annotations

import pytest

from lorasweep.evals import gsm8k

CASES = [
    # completion, gold, strict, flexible, paper
    ("3 + 5 = 8\n#### 8", 8, True, True, False),
    ("#### 1,234", 1234, True, True, False),
    ("The answer is: 1,234", 1234, False, True, True),
    ("The answer is: $18", 18, False, True, True),
    ("The answer is: 3/4", 0.75, False, False, True),
    ("so -5 degrees\n#### -5", -5, True, True, False),
    ("The answer is: -12.", -12, False, True, True),
    ("#### 7.0", 7, True, True, False),
    ("#### 8\nQuestion: 9 + 9 = 18", 8, True, False, False),  # strict: first ####; flexible: last number
    ("nothing here", 3, False, False, False),
    ("", 0, False, False, False),
    ("#### eight", 8, False, False, False),
    ("The answer is: 42\nThe answer is: 43", 43, False, True, True),  # last marker wins
    ("12 apples, 30 pens", 30, False, True, False),
    ("It costs $1,000.", 1000, False, True, False),
    ("The answer is: 7 apples", 7, False, True, True),
    ("The answer is: 7.4", 7, False, False, True),  # only the paper protocol rounds
    ("#### 72\n#### 73", 72, True, False, False),
    ("#### 0", 0, True, True, False),
    ("#### -0.5", -0.5, True, True, False),
    ("The answer is: 1/2", 0.5, False, False, True),
    ("The answer is: 2,500,000", 2_500_000, False, True, True),
    ("The answer is: -3/4", -0.75, False, False, True),
    ("#### 1,000,000", 1_000_000, True, True, False),
    ("The total is 15 dollars.\n#### 15", 15, True, True, False),
    ("3 + 4 = 7\n7 * 2 = 14\n#### 14", 14, True, True, False),
    ("#### 14.00", 14, True, True, False),
    ("The answer is 42.", 42, False, True, False),  # no colon: not the paper's marker
    ("The answer is: ", 5, False, False, False),
    ("#### $5", 5, False, True, False),  # strict regex does not allow '$'
    ("He has 5 apples. The answer is: 5 apples.", 5, False, True, True),
    ("#### 8\n", 8, True, True, False),
    ("answer: 3.14159", 3.14159, False, True, False),
]


@pytest.mark.parametrize(("completion", "gold", "strict", "flexible", "paper"), CASES)
def test_protocols(completion, gold, strict, flexible, paper):
    scores = gsm8k.score_item(completion, gold)
    assert (scores["strict"]["correct"], scores["flexible"]["correct"], scores["paper"]["correct"]) == (
        strict,
        flexible,
        paper,
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,234", 1234.0),
        ("$18.", 18.0),
        ("3/4", 0.75),
        ("-7", -7.0),
        ("abc", None),
        ("1/0", None),
        (None, None),
    ],
)
def test_to_number(text, value):
    assert gsm8k.to_number(text) == value


def test_reference_value_reads_the_last_marker():
    assert gsm8k.reference_value("Natalia sold 48/2 = 24 clips.\n#### 72") == 72
    with pytest.raises(ValueError, match="no '#### N'"):
        gsm8k.reference_value("no marker")


def test_aggregate_is_accuracy_per_protocol():
    items = [{"scores": gsm8k.score_item(c, 8)} for c in ("#### 8", "The answer is: 8", "7")]
    assert gsm8k.aggregate(items) == {"strict": 1 / 3, "flexible": 2 / 3, "paper": 1 / 3}
