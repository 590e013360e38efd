"""Variable-length instruction data in MetaMathQA's schema, for the benchmarks (the real set is on the hub,
which this machine cannot reach).

Each row is ``{"query": ..., "response": ..., "type": "GSM_Rephrased"}`` like MetaMathQA's: a word
problem whose solution takes 1 to 9 arithmetic steps, written out one sentence per step and closed by
``The answer is: N`` as MetaMathQA's responses are.  The number of steps sets the length, so the rows
spread from ~40 to ~300 tokens (SmolLM2's tokenizer), a long right tail as in the real set (whose median
is a few hundred characters with responses up to a few thousand).  Deterministic in ``seed``.

``python bench/metamath_like.py OUT.jsonl [N]`` writes ``N`` rows (default 512).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

NAMES = ("Mia", "Omar", "Lena", "Ravi", "Sofia", "Tom", "Aiko", "Ben", "Nora", "Kofi")
ITEMS = ("apples", "books", "marbles", "stamps", "cookies", "coins", "pencils", "shells")
OPS = (
    ("buys {n} more {item}", "+", lambda a, n: a + n),
    ("gives away {n} {item}", "-", lambda a, n: a - n),
    ("doubles the number of {item}", "doubles", lambda a, n: a * 2),
    ("receives {n} bags with 3 {item} each", "adds 3 x", lambda a, n: a + 3 * n),
)


def row(rng: random.Random) -> dict:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    start = rng.randint(5, 60)
    steps = rng.choices(range(1, 10), weights=(6, 8, 8, 6, 4, 3, 2, 1, 1))[0]
    total, events, lines = start, [], [f"{name} starts with {start} {item}."]
    for _ in range(steps):
        text, verb, fn = rng.choice(OPS)
        n = rng.randint(1, 20)
        if fn(total, n) < 0:  # keep the counts natural
            text, verb, fn = OPS[0]
        new = fn(total, n)
        events.append(text.format(n=n, item=item))
        arg = f"3 x {n} = {3 * n}, so {total} + {3 * n}" if verb == "adds 3 x" else f"{total} {verb} {n}"
        if verb == "doubles":
            arg = f"2 x {total}"
        lines.append(f"Then {name} {text.format(n=n, item=item)}: {arg} = {new} {item}.")
        total = new
    query = (
        f"{name} has {start} {item}. Then {name} "
        + ", then ".join(events)
        + f". How many {item} does {name} have now?"
    )
    response = " ".join(lines) + f" {name} has {total} {item} in the end.\nThe answer is: {total}"
    return {"query": query, "response": response, "type": "GSM_Rephrased"}


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [row(rng) for _ in range(n)]


def write(path: Path, n: int = 512, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(n, seed)))
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 512))
