"""The judge-rating parser: a table of real-looking judge replies -> (score, status)."""

from __future__ import annotations

import pytest

from lorasweep.evals.judge.parse import OK, OUT_OF_RANGE, UNPARSEABLE, parse_rating

CASES = [
    # judge reply, score, status
    ("[[7]]", 7.0, OK),
    ("[[7.5]]", 7.5, OK),
    ("The answer is clear and correct. Rating: [[10]]", 10.0, OK),
    ("Rating: [[1]]", 1.0, OK),
    ("Rating: [8]", 8.0, OK),  # single brackets: the fallback
    ("Rating: [[ 6 ]]", 6.0, OK),  # spaces inside the brackets
    ("**Rating: [[9]]**", 9.0, OK),  # markdown around it
    ("Rating: [[8/10]]", 8.0, OK),  # '/10' suffix accepted
    ("First I thought [[4]], but on reflection: Rating: [[6]]", 6.0, OK),  # several: the last wins
    ("Citing [2] and [3]. Rating: [[5]]", 5.0, OK),  # a double rating wins over single brackets
    ("Points [2], then [9]", 9.0, OK),  # single-bracket fallback: the last one
    ("Explanation...\n\nRating: [[3.25]]\n", 3.25, OK),
    ("Rating: [[0]]", None, OUT_OF_RANGE),
    ("Rating: [[11]]", None, OUT_OF_RANGE),
    ("Rating: [[-2]]", None, OUT_OF_RANGE),
    ("Rating: [[10.5]]", None, OUT_OF_RANGE),
    ("Rating: [[5]] ... final: [[12]]", None, OUT_OF_RANGE),  # the verdict is invalid: no fallback to 5
    ("Rating: [12]", None, OUT_OF_RANGE),
    ("The response is good. Rating: 8/10", None, UNPARSEABLE),  # no brackets
    ('Rate using "[[rating]]"', None, UNPARSEABLE),  # the format's placeholder
    ("", None, UNPARSEABLE),
    (None, None, UNPARSEABLE),
    ("Rating: [[seven]]", None, UNPARSEABLE),
    ("Rating: [[]]", None, UNPARSEABLE),
]


@pytest.mark.parametrize(("text", "score", "status"), CASES)
def test_parse_rating(text, score, status):
    rating = parse_rating(text)
    assert (rating.score, rating.status) == (score, status)


def test_never_zero():
    """Nothing unparseable or invalid is ever scored (MT-Bench: 'no score', never 0)."""
    for text, _, status in CASES:
        if status != OK:
            assert parse_rating(text).score is None


def test_out_of_range_keeps_raw_value():
    assert parse_rating("Rating: [[11]]").raw == "11"
