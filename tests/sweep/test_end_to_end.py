"""A small real sweep on the built-in model: files, report, status, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorasweep import results
from lorasweep.cli import main

MICRO = [
    "report.curvature_examples=0",  # the demo computes λmax first; tests of other things skip it
    "adapter.methods=[lora,milora]",
    "train.batch_sizes=[4,16]",
    "train.lr_search=grid",
    "report.reference_batch_size=null",
    "report.reference_lr=null",
    "eval.selection.num_examples=8",
    "train.learning_rates=[5e-3]",
    "train.seeds=[0]",
    "data.num_train=64",
    "eval.num_examples=16",
    "eval.max_new_tokens=12",
    "eval.batch_size=8",
]
TRIALS = ["lora-b4-lr0.005-s0", "lora-b16-lr0.005-s0", "milora-b4-lr0.005-s0", "milora-b16-lr0.005-s0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "run"
    assert main(["run", "configs/demo.yaml", f"output_dir={out}", *MICRO]) == 0
    return out


def test_every_trial_directory_is_self_describing(run_dir):
    for tid in TRIALS:
        d = run_dir / "trials" / tid
        status = json.loads((d / "status.json").read_text())
        assert status["state"] == "completed" and status["schema"] == results.SCHEMA_VERSION
        cfg = json.loads((d / "config.json").read_text())
        b = cfg["trial"]["batch_size"]
        assert cfg["study"]["data"]["num_train"] == 64
        steps = [json.loads(line) for line in (d / "steps.jsonl").read_text().splitlines()]
        assert [s["step"] for s in steps] == list(range(1, 64 // b + 1))
        assert set(steps[0]) >= {"step", "loss", "lr", "grad_norm", "tokens", "seconds"}
        metrics = json.loads((d / "metrics.json").read_text())
        assert 0.0 <= metrics["gsm8k"]["strict"] <= 1.0 and metrics["gsm8k"]["n"] == 16
        assert metrics["gsm8k"]["protocol"]["batch_size"] == 8
        assert metrics["gsm8k"]["heldout_loss"] > 0
        assert metrics["train"]["split"] == {"micro": b, "accumulation": 1, "world": 1}
        assert metrics["train"]["steps"] == 64 // b
        prov = json.loads((d / "provenance.json").read_text())
        assert set(prov) >= {"git_sha", "git_dirty", "versions", "hardware", "timings"}
        assert prov["versions"]["torch"].startswith("2.13.0")
        assert (d / "adapter" / "adapter_config.json").exists()
        gens = (d / "eval" / "gsm8k.generations.jsonl").read_text().splitlines()
        assert len(gens) == 16 and "completion" in json.loads(gens[0])


def test_same_seed_same_tokens_across_batch_sizes(run_dir):
    tokens = {}
    for tid in TRIALS:
        m = json.loads((run_dir / "trials" / tid / "metrics.json").read_text())
        tokens[tid] = m["train"]["label_tokens"]
    assert len(set(tokens.values())) == 1


def test_report_files(run_dir):
    report = (run_dir / "report" / "report.md").read_text()
    assert report.index("## Claims of the study") < report.index("## `gsm8k.strict`")  # claims first
    for claim in "abcde":
        assert f"| ({claim}) " in report
    assert "### Test value at the LR chosen on validation" in report
    assert "Reference config" in report and "Untrained base model (test): 0.0 [0.0, 0.0]" in report
    assert "made on **validation** rows" in report and "measured on **test** rows" in report
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    assert [c["claim"] for c in summary["claims"]] == list("abcde")
    cells = {(c["method"], c["batch_size"]): c for c in summary["cells"]}
    assert set(cells) == {(m, b) for m in ("lora", "milora") for b in (4, 16)}
    for c in cells.values():
        assert c["lr"] == 5e-3 and c["searched_lrs"] == [5e-3] and c["steps"] == 64 // c["batch_size"]
        assert c["test"]["lo"] <= c["test"]["mean"] <= c["test"]["hi"]
    for d in (run_dir / "trials").iterdir():  # every trial chose on validation rows of their own
        m = json.loads((d / "metrics.json").read_text())
        assert (
            m["validation"]["gsm8k"]["n"] == 8 and (d / "eval" / "validation" / "gsm8k.scored.jsonl").exists()
        )
    for name in ("accuracy_vs_batch.png", "heatmap_lora.png", "heatmap_milora.png", "per_lr_lora.png"):
        png = run_dir / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a single LR is at the edge of its own grid but there is nothing to warn about
    assert "not bracketed" in report  # a one-LR grid brackets nothing, and the report says so


def test_report_rebuilds_from_disk(run_dir, capsys):
    (run_dir / "report" / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "report.md").exists()


def test_status_table(run_dir, capsys):
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "completed: 4" in out and "pending: 0" in out


def test_resume_skips_finished_and_reruns_unfinished(run_dir, capsys):
    stamps = {t: (run_dir / "trials" / t / "status.json").stat().st_mtime_ns for t in TRIALS}
    # simulate a crash in the middle of one trial
    crashed = run_dir / "trials" / TRIALS[1]
    results.write_status(crashed, "running", started=0)
    (crashed / "metrics.json").unlink()
    assert main(["run", "configs/demo.yaml", f"output_dir={run_dir}", *MICRO]) == 0
    out = capsys.readouterr().out
    assert "4 trials: 3 already finished, 1 to run" in out
    for t in TRIALS:
        now = (run_dir / "trials" / t / "status.json").stat().st_mtime_ns
        assert (now != stamps[t]) == (t == TRIALS[1])
    assert results.read_state(crashed) == "completed"


def test_a_changed_config_does_not_mix_into_old_results(run_dir, capsys):
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert main(["run", "configs/demo.yaml", f"output_dir={run_dir}", *MICRO, "adapter.rank=4"]) == 2
    assert "different config" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_extending_the_grid_keeps_finished_trials(run_dir, capsys):
    from lorasweep.config import load_config
    from lorasweep.study import trials_of
    from lorasweep.sweep.resume import todo

    cfg = load_config(
        "configs/demo.yaml", [f"output_dir={run_dir}", *MICRO, "train.learning_rates=[5e-3,1e-2]"]
    )
    assert sorted(t.id for t in todo(cfg, trials_of(cfg), run_dir)) == [
        "lora-b16-lr0.01-s0",
        "lora-b4-lr0.01-s0",
        "milora-b16-lr0.01-s0",
        "milora-b4-lr0.01-s0",
    ]


def test_report_on_a_non_run_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a lorasweep run directory" in capsys.readouterr().err
