"""The built-in task: deterministic, disjoint splits, correct answers, and unsolved by the base model."""

from __future__ import annotations

import re

import pytest

from lorasweep.data import sources, tinyworld
from lorasweep.evals import gsm8k


def test_deterministic_and_disjoint():
    a_train, a_test = tinyworld.split(500, 100)
    b_train, b_test = tinyworld.split(500, 100)
    assert a_train == b_train and a_test == b_test
    assert not {p.question for p in a_train} & {p.question for p in a_test}


def test_answers_are_right_and_in_gsm8k_format():
    for p in tinyworld.generate(400, seed=3):
        assert gsm8k.reference_value(p.answer) == p.value
        for line in p.answer.splitlines()[:-1]:  # every working line is true arithmetic
            lhs, rhs = line.split(" = ")
            assert eval(lhs) == int(rhs)  # noqa: S307 - generated digits and + - * only
        assert re.fullmatch(r"#### \d+", p.answer.splitlines()[-1])
    kinds = {p.kind for p in tinyworld.generate(400, seed=3)}
    assert kinds == set(tinyworld.KINDS)


def test_pretraining_corpus_never_contains_a_solved_problem():
    docs = list(tinyworld.pretraining_documents(3000, seed=1))
    assert not any("####" in d or "How many" in d or "Question" in d for d in docs)


def test_builtin_source_rows():
    rows = sources.load_rows("builtin:tinyworld", "test", 5)
    assert len(rows) == 5 and set(rows[0]) == {"question", "answer"}
    with pytest.raises(Exception, match="has 1000 test rows"):
        sources.load_rows("builtin:tinyworld", "test", 5000)
