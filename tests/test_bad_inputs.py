"""Bad input never corrupts existing results: exit code 2, a message naming the problem, and the
existing run directory byte-for-byte unchanged (hash before/after)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from lorasweep.cli import main
from tests.conftest import TINY_STUDY as TINY


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad") / "run"
    assert main(["run", "configs/demo.yaml", f"output_dir={out}", *TINY]) == 0
    return out


def jsonl(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


GOOD_ROW = json.dumps({"question": "Tom has 2 pens. How many?", "answer": "2\n#### 2"})
CONFIG_CASES = [
    (["train.batch_size=[4]"], "did you mean 'train.batch_sizes'"),
    (["train.learning_rates=[-1]"], "train.learning_rates[0]: must be > 0"),
    (["adapter.methods=[lora,vera]"], "adapter.methods[1]"),
    (["eval.tasks=[gsm8k,humaneva]"], "eval.tasks[1]"),
    (["train.epochs=0"], "train.epochs: must be >= 1"),
    (["adapter.alpha=abc"], "adapter.alpha: must be a number"),
    (["sweep.workers=0"], "sweep.workers: must be >= 1"),
    (["model.source=builtin:nope"], "unknown built-in model"),
    (["model.source=/no/such/model"], "cannot load"),
    (["data.num_train=999999"], "asks for 999999 rows"),
]
DATA_CASES = [
    (["{oops"], "bad.jsonl:1: invalid JSON"),
    ([GOOD_ROW, '{"question": "q"}'], "bad.jsonl:2: row has keys ['question']"),
    ([GOOD_ROW, '["a", "list"]'], "bad.jsonl:2: each row must be a JSON object"),
    ([GOOD_ROW, '{"question": "q", "answer": 7}'], "bad.jsonl:2: missing or empty string field 'answer'"),
    ([GOOD_ROW, '{"query": "q", "response": ""}'], "bad.jsonl:2: missing or empty string field 'response'"),
]


def check(run_dir: Path, capsys, argv: list[str], fragment: str) -> None:
    before = tree_hash(run_dir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert tree_hash(run_dir) == before


@pytest.mark.parametrize(("overrides", "fragment"), CONFIG_CASES)
def test_bad_config(run_dir, capsys, overrides, fragment):
    check(run_dir, capsys, ["run", "configs/demo.yaml", f"output_dir={run_dir}", *TINY, *overrides], fragment)


@pytest.mark.parametrize(("lines", "fragment"), DATA_CASES)
@pytest.mark.parametrize("role", ["train", "eval"])
def test_bad_data_rows(run_dir, capsys, tmp_path, lines, fragment, role):
    path = jsonl(tmp_path / "bad.jsonl", lines)
    key = "data.train" if role == "train" else "eval.data.gsm8k"
    size = "data.num_train=2" if role == "train" else "eval.num_examples=2"
    if role == "eval" and "response" in fragment:
        fragment = "bad.jsonl: evaluation row 1"
    elif role == "eval" and "row has keys" in fragment:
        fragment = "evaluation row 1: missing field(s) ['answer']"
    elif role == "eval" and "field 'answer'" in fragment:
        fragment = "evaluation row 1"
    check(
        run_dir,
        capsys,
        ["run", "configs/demo.yaml", f"output_dir={run_dir}", *TINY, f"{key}={path}", size],
        fragment,
    )


def test_eval_row_without_a_gold_answer(run_dir, capsys, tmp_path):
    path = jsonl(tmp_path / "e.jsonl", [GOOD_ROW, json.dumps({"question": "q", "answer": "no marker"})])
    check(
        run_dir,
        capsys,
        [
            "run",
            "configs/demo.yaml",
            f"output_dir={run_dir}",
            *TINY,
            f"eval.data.gsm8k={path}",
            "eval.num_examples=2",
        ],
        "evaluation row 1: GSM8K answer has no",
    )


def test_changed_config_is_refused(run_dir, capsys):
    check(
        run_dir,
        capsys,
        ["run", "configs/demo.yaml", f"output_dir={run_dir}", *TINY, "adapter.rank=2"],
        "different config",
    )


@pytest.mark.parametrize("command", ["run", "status", "report"])
def test_run_dir_of_another_version(run_dir, capsys, tmp_path, command):
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    study = json.loads((other / "study.json").read_text())
    study["schema"] = 99
    (other / "study.json").write_text(json.dumps(study))
    argv = (
        ["run", "configs/demo.yaml", f"output_dir={other}", *TINY]
        if command == "run"
        else [command, str(other)]
    )
    check(other, capsys, argv, "written by another lorasweep version")


def test_trial_status_of_another_version(run_dir, capsys, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    status = next(other.glob("trials/*/status.json"))
    status.write_text(json.dumps({"schema": 0, "state": "completed"}))
    check(
        other,
        capsys,
        ["run", "configs/demo.yaml", f"output_dir={other}", *TINY],
        "status.json: written by another lorasweep version",
    )


def test_corrupt_status_file(run_dir, capsys, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    next(other.glob("trials/*/status.json")).write_text('{"schema": 1, "state": ')
    check(other, capsys, ["status", str(other)], "corrupt JSON")


def test_locked_run_dir_is_refused(run_dir, capsys):
    from lorasweep.locks import RunLock

    with RunLock(run_dir):
        before = tree_hash(run_dir)
        assert main(["run", "configs/demo.yaml", f"output_dir={run_dir}", *TINY]) == 2
        assert "another sweep" in capsys.readouterr().err
        assert tree_hash(run_dir) == before


def test_vllm_backend_without_vllm_is_a_clear_error(run_dir, capsys):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    check(
        run_dir,
        capsys,
        ["run", "configs/demo.yaml", f"output_dir={run_dir}", *TINY, "eval.backend=vllm"],
        "eval.backend: eval.backend=vllm needs vLLM",
    )


def test_vllm_max_lora_rank_rounds_up(tmp_path):
    from lorasweep.evals.vllm_backend import max_lora_rank

    for r, expected in [(8, 8), (12, 16), (256, 256), (300, 320)]:
        (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r}))
        assert max_lora_rank(tmp_path) == expected


def test_train_with_bad_data_exits_2_and_writes_nothing(tmp_path, capsys):
    path = jsonl(tmp_path / "bad.jsonl", [GOOD_ROW, "{oops"])
    out = tmp_path / "one"
    assert (
        main(
            [
                "train",
                "configs/demo.yaml",
                f"output_dir={out}",
                *TINY,
                f"data.train={path}",
                "data.num_train=2",
            ]
        )
        == 2
    )
    assert "bad.jsonl:2: invalid JSON" in capsys.readouterr().err
    assert not out.exists()


def test_train_with_an_unknown_method_is_refused_before_anything_is_written(run_dir, capsys):
    argv = ["train", "configs/demo.yaml", f"output_dir={run_dir}", *TINY, "--method", "lorra"]
    check(run_dir, capsys, argv, "--method: unknown adapter method 'lorra'")
    assert not (run_dir / "trials" / "lorra-b8-lr0.005-s0").exists()
