"""HumanEval / MBPP scoring: post-processing table, pass@k against the closed form, real programs run."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from lorasweep.errors import UserError
from lorasweep.evals import code, registry, sandbox

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BODY = "    return a + b\n"

EXTRACT = [
    # completion, extracted code
    (BODY, BODY),
    ("```python\ndef f():\n    return 1\n```\nThis returns 1.", "def f():\n    return 1\n"),
    ("Sure:\n```\ndef f():\n    return 2\n```", "def f():\n    return 2\n"),
    ("```text\nnot code\n```\n```python\nx = 1\n```", "x = 1\n"),  # ```python wins over an earlier block
    ("```py\nx = 1\n```", "x = 1\n"),
    ("```python\ndef f():\n    return 3\n", "def f():\n    return 3\n"),  # unterminated fence
    ("def f():\n    return 1\n\nif __name__ == '__main__':\n    f()\n", "def f():\n    return 1\n"),
    ("def f():\n    return 1\n# Example usage:\nprint(f())\n", "def f():\n    return 1\n"),
    ("def f():\n    return 1\n# Test cases\nf()\n", "def f():\n    return 1\n"),
    ("def f():\n    return 1\nassert f() == 1\n", "def f():\n    return 1\n"),
    ("def f():\n    return 1\nprint(f())\n", "def f():\n    return 1\n"),
    (
        "def f(x):\n    assert x > 0\n    print(x)\n    # Test the sign\n    return x\n",
        None,
    ),  # indented: kept
    ("import math\n\ndef helper():\n    return math.pi\n\ndef f():\n    return helper()\n", None),
    ("def f():\r\n    return 1\r\nassert f() == 1\r\n", "def f():\r\n    return 1\n"),
    ("", "\n"),
]


@pytest.mark.parametrize(("completion", "expected"), EXTRACT)
def test_extract_code(completion, expected):
    assert code.extract_code(completion) == (completion if expected is None else expected)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(5, 2, 1, 0.4), (5, 2, 2, 0.7), (10, 0, 1, 0.0), (10, 0, 10, 0.0), (10, 10, 1, 1.0), (10, 10, 10, 1.0),
     (3, 1, 3, 1.0), (1, 1, 1, 1.0), (1, 0, 1, 0.0), (200, 1, 1, 0.005)],
)  # fmt: skip
def test_pass_at_k_cases(n, c, k, expected):
    assert code.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_closed_form():
    for n in range(1, 21):
        for c in range(n + 1):
            for k in range(1, n + 1):
                closed = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert code.pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 2, 6), (5, 2, 0), (5, 6, 1), (5, -1, 1)])
def test_pass_at_k_refuses(n, c, k):
    with pytest.raises(ValueError):
        code.pass_at_k(n, c, k)


@pytest.fixture(scope="module")
def humaneval():
    return code.load_humaneval()


def test_load_humaneval(humaneval):
    assert len(humaneval) == 164
    assert humaneval[0]["task_id"] == "HumanEval/0" and humaneval[-1]["task_id"] == "HumanEval/163"
    assert all(
        set(r) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"} for r in humaneval
    )


def test_humaneval_canonical_solutions_all_pass(humaneval, monkeypatch):
    calls, running, peak, lock = [0], [0], [0], threading.Lock()
    real_run = sandbox.run

    def counted_run(program, limits):
        with lock:
            calls[0] += 1
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real_run(program, limits)
        finally:
            with lock:
                running[0] -= 1

    sandbox.capabilities()  # its cached probe run is not one of the 164
    monkeypatch.setattr(sandbox, "run", counted_run)
    start = time.monotonic()
    items, metrics = code.HumanEvalEvaluator(workers=2).score(
        humaneval, [r["canonical_solution"] for r in humaneval]
    )
    print(f"164 HumanEval canonical solutions: {time.monotonic() - start:.1f} s with 2 workers")
    assert [i["task_id"] for i in items if not i["passed"]] == []
    assert metrics["pass@1"] == 1.0 and metrics["n"] == 164 and metrics["statuses"] == {"passed": 164}
    # each program ran once, two at a time: the worker count is honoured (neither serial nor unbounded)
    assert calls[0] == 164 and peak[0] == 2


def test_humaneval_wrong_completions_all_fail(humaneval):
    items, metrics = code.HumanEvalEvaluator().score(humaneval, ["    return None\n"] * len(humaneval))
    assert metrics["pass@1"] == 0.0 and not any(i["passed"] for i in items)


def test_humaneval_full_functions_in_chat_form(humaneval):
    """Whole functions in a fence, with a __main__ block; /10 and /38 need helpers from the prompt."""
    rows = [r for r in humaneval if r["task_id"] in {f"HumanEval/{i}" for i in (0, 10, 38, 50, 53, 163)}]
    completions = []
    for row in rows:
        signature = next(
            line for line in row["prompt"].splitlines() if line.startswith(f"def {row['entry_point']}")
        )
        function = f"{signature}\n{row['canonical_solution']}"
        completions.append(
            f"Here it is:\n```python\n{function}\n\nif __name__ == '__main__':\n    print(1)\n```\nDone."
        )
    items, metrics = code.HumanEvalEvaluator().score(rows, completions)
    assert metrics["pass@1"] == 1.0, [i["stderr"] for i in items if not i["passed"]]


def test_humaneval_program_does_not_repeat_the_signature():
    row = {"prompt": 'def add(a, b):\n    """Sum."""\n', "test": "def check(f):\n    assert f(1, 2) == 3\n"}
    row["entry_point"] = "add"
    body = code.humaneval_program(row, BODY)
    full = code.humaneval_program(row, "```python\ndef add(a, b):\n    return a + b\n```")
    assert body == row["prompt"] + BODY + "\n" + row["test"] + "\ncheck(add)\n"
    assert full.count("def add(") == 2 and full.index('"""Sum."""') < full.rindex("def add(")


@pytest.fixture(scope="module")
def mbpp():
    return code.load_mbpp_jsonl(FIXTURES / "mbpp_sample.jsonl")


WRONG_MBPP = {
    2: "def similar_elements(a, b):\n    return tuple(a)\n",
    3: "def is_not_prime(n):\n    return False\n",
    4: "import heapq as hq\ndef heap_queue_largest(nums, n):\n    return hq.nsmallest(n, nums)\n",
}


def test_mbpp_correct_and_wrong_code(mbpp):
    assert [r["task_id"] for r in mbpp] == [2, 3, 4]
    right = [f"```python\n{r['code']}\n```\nprint(1)" for r in mbpp]
    _, metrics = code.MbppEvaluator().score(mbpp, right)
    assert metrics["pass@1"] == 1.0 and metrics["n"] == 3
    items, metrics = code.MbppEvaluator().score(mbpp, [WRONG_MBPP[r["task_id"]] for r in mbpp])
    assert metrics["pass@1"] == 0.0 and {i["status"] for i in items} == {"failed"}


def test_mbpp_samples_give_pass_at_k(mbpp):
    samples = [(r["task_id"], r["code"]) for r in mbpp] + [
        (r["task_id"], WRONG_MBPP[r["task_id"]]) for r in mbpp
    ]
    items, metrics = code.MbppEvaluator().score_samples(mbpp, samples, ks=(1, 2, 10))
    assert metrics["pass@1"] == pytest.approx(0.5) and metrics["pass@2"] == 1.0
    assert "pass@10" not in metrics  # 2 samples per task: k=10 is not estimable
    assert (metrics["n"], metrics["samples"]) == (3, 6)
    assert [(i["task_id"], i["sample"], i["passed"]) for i in items[:4]] == [
        (2, 0, True),
        (3, 0, True),
        (4, 0, True),
        (2, 1, False),
    ]


def test_mbpp_setup_code_runs_first():
    row = {"task_id": 1, "test_setup_code": "import math", "test_list": ["assert f() == math.pi"]}
    _, metrics = code.MbppEvaluator().score([row], ["def f():\n    return math.pi\n"])
    assert metrics["pass@1"] == 1.0


def test_samples_must_match_rows(mbpp):
    with pytest.raises(UserError, match="not among"):
        code.MbppEvaluator().score_samples(mbpp, [(99, "x = 1")] + [(r["task_id"], "") for r in mbpp])
    with pytest.raises(UserError, match="no sample"):
        code.MbppEvaluator().score_samples(mbpp, [(2, "x = 1")])


@pytest.mark.parametrize("task", ["humaneval", "mbpp"])
def test_registry_task_passes_its_own_reference_response(task, humaneval, mbpp):
    """The registry wires each code task to its own program builder, and the reference response that
    held-out loss is computed on is itself a passing completion."""
    spec = registry.get(task)
    rows = humaneval[:20] if task == "humaneval" else mbpp
    items, metrics = spec.scorer.score(rows, [spec.reference(r) for r in rows])
    assert metrics["pass@1"] == 1.0, [(i["task_id"], i["stderr"]) for i in items if not i["passed"]]
    assert set(spec.metrics) <= set(metrics)  # the names the report reads are the names produced
    # the model is shown the stub to complete (HumanEval) or the task and the tests to pass (MBPP)
    shown = [rows[0]["prompt"]] if task == "humaneval" else [rows[0]["text"], *rows[0]["test_list"]]
    assert all(s in spec.prompt(rows[0]) for s in shown)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "JSON object"),
        ('{"task_id": 1, "text": "t", "code": "c"}', "missing field"),
        ('{"task_id": 1, "text": "t", "code": "c", "test_list": "assert 1"}', "test_list"),
        (
            '{"task_id": 1, "text": "t", "code": "c", "test_list": ["assert 1"], "test_setup_code": 3}',
            "setup",
        ),
    ],
)
def test_load_mbpp_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "mbpp.jsonl"
    good = (FIXTURES / "mbpp_sample.jsonl").read_text().splitlines()[0]
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(UserError, match=message) as caught:
        code.load_mbpp_jsonl(path)
    assert caught.value.where == f"{path}:3"
