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


# ---------------------------------------------------------------- the lite variant


def test_lite_variant_is_deterministic_and_disjoint():
    a = tinyworld.split(500, 100, 100, variant="tinyworld-lite")
    b = tinyworld.split(500, 100, 100, variant="tinyworld-lite")
    assert a == b
    train, test, validation = ({p.question for p in s} for s in a)
    assert not train & test and not train & validation and not test & validation
    assert {p.kind for p in a[0]} == set(tinyworld.LITE_KINDS)


def test_lite_answers_are_right_and_in_gsm8k_format():
    for p in tinyworld.generate(400, seed=3, variant="tinyworld-lite"):
        assert gsm8k.reference_value(p.answer) == p.value
        lines = p.answer.splitlines()
        assert len(lines) == 2  # one working line, then the answer line
        lhs, rhs = lines[0].split(" = ")
        assert eval(lhs) == int(rhs) == p.value  # noqa: S307 - generated digits and + - * only
        assert re.fullmatch(r"#### \d+", lines[-1])
        assert "How many" in p.question and "####" not in p.question


def test_lite_variant_leaves_the_default_task_unchanged():
    # the default generator is the lite-free code path: same rows with or without the variant argument
    assert tinyworld.generate(300, seed=5) == tinyworld.generate(300, seed=5, variant="tinyworld")
    assert tinyworld.split(200, 50) == tinyworld.split(200, 50, variant="tinyworld")
    assert tinyworld.generate(50, seed=5)[0] != tinyworld.generate(50, seed=5, variant="tinyworld-lite")[0]


def test_builtin_lite_source_rows():
    test = sources.load_rows("builtin:tinyworld-lite", "test", 5)
    assert len(test) == 5 and set(test[0]) == {"question", "answer"}
    assert test != sources.load_rows("builtin:tinyworld", "test", 5)
    train = {r["question"] for r in sources.load_rows("builtin:tinyworld-lite", "train", None)}
    validation = {r["question"] for r in sources.load_rows("builtin:tinyworld-lite", "validation", None)}
    assert not train & {r["question"] for r in test} and not train & validation
    with pytest.raises(Exception, match="unknown built-in data"):
        sources.load_rows("builtin:tinyworld-heavy", "test", 5)
