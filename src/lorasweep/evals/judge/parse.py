"""Read the 1-10 rating out of a judge's reply (pure; table-tested in tests/evals/test_judge_parse.py).

MT-Bench's single-answer protocol asks the judge for ``[[N]]``; its reference code falls back to ``[N]``
when the double brackets are missing and records "no score" otherwise.  Here:

- ``[[N]]`` (N an integer or decimal, spaces allowed, an optional ``/10`` suffix) wins over ``[N]``;
- when several ratings are present, the LAST one counts: the rubric asks for the explanation first
  and the rating after it, so earlier brackets are quotes or drafts (FastChat takes the first match;
  the two agree whenever the judge gives one rating, which is nearly always);
- a rating outside 1-10 is ``out_of_range`` and no other bracket is tried in its place: the judge's
  verdict is invalid, and guessing another number would hide that;
- no rating at all is ``unparseable``.
Neither of the last two ever becomes a score (never 0): they are counted, not averaged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LOW, HIGH = 1.0, 10.0
_NUMBER = r"\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*10\s*)?"
DOUBLE = re.compile(r"\[\[" + _NUMBER + r"\]\]")
SINGLE = re.compile(r"(?<!\[)\[" + _NUMBER + r"\](?!\])")

OK, UNPARSEABLE, OUT_OF_RANGE = "ok", "unparseable", "out_of_range"


@dataclass(frozen=True)
class Rating:
    score: float | None  # None unless status is "ok"
    status: str  # ok | unparseable | out_of_range
    raw: str | None = None  # the number as the judge wrote it (kept for out-of-range audits)


def parse_rating(text: str | None) -> Rating:
    """The judge's rating of one answer; see the module docstring for the rules."""
    if not text:
        return Rating(None, UNPARSEABLE)
    matches = DOUBLE.findall(text) or SINGLE.findall(text)
    if not matches:
        return Rating(None, UNPARSEABLE)
    raw = matches[-1]
    value = float(raw)
    if not LOW <= value <= HIGH:
        return Rating(None, OUT_OF_RANGE, raw)
    return Rating(value, OK, raw)
