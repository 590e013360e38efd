"""Packed trials on the built-in model: which trials pack, the same trial directories as trials alone
(files, losses, adapters, greedy generations, metrics), the plan's groups, and a group killed
mid-evaluation re-running whole, bit-identical to the uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from lorasweep import results
from lorasweep.cli import main
from lorasweep.config import load_config
from lorasweep.jsonl import read_jsonl
from lorasweep.report.load import load_trials
from lorasweep.sweep import packing
from lorasweep.sweep import trial as trial_module
from lorasweep.sweep.grid import Trial
from lorasweep.sweep.local import run_sweep
from lorasweep.sweep.search import grid_trials

MICRO = [
    "report.curvature_examples=0",  # the demo computes λmax first; tests of other things skip it
    "adapter.methods=[milora]",  # residual base and plain-LoRA export: the harder case
    "train.batch_sizes=[4]",
    "train.max_micro_batch=64",  # up to 8 adapters of 4 rows per packed forward
    "train.lr_search=grid",
    "train.learning_rates=[2e-3,5e-3]",
    "train.seeds=[0,1]",
    "data.num_train=32",
    "eval.num_examples=8",
    "eval.selection.num_examples=8",
    "eval.max_new_tokens=8",
    "eval.batch_size=8",
    "sweep.backend=inprocess",
    "sweep.pack=auto",  # the default; these tests are about packing
    "sweep.pack_generation=on",  # auto would merge member by member on a CPU
    "report.reference_batch_size=null",
    "report.reference_lr=null",
]
TOL = 1e-5
ROOT = Path(__file__).resolve().parents[2]


def config(out: Path, *extra: str):
    return load_config("configs/demo.yaml", [*MICRO, f"output_dir={out}", *extra])


def sweep(out: Path, *extra: str, log=None) -> list[Trial]:
    cfg = config(out, *extra)
    trials = grid_trials(cfg)
    run_sweep(cfg, trials, out, {}, log or (lambda m: None))
    return trials


@pytest.mark.parametrize(
    ("trials", "extra", "sizes"),
    [
        # one method and batch size: LRs and seeds pack together, ordered by seed then LR
        ([("lora", 4, 1e-3, 0), ("lora", 4, 3e-3, 1), ("lora", 4, 3e-3, 0)], [], [3]),
        # other batch size or method: another pass
        ([("lora", 4, 1e-3, 0), ("lora", 8, 1e-3, 0), ("pissa", 4, 1e-3, 0)], [], [1, 1, 1]),
        # at most 8 per pass, balanced
        ([("lora", 4, 10.0**-k, s) for k in range(5) for s in (0, 1)], [], [5, 5]),
        # PiSSA's randomised SVD: a residual base per seed
        ([("pissa", 4, 1e-3, 0), ("pissa", 4, 1e-3, 1)], ["adapter.pissa_niter=2"], [1, 1]),
        ([("pissa", 4, 1e-3, 0), ("pissa", 4, 1e-3, 1)], [], [2]),
        ([("lora", 4, 1e-3, 0), ("lora", 4, 3e-3, 0)], ["sweep.pack=off"], [1, 1]),
        ([("lora", 4, 1e-3, 0), ("lora", 4, 3e-3, 0)], ["train.padding_free=true"], [1, 1]),
        # a packed forward holds at most max_micro_batch rows: 64 // 16 = 4 per pass; 64 // 64 = 1
        ([("lora", 16, 10.0**-k, 0) for k in range(6)], [], [3, 3]),
        ([("lora", 64, 10.0**-k, 0) for k in range(3)], [], [1, 1, 1]),
        ([("lora", 64, 10.0**-k, 0) for k in range(3)], ["train.max_micro_batch=128"], [2, 1]),
        # sweep.pack_rows: more rows per packed forward than one trial's micro-batch limit
        ([("lora", 16, 10.0**-k, 0) for k in range(6)], ["train.max_micro_batch=16"], [1] * 6),
        (
            [("lora", 16, 10.0**-k, 0) for k in range(6)],
            ["train.max_micro_batch=16", "sweep.pack_rows=64"],
            [3, 3],
        ),
        (
            [("lora", 16, 10.0**-k, 0) for k in range(6)],
            ["train.max_micro_batch=16", "sweep.pack_rows=256"],
            [6],
        ),
        # the number of workers does not split a group: groups depend on the trials only
        ([("lora", 4, 10.0**-k, 0) for k in range(3)], ["sweep.backend=local", "sweep.workers=2"], [3]),
        ([("lora", 4, 10.0**-k, 0) for k in range(3)], ["sweep.backend=local", "sweep.workers=4"], [3]),
    ],
)
def test_which_trials_pack(tmp_path, trials, extra, sizes):
    cfg = config(tmp_path, "adapter.methods=[lora,pissa]", *extra)
    units = packing.groups(cfg, [Trial(*t) for t in trials])
    assert [len(u) for u in units] == sizes
    assert sorted(t.id for u in units for t in u) == sorted(Trial(*t).id for t in trials)
    for u in units:
        assert u == sorted(u, key=lambda t: (t.seed, t.lr))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, list[Trial]]:
    root = tmp_path_factory.mktemp("packing")
    trials = sweep(root / "packed")
    sweep(root / "alone", "sweep.pack=off")
    return root / "packed", root / "alone", trials


def files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * abs(b)


def test_packed_trials_write_what_trials_alone_write(runs):
    packed, alone, trials = runs
    assert len(trials) == 4
    for t in trials:
        p, a = packed / "trials" / t.id, alone / "trials" / t.id
        assert files(p) == files(a) and "adapter_plain_lora/adapter_model.safetensors" in files(a)
        assert results.read_json(p / "config.json") == results.read_json(a / "config.json")
        sp, sa = results.read_json(p / "status.json"), results.read_json(a / "status.json")
        assert sp["state"] == sa["state"] == "completed" and sp["steps"] == sa["steps"] == 8
        for x, y in zip(
            results.read_jsonl(p / "steps.jsonl"), results.read_jsonl(a / "steps.jsonl"), strict=True
        ):
            # the same keys, the same-step probe included (val_loss after steps 1, 2, 4, 8)
            assert x.keys() == y.keys() and (x["step"], x["lr"], x["tokens"]) == (
                y["step"],
                y["lr"],
                y["tokens"],
            )
            assert close(x["loss"], y["loss"]) and close(x["grad_norm"], y["grad_norm"])
            assert ("val_loss" in y) == (x["step"] in (1, 2, 4, 8))
            if "val_loss" in y:
                assert close(x["val_loss"], y["val_loss"])
        for folder in ("adapter", "adapter_plain_lora"):
            assert (p / folder / "adapter_config.json").read_text() == (
                a / folder / "adapter_config.json"
            ).read_text()
            tp, ta = (
                load_file(p / folder / "adapter_model.safetensors"),
                load_file(a / folder / "adapter_model.safetensors"),
            )
            assert tp.keys() == ta.keys()
            for k in ta:
                assert ((tp[k] - ta[k]).norm() / ta[k].norm()).item() <= TOL, (t.id, folder, k)
        # packed generation (every member's rows in shared batches, unmerged) vs the trial alone (merged):
        # the same greedy tokens on every row, in fp32
        for stage in ("gsm8k.generations.jsonl", "gsm8k.scored.jsonl", "validation/gsm8k.generations.jsonl"):
            assert (p / "eval" / stage).read_text() == (a / "eval" / stage).read_text()  # greedy: identical
        mp, ma = results.read_json(p / "metrics.json"), results.read_json(a / "metrics.json")
        for xp, xa in ((mp["gsm8k"], ma["gsm8k"]), (mp["validation"]["gsm8k"], ma["validation"]["gsm8k"])):
            assert (xp["protocol"].pop("backend"), xa["protocol"].pop("backend")) == ("hf-packed", "hf")
            assert {k: v for k, v in xp.items() if k != "heldout_loss"} == {
                k: v for k, v in xa.items() if k != "heldout_loss"
            }
            assert close(xp["heldout_loss"], xa["heldout_loss"])
        same = (
            "steps",
            "total_steps",
            "warmup_steps",
            "label_tokens",
            "input_tokens",
            "trainable_parameters",
            "split",
        )
        assert {k: mp["train"][k] for k in same} == {k: ma["train"][k] for k in same}
        assert mp["train"].keys() == ma["train"].keys() and close(
            mp["train"]["final_loss"], ma["train"]["final_loss"]
        )
        prov = results.read_json(p / "provenance.json")
        assert prov["packed"]["group"] == [t.id for t in sorted(trials, key=lambda t: (t.seed, t.lr))]
        assert "packed" not in results.read_json(a / "provenance.json")


def test_the_report_reads_packed_trials_as_trials_alone(runs):
    packed, alone, _ = runs
    tables = []
    for run in (packed, alone):
        rows = load_trials(run, "gsm8k.strict")
        tables.append(
            [
                {k: v for k, v in r.items() if k not in ("seconds", "heldout_loss", "val_loss", "train")}
                for r in rows
            ]
        )
        trains = [r["train"] for r in rows]
    assert tables[0] == tables[1]
    # metrics.json's train record: the same keys (float values and timings differ by rounding and load)
    packed_train = [r["train"] for r in load_trials(packed, "gsm8k.strict")]
    assert [t.keys() for t in packed_train] == [t.keys() for t in trains]


def test_plan_shows_the_groups(tmp_path, capsys):
    assert main(["plan", "configs/demo.yaml", f"output_dir={tmp_path}/r", *MICRO]) == 0
    out = capsys.readouterr().out
    assert "packing: 4 trials in 1 training pass(es)" in out
    assert "  milora B=4: 4 trials (LRs 0.002, 0.005; seeds 0, 1)" in out
    assert main(["plan", "configs/demo.yaml", f"output_dir={tmp_path}/r", *MICRO, "sweep.pack=off"]) == 0
    assert "packing: off" in capsys.readouterr().out


def fingerprint(out: Path) -> dict[str, tuple]:
    """Per trial: its steps.jsonl less timings, its adapter tensors and its metrics less timings."""
    got = {}
    for d in sorted((out / "trials").iterdir()):
        steps = [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(d / "steps.jsonl")]
        tensors = {k: v.tolist() for k, v in load_file(d / "adapter" / "adapter_model.safetensors").items()}
        metrics = results.read_json(d / "metrics.json")
        timing = ("tokens_per_second", "peak_memory")
        train = {k: v for k, v in metrics.pop("train").items() if k not in timing}
        got[d.name] = (steps, tensors, metrics, train)
    return got


def test_a_killed_group_reruns_whole_and_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = {"n": 0}
    evaluate = trial_module.evaluate_model

    def killed_during_the_second_evaluation(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # member 1 evaluated and written, member 2 interrupted
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(trial_module, "evaluate_model", killed_during_the_second_evaluation)
    with pytest.raises(KeyboardInterrupt):
        sweep(out)
    states = {d.name: results.read_state(d) for d in (out / "trials").iterdir()}
    first = "milora-b4-lr0.002-s0"
    assert states.pop(first) == "completed" and set(states.values()) == {"running"}
    written = (out / "trials" / first / "status.json").read_text()
    monkeypatch.setattr(trial_module, "evaluate_model", evaluate)
    log: list[str] = []
    sweep(out, log=log.append)
    assert "4 trials: 1 already finished, 3 to run (1 finished member(s) train again" in log[0]
    packed_line = next(line for line in log if line.startswith("[packed"))
    assert packed_line.startswith("[packed 4:") and first in packed_line  # the same group again
    assert all(results.read_state(d) == "completed" for d in (out / "trials").iterdir())
    assert (out / "trials" / first / "status.json").read_text() == written  # kept, not rewritten
    sweep(tmp_path / "clean")
    assert fingerprint(out) == fingerprint(tmp_path / "clean")  # bit for bit


def test_methods_the_stacked_layer_cannot_train_run_alone(tmp_path):
    cfg = config(tmp_path, "adapter.methods=[lora,dora]")
    trials = [
        Trial("dora", 4, 1e-3, 0),
        Trial("dora", 4, 3e-3, 0),
        Trial("lora", 4, 1e-3, 0),
        Trial("lora", 4, 3e-3, 0),
    ]
    units = packing.groups(cfg, trials)
    assert sorted(len(u) for u in units) == [1, 1, 2]
    assert all(len(u) == 1 for u in units if u[0].method == "dora")


def test_packing_is_on_by_default():
    assert load_config(ROOT / "configs/demo.yaml").sweep.pack == "auto"


def test_a_padding_free_trial_runs_and_matches_the_padded_one(tmp_path):
    """train.padding_free end to end: the trial completes, its per-step losses equal the padded
    trial's up to float rounding (docs/method.md), and it records the setting in its config."""
    trials = sweep(tmp_path / "flat", "train.padding_free=true", "sweep.pack=off", "train.seeds=[0]")
    sweep(tmp_path / "padded", "sweep.pack=off", "train.seeds=[0]")
    for t in trials:
        flat = results.read_jsonl(tmp_path / "flat" / "trials" / t.id / "steps.jsonl")
        padded = results.read_jsonl(tmp_path / "padded" / "trials" / t.id / "steps.jsonl")
        assert len(flat) == len(padded) > 0
        for a, b in zip(flat, padded, strict=True):
            assert abs(a["loss"] - b["loss"]) <= 1e-4 * abs(b["loss"])
        cfg = results.read_json(tmp_path / "flat" / "trials" / t.id / "config.json")
        assert cfg["study"]["train"]["padding_free"] is True


@pytest.mark.parametrize(
    ("mixed", "pack_methods", "sizes"),
    [
        ("no", "auto", [2, 2, 2]),  # fp32: one method per group (a residual base written into W)
        ("no", "together", [6]),  # methods mixed over W, residual members in the correction form
        ("bf16", "auto", [6]),  # a GPU: methods mix by default (the correction form is needed anyway)
        ("bf16", "apart", [2, 2, 2]),
        ("fp16", "auto", [1, 1, 1, 1, 1, 1]),  # fp16 would need loss scaling: nothing packs
    ],
)
def test_which_methods_share_a_group(tmp_path, monkeypatch, mixed, pack_methods, sizes):
    from lorasweep.train import device

    monkeypatch.setattr(device, "mixed_precision", lambda: mixed)
    cfg = config(tmp_path, "adapter.methods=[lora,pissa,milora]", f"sweep.pack_methods={pack_methods}")
    trials = [Trial(m, 4, lr, 0) for m in ("lora", "pissa", "milora") for lr in (1e-3, 3e-3)]
    units = packing.groups(cfg, trials)
    assert sorted(len(u) for u in units) == sizes
    assert all(len({t.lr for t in u}) == len(u) for u in units if sizes == [2, 2, 2])
    assert all(len({t.method for t in u}) == 3 for u in units if sizes == [6])
    assert packing.packable(cfg) == (mixed != "fp16")


def test_on_ray_with_gpus_trials_are_grouped_for_the_workers_autocast(tmp_path, monkeypatch):
    """The driver may have no GPU; trials on GPU workers run under bf16 autocast: methods mix."""
    from lorasweep.train import device

    monkeypatch.setattr(device, "mixed_precision", lambda: "no")
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    trials = [Trial(m, 4, lr, 0) for m in ("lora", "pissa") for lr in (1e-3, 3e-3)]
    ray = ("adapter.methods=[lora,pissa]", "sweep.backend=ray", "sweep.ray_address=auto")
    gpu = config(tmp_path, *ray, "sweep.gpus_per_trial=1")
    assert packing.trial_autocast(gpu) == "bf16" and packing.methods_together(gpu)
    assert sorted(len(u) for u in packing.groups(gpu, trials)) == [4]
    cpu = config(tmp_path, *ray)
    assert packing.trial_autocast(cpu) == "no"
    assert sorted(len(u) for u in packing.groups(cpu, trials)) == [2, 2]
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # forced fp32 on the GPUs: one method a group
    assert not packing.methods_together(gpu)


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_a_sweep_on_cuda_packs_every_method_under_bf16_autocast(tmp_path):
    """On a GPU (bf16 autocast): LoRA's and PiSSA's trials train in one group (PiSSA in the correction
    form), and every packed trial's losses and held-out loss match its trial alone to bf16 precision
    (pytest -m gpu)."""
    extra = ("adapter.methods=[lora,pissa]",)
    trials = sweep(tmp_path / "packed", *extra)
    sweep(tmp_path / "alone", "sweep.pack=off", *extra)
    for t in trials:
        p, a = tmp_path / "packed" / "trials" / t.id, tmp_path / "alone" / "trials" / t.id
        assert results.read_json(p / "status.json")["state"] == "completed"
        assert "packed" in results.read_json(p / "provenance.json"), t.id
        for x, y in zip(
            results.read_jsonl(p / "steps.jsonl"), results.read_jsonl(a / "steps.jsonl"), strict=True
        ):
            assert abs(x["loss"] - y["loss"]) <= 2e-2 * abs(y["loss"]), (t.id, x, y)
        mp, ma = results.read_json(p / "metrics.json"), results.read_json(a / "metrics.json")
        assert (
            abs(mp["gsm8k"]["heldout_loss"] - ma["gsm8k"]["heldout_loss"])
            <= 2e-2 * ma["gsm8k"]["heldout_loss"]
        )


def test_a_sweep_that_mixes_methods_equals_its_trials_alone(tmp_path):
    """``sweep.pack_methods=together`` in fp32: LoRA and MiLoRA in one pass over the original base,
    MiLoRA in the correction form; each member's losses and held-out loss equal its trial alone to
    fp32 rounding (rel 1e-5; adapters after 8 steps 5e-5: measured 1.7e-5, the correction form sums
    W·x and the two low-rank terms in another order), and its greedy generations are identical."""
    extra = ("adapter.methods=[lora,milora]", "train.learning_rates=[5e-3]")
    log: list[str] = []
    trials = sweep(tmp_path / "mixed", *extra, "sweep.pack_methods=together", log=log.append)
    sweep(tmp_path / "alone", *extra, "sweep.pack=off")
    assert len(trials) == 4 and any(line.startswith("[packed 4:") for line in log)
    for t in trials:
        p, a = tmp_path / "mixed" / "trials" / t.id, tmp_path / "alone" / "trials" / t.id
        for x, y in zip(read_jsonl(p / "steps.jsonl"), read_jsonl(a / "steps.jsonl"), strict=True):
            assert abs(x["loss"] - y["loss"]) <= TOL * abs(y["loss"]), (t.id, x, y)
        folder = "adapter_plain_lora" if t.method == "milora" else "adapter"
        tp, ta = (load_file(d / folder / "adapter_model.safetensors") for d in (p, a))
        for k in ta:
            assert ((tp[k] - ta[k]).norm() / ta[k].norm()).item() <= 5 * TOL, (t.id, k)
        for stage in ("gsm8k.generations.jsonl", "validation/gsm8k.generations.jsonl"):
            assert (p / "eval" / stage).read_text() == (a / "eval" / stage).read_text(), (t.id, stage)
        mp, ma = results.read_json(p / "metrics.json"), results.read_json(a / "metrics.json")
        assert (
            abs(mp["gsm8k"]["heldout_loss"] - ma["gsm8k"]["heldout_loss"])
            <= TOL * ma["gsm8k"]["heldout_loss"]
        )


def test_seeds_with_their_own_residual_base_share_a_group_in_the_correction_form(tmp_path):
    """PiSSA with a randomised SVD starts each seed from its own factors; packed together
    (``sweep.pack_methods=together``) both seeds keep W and their own correction, and each member's
    plain-LoRA export (for the original base) uses its own initial factors, as its trial alone."""
    extra = ("adapter.methods=[pissa]", "adapter.pissa_niter=2", "train.learning_rates=[5e-3]")
    log: list[str] = []
    trials = sweep(tmp_path / "packed", *extra, "sweep.pack_methods=together", log=log.append)
    sweep(tmp_path / "alone", *extra, "sweep.pack=off")
    assert any(line.startswith("[packed 2:") for line in log)
    for t in trials:
        p, a = tmp_path / "packed" / "trials" / t.id, tmp_path / "alone" / "trials" / t.id
        assert results.read_json(p / "status.json")["state"] == "completed", t.id
        tp, ta = (load_file(d / "adapter_plain_lora" / "adapter_model.safetensors") for d in (p, a))
        for k in ta:
            assert ((tp[k] - ta[k]).norm() / ta[k].norm()).item() <= 5 * TOL, (t.id, k)
