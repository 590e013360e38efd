"""TinyWorld: the procedurally generated task of the embedded default study.

Word problems in GSM8K's answer format (working, then ``#### N``), generated from a seed so that train
and test splits are reproducible and disjoint.  The same generator writes the pre-training corpus of the
embedded base model: arithmetic facts, story sentences and number read-back drills, but never a question
followed by its answer, so the base model knows the ingredients and not the task (it scores ~0 before
fine-tuning; see tests/data/test_tinyworld.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

NAMES = (
    "Tom", "Ann", "Bob", "Eve", "Sam", "Mia", "Leo", "Zoe", "Max", "Ivy",
    "Ben", "Amy", "Dan", "Kim", "Joe", "Liz", "Ray", "Ada", "Ned", "Sue",
)  # fmt: skip
ITEMS = (
    "apples", "pens", "books", "coins", "marbles", "cards", "shells", "stickers",
    "cookies", "stamps", "beads", "cups", "eggs", "toys", "rocks",
)  # fmt: skip
CONTAINERS = ("bags", "boxes", "jars", "baskets", "packs")

# Split disjointness: a problem's identity is its text; the test and validation splits are drawn from
# their own seed streams and any text seen in an earlier split is rejected (see `split`).  The
# validation split (for choosing LRs) is drawn last, so adding it left train and test unchanged.
TRAIN_STREAM = 1_000_003
TEST_STREAM = 2_000_029
VALIDATION_STREAM = 3_000_017


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # GSM8K format: working lines, then "#### N"
    value: int
    kind: str


def _add(rng: random.Random) -> Problem:
    a, b = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    x, y = rng.randint(2, 49), rng.randint(2, 49)
    q = f"{a} has {x} {item}. {a} buys {y} more {item}. How many {item} does {a} have now?"
    return Problem(q, f"{x} + {y} = {x + y}\n#### {x + y}", x + y, "add")


def _sub(rng: random.Random) -> Problem:
    a, b = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    x = rng.randint(10, 60)
    y = rng.randint(1, x - 1)
    q = f"{a} has {x} {item}. {a} gives {y} {item} to {b}. How many {item} does {a} have left?"
    return Problem(q, f"{x} - {y} = {x - y}\n#### {x - y}", x - y, "sub")


def _mul(rng: random.Random) -> Problem:
    a = rng.choice(NAMES)
    item, box = rng.choice(ITEMS), rng.choice(CONTAINERS)
    x, y = rng.randint(2, 9), rng.randint(2, 9)
    q = f"{a} has {x} {box}. Each of the {box} holds {y} {item}. How many {item} does {a} have in all?"
    return Problem(q, f"{x} * {y} = {x * y}\n#### {x * y}", x * y, "mul")


def _two_step(rng: random.Random) -> Problem:
    a, b = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    x, y = rng.randint(2, 30), rng.randint(2, 19)
    t = x + y
    q = f"{a} has {x} {item}. {b} has {y} more {item} than {a}. How many {item} do {a} and {b} have together?"
    return Problem(q, f"{x} + {y} = {t}\n{x} + {t} = {x + t}\n#### {x + t}", x + t, "two_step")


KINDS = {"add": _add, "sub": _sub, "mul": _mul, "two_step": _two_step}
KIND_WEIGHTS = {"add": 3, "sub": 3, "mul": 2, "two_step": 2}


# ---------------------------------------------------------------- the "lite" variant
# builtin:tinyworld-lite: one-step problems only (add, subtract, multiply), single-digit operands (the
# minuend of a subtraction is 10-19) and short questions (~43 tokens per example with the plain
# template, against ~50 for the full task).  It is learnable in a few dozen optimizer steps, so the
# default study can span large batch sizes on a small data budget.  The base model still scores ~0:
# it has never seen a question followed by its answer.


def _add_lite(rng: random.Random) -> Problem:
    a = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    x, y = rng.randint(2, 9), rng.randint(2, 9)
    q = f"{a} has {x} {item}. {a} buys {y} more. How many now?"
    return Problem(q, f"{x} + {y} = {x + y}\n#### {x + y}", x + y, "add")


def _sub_lite(rng: random.Random) -> Problem:
    a, b = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    x, y = rng.randint(10, 19), rng.randint(2, 9)
    q = f"{a} has {x} {item}. {a} gives {y} to {b}. How many left?"
    return Problem(q, f"{x} - {y} = {x - y}\n#### {x - y}", x - y, "sub")


def _mul_lite(rng: random.Random) -> Problem:
    a = rng.choice(NAMES)
    item, box = rng.choice(ITEMS), rng.choice(CONTAINERS)
    x, y = rng.randint(2, 9), rng.randint(2, 9)
    q = f"{a} has {x} {box}. Each holds {y} {item}. How many {item} in all?"
    return Problem(q, f"{x} * {y} = {x * y}\n#### {x * y}", x * y, "mul")


LITE_KINDS = {"add": _add_lite, "sub": _sub_lite, "mul": _mul_lite}
LITE_KIND_WEIGHTS = {"add": 1, "sub": 1, "mul": 1}

# variant name (the part after "builtin:") -> (problem makers by kind, kind weights)
VARIANTS = {
    "tinyworld": (KINDS, KIND_WEIGHTS),
    "tinyworld-lite": (LITE_KINDS, LITE_KIND_WEIGHTS),
}


def generate(n: int, seed: int, variant: str = "tinyworld") -> list[Problem]:
    """``n`` problems of ``variant`` from one seed stream; deterministic."""
    makers, weights = VARIANTS[variant]
    rng = random.Random(seed)
    kinds = [k for k, w in weights.items() for _ in range(w)]
    return [makers[rng.choice(kinds)](rng) for _ in range(n)]


def split(
    n_train: int, n_test: int, n_validation: int = 0, variant: str = "tinyworld"
) -> tuple[list[Problem], ...]:
    """Train and test splits (and a validation split when asked) with no question text in common."""
    train = generate(n_train, TRAIN_STREAM, variant)
    seen = {p.question for p in train}
    test = _unseen(n_test, TEST_STREAM, seen, variant)
    if not n_validation:
        return train, test
    return train, test, _unseen(n_validation, VALIDATION_STREAM, seen, variant)


def _unseen(n: int, stream: int, seen: set[str], variant: str = "tinyworld") -> list[Problem]:
    out: list[Problem] = []
    while len(out) < n:
        for p in generate(n, stream, variant):
            if p.question not in seen and len(out) < n:
                seen.add(p.question)
                out.append(p)
        stream += 1
    return out


# ---------------------------------------------------------------- pre-training corpus


def _fact(rng: random.Random) -> str:
    op = rng.choice("+-*")
    if op == "+":
        x, y = rng.randint(0, 60), rng.randint(0, 60)
        return f"{x} + {y} = {x + y}"
    if op == "-":
        x = rng.randint(0, 99)
        y = rng.randint(0, x)
        return f"{x} - {y} = {x - y}"
    x, y = rng.randint(0, 12), rng.randint(0, 12)
    return f"{x} * {y} = {x * y}"


def _story(rng: random.Random) -> str:
    a, b = rng.sample(NAMES, 2)
    item, box = rng.choice(ITEMS), rng.choice(CONTAINERS)
    x, y = rng.randint(1, 60), rng.randint(1, 49)
    sentences = [
        f"{a} has {x} {item}.",
        f"{a} buys {y} more {item}.",
        f"{a} gives {y} {item} to {b}.",
        f"{b} has {y} more {item} than {a}.",
        f"{a} has {x} {box}.",
        f"Each of the {box} holds {y} {item}.",
        f"{a} and {b} like {item}.",
    ]
    rng.shuffle(sentences)
    story = " ".join(sentences[: rng.randint(2, 4)])
    if rng.random() < 0.5:  # read-back drill: copy the numbers of the story, in order
        nums = [w.rstrip(".") for w in story.split() if w.rstrip(".").isdigit()]
        story += " Numbers: " + ", ".join(nums) + "."
    return story


def pretraining_documents(n: int, seed: int) -> Iterator[str]:
    """Documents of the base model's pre-training corpus: facts and stories, never solved problems."""
    rng = random.Random(seed)
    for _ in range(n):
        if rng.random() < 0.5:
            yield "\n".join(_fact(rng) for _ in range(rng.randint(3, 8)))
        else:
            yield _story(rng)
