"""``lorasweep score`` on existing generations: metrics, per-item file, and clear errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorasweep.cli import main

GSM8K = "tests/fixtures/gsm8k_sample.jsonl"
MATH = "tests/fixtures/math_sample.jsonl"


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_predictions(tmp_path, capsys):
    preds = write(
        tmp_path / "p.jsonl",
        [
            {"task_id": 0, "completion": "48 + 24 = 72\n#### 72"},
            {"task_id": 1, "completion": "She earned $10. The answer is: 10"},
            {"task_id": 3, "completion": "I don't know"},
        ],
    )
    assert main(["score", "--task", "gsm8k", "--predictions", str(preds), "--data", GSM8K]) == 0
    out = json.loads(capsys.readouterr().out.split("per-item")[0])
    assert out["n"] == 3
    assert out["strict"] == pytest.approx(1 / 3) and out["flexible"] == pytest.approx(2 / 3)
    assert out["paper"] == pytest.approx(1 / 3)
    items = [json.loads(line) for line in (tmp_path / "p.gsm8k.scored.jsonl").read_text().splitlines()]
    assert [i["task_id"] for i in items] == [0, 1, 3] and items[2]["gold"] == 624


def test_math_predictions(tmp_path, capsys):
    preds = write(
        tmp_path / "m.jsonl",
        [
            {"task_id": 0, "completion": "So the sum is $\\boxed{\\dfrac{3}{4}}$."},
            {"task_id": 1, "completion": "The answer is: 4"},
            {"task_id": 2, "completion": "The answer is $\\boxed{5}$"},
        ],
    )
    assert main(["score", "--task", "math", "--predictions", str(preds), "--data", MATH]) == 0
    out = json.loads(capsys.readouterr().out.split("per-item")[0])
    assert out["boxed"] == pytest.approx(1 / 3) and out["paper"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"task_id": 0}'], "p.jsonl:1: each line needs 'task_id' and 'completion'"),
        (['{"task_id": 0, "completion": "x"}', "{oops"], "p.jsonl:2: invalid JSON"),
        (['{"task_id": 9, "completion": "x"}'], "p.jsonl:1: task_id 9 is not an index"),
        (['{"task_id": 0, "completion": 5}'], "p.jsonl:1: 'completion' must be a string"),
        (
            ['{"task_id": 1, "completion": "a"}', '{"task_id": 1, "completion": "b"}'],
            "p.jsonl:2: task_id 1 appears twice",
        ),
        ([], "no predictions"),
    ],
)
def test_bad_predictions_exit_2(tmp_path, capsys, lines, message):
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(lines) + ("\n" if lines else ""))
    before = p.read_bytes()
    assert main(["score", "--task", "gsm8k", "--predictions", str(p), "--data", GSM8K]) == 2
    assert message in capsys.readouterr().err
    assert p.read_bytes() == before and not (tmp_path / "p.gsm8k.scored.jsonl").exists()


def test_unknown_task_and_missing_files(tmp_path, capsys):
    assert main(["score", "--task", "gsm9k", "--predictions", "x.jsonl"]) == 2
    assert "unknown task 'gsm9k'" in capsys.readouterr().err
    assert (
        main(["score", "--task", "gsm8k", "--predictions", str(tmp_path / "none.jsonl"), "--data", GSM8K])
        == 2
    )
    assert "predictions file not found" in capsys.readouterr().err


def test_humaneval_canonical_and_wrong_via_the_cli(tmp_path, capsys):
    from lorasweep.evals.code import load_humaneval

    rows = load_humaneval()
    canon = write(
        tmp_path / "canon.jsonl",
        [{"task_id": r["task_id"], "completion": r["canonical_solution"]} for r in rows],
    )
    wrong = write(
        tmp_path / "wrong.jsonl", [{"task_id": r["task_id"], "completion": "    return None\n"} for r in rows]
    )
    assert main(["score", "--task", "humaneval", "--predictions", str(canon)]) == 0
    out = json.loads(capsys.readouterr().out.split("per-item")[0])
    assert out["pass@1"] == 1.0 and out["n"] == 164
    assert main(["score", "--task", "humaneval", "--predictions", str(wrong)]) == 0
    assert json.loads(capsys.readouterr().out.split("per-item")[0])["pass@1"] == 0.0


def test_mbpp_samples_give_pass_at_k(tmp_path, capsys):
    rows = [json.loads(line) for line in Path("tests/fixtures/mbpp_sample.jsonl").read_text().splitlines()]
    preds = []
    for r in rows:
        preds += [
            {"task_id": r["task_id"], "completion": r["code"]},
            {"task_id": r["task_id"], "completion": "pass"},
        ]
    p = write(tmp_path / "m.jsonl", preds)
    assert (
        main(
            ["score", "--task", "mbpp", "--predictions", str(p), "--data", "tests/fixtures/mbpp_sample.jsonl"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out.split("per-item")[0])
    assert out["pass@1"] == 0.5 and out["pass@2"] == 1.0
    bad = write(tmp_path / "b.jsonl", [{"task_id": 999, "completion": "x"}])
    assert (
        main(
            [
                "score",
                "--task",
                "mbpp",
                "--predictions",
                str(bad),
                "--data",
                "tests/fixtures/mbpp_sample.jsonl",
            ]
        )
        == 2
    )
    assert "b.jsonl:1: task_id 999 is not in" in capsys.readouterr().err
