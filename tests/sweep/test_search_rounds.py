"""The search driver over a run directory: rounds, resume after a kill, and choices that never read a
test row.  Trials are written by a fake runner from synthetic objectives (the real trial function is
covered by the end-to-end tests), so every decision here has a known answer."""

from __future__ import annotations

import math
import random

import pytest

from lorasweep import results
from lorasweep.config import load_config
from lorasweep.report import tuned
from lorasweep.rundir import RunDir
from lorasweep.sweep import search

OPTIMA = {("lora", 8): 3e-3, ("lora", 32): 1e-2, ("pissa", 8): 4e-4, ("pissa", 32): 1e-3}


def config(tmp_path, **over):
    overrides = [
        f"output_dir={tmp_path / 'run'}",
        "train.lr_search=bracket",
        "train.batch_sizes=[8, 32]",
        "train.seeds=[0, 1]",
        "adapter.methods=[lora, pissa]",
        "train.bracket.start_lr={lora: 1e-3, pissa: 1e-3}",
        "train.bracket.factor=3.1623",
        "report.reference_batch_size=32",
        "report.reference_lr=1e-3",
        "eval.num_examples=50",
        *[f"{k}={v}" for k, v in over.items()],
    ]
    return load_config(None, overrides)


def fake_runner(cfg, run_dir, log: list, test_noise: int = 0, kill_after: int | None = None):
    """Writes finished trial directories: validation accuracy peaks at the cell's optimum; test
    scores are random (seeded by ``test_noise``) so a choice that read them would move."""
    count = {"n": 0}

    def run(trials):
        for t in trials:
            if results.read_state(RunDir(run_dir).trial(t).path) in results.TERMINAL:
                continue  # as every backend does: finished trials are skipped
            if kill_after is not None and count["n"] >= kill_after:
                raise KeyboardInterrupt
            d = RunDir(run_dir).trial(t).path
            d.mkdir(parents=True, exist_ok=True)
            results.atomic_write_json(d / "config.json", {"study": {}, "trial": t.as_dict()})
            opt = OPTIMA[(t.method, t.batch_size)]
            val = max(0.0, 0.9 - 0.3 * (math.log10(t.lr) - math.log10(opt)) ** 2) + 0.001 * t.seed
            rng = random.Random(f"{t.id}-{test_noise}")
            items = [float(rng.random() < 0.5) for _ in range(50)]
            metrics = {
                "gsm8k": {"strict": sum(items) / 50, "heldout_loss": rng.random()},
                "validation": {"gsm8k": {"strict": val, "heldout_loss": 1 - val}},
                "train": {"input_tokens": 1000},
            }
            results.atomic_write_json(d / "metrics.json", metrics)
            results.write_jsonl(
                d / "eval" / "gsm8k.scored.jsonl",
                [{"task_id": i, "scores": {"strict": {"correct": bool(x)}}} for i, x in enumerate(items)],
            )
            results.write_status(d, "completed", steps=10)
            log.append(t.id)
            count["n"] += 1

    return run


def final(cfg, run_dir):
    return {
        (c.method, c.batch_size): (c.decision.best, c.decision.searched)
        for c in search.cell_states(cfg, run_dir)
    }


def test_rounds_reach_a_bracketed_answer_for_every_cell(tmp_path):
    cfg = config(tmp_path)
    run_dir = tmp_path / "run"
    ran: list[str] = []
    rounds = search.run_rounds(cfg, run_dir, fake_runner(cfg, run_dir, ran), log=lambda m: None)
    assert rounds >= 3  # B=32 waits for B=8's answer (predicted start)
    states = search.cell_states(cfg, run_dir)
    assert all(c.decision.done and c.decision.bracketed for c in states)
    for c in states:
        opt = OPTIMA[(c.method, c.batch_size)]
        assert abs(math.log10(c.decision.best) - math.log10(opt)) <= 0.13  # the nearest quarter decade
        lo, hi = c.decision.neighbours
        for lr in (lo, c.decision.best, hi):  # every seed at the best and both neighbours
            for s in cfg.train.seeds:
                assert f"{c.method}-b{c.batch_size}-lr{lr:g}-s{s}" in ran
    assert len(ran) == len(set(ran))  # nothing ran twice
    assert {"lora-b32-lr0.001-s0", "pissa-b32-lr0.001-s1"} <= set(ran)  # the reference config


def test_without_the_reference_config_no_reference_trial_runs(tmp_path):
    """``report.reference_config: false`` (the proxy's setting): the search's trials only, and claim (e)
    says it has no reference results instead of reading a search trial that happens to sit there."""
    from lorasweep.report import tuned

    cfg = config(tmp_path, **{"report.reference_config": "false", "report.reference_lr": 3.162e-5})
    run_dir = tmp_path / "run"
    ran: list[str] = []
    search.run_rounds(cfg, run_dir, fake_runner(cfg, run_dir, ran), log=lambda m: None)
    assert search.reference_trials(cfg) == [] and not [t for t in ran if "-lr3.162e-05-" in t]
    res = tuned.build(cfg, run_dir, cfg.report.metric)
    assert res.reference == {}
    (e,) = [c for c in res.claims if c.key == "e"]
    assert "needs two methods with reference" in " ".join(e.evidence)


def test_resume_after_a_kill_reruns_nothing_and_ends_the_same(tmp_path):
    cfg = config(tmp_path)
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    whole: list[str] = []
    search.run_rounds(cfg, whole_dir, fake_runner(cfg, whole_dir, whole), log=lambda m: None)

    first: list[str] = []
    with pytest.raises(KeyboardInterrupt):  # killed in round 2, after round 1 finished
        search.run_rounds(
            cfg, killed_dir, fake_runner(cfg, killed_dir, first, kill_after=15), log=lambda m: None
        )
    assert 0 < len(first) == 15 < len(whole)
    second: list[str] = []
    search.run_rounds(cfg, killed_dir, fake_runner(cfg, killed_dir, second), log=lambda m: None)
    assert not set(first) & set(second)  # no finished trial re-run
    assert sorted(first + second) == sorted(whole)  # the same trials as an uninterrupted search
    assert final(cfg, killed_dir) == final(cfg, whole_dir)


def test_no_test_row_can_influence_a_choice(tmp_path):
    """Two runs whose validation results are identical and whose test results differ completely make
    the same trials and the same choices (search, grid choice, and the claims' candidates)."""
    cfg = config(tmp_path)
    runs = []
    for noise in (1, 2):
        run_dir = tmp_path / f"run{noise}"
        ran: list[str] = []
        search.run_rounds(cfg, run_dir, fake_runner(cfg, run_dir, ran, test_noise=noise), log=lambda m: None)
        res = tuned.build(cfg, run_dir, "gsm8k.strict")
        runs.append((ran, final(cfg, run_dir), res))
    (ran1, fin1, res1), (ran2, fin2, res2) = runs
    assert ran1 == ran2 and fin1 == fin2
    assert {k: t.best.lr for k, t in res1.tuned.items()} == {k: t.best.lr for k, t in res2.tuned.items()}
    tests1 = {k: t.estimate.mean for k, t in res1.tuned.items()}
    tests2 = {k: t.estimate.mean for k, t in res2.tuned.items()}
    assert tests1 != tests2  # the test data did differ
    for c1, c2 in zip(res1.claims, res2.claims, strict=True):  # same candidates, chosen on validation
        pick = ("best_batch", "worst_batch", "largest_batch")
        assert {
            m: {k: v for k, v in n.items() if k in pick} for m, n in c1.numbers.items() if isinstance(n, dict)
        } == {
            m: {k: v for k, v in n.items() if k in pick} for m, n in c2.numbers.items() if isinstance(n, dict)
        }


def test_a_finished_study_run_again_hands_the_backend_one_round_of_finished_trials(tmp_path):
    """So the backend, not the search, says 'N trials: N already finished, 0 to run'; nothing runs."""
    cfg = config(tmp_path)
    run_dir = tmp_path / "run"
    ran: list[str] = []
    search.run_rounds(cfg, run_dir, fake_runner(cfg, run_dir, ran), log=lambda m: None)
    handed: list[list] = []
    again = search.run_rounds(cfg, run_dir, lambda trials: handed.append(trials), log=lambda m: None)
    assert again == 0
    assert len(handed) == 1 and sorted(t.id for t in handed[0]) == sorted(ran)
