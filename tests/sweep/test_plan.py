from __future__ import annotations

from lorasweep.cli import main


def test_plan_on_the_paper_preset(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["plan", "configs/paper-llama2-7b-math.yaml"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("lora-", "pissa-", "milora-"))]
    assert len(lines) == 3 * 6 * 6 * 1
    assert "108 trials = 3 methods x 6 batch sizes x 6 LRs x 1 seeds" in out
    rows = {line.split()[0]: line.split() for line in lines}
    # PiSSA's reference point: B=128 with max micro-batch 4 = 4 x 32 accumulation; 100K/128 = 781 steps
    r = rows["lora-b128-lr2e-05-s0"]
    assert r[1:6] == ["4", "x", "32", "x", "1"]
    assert r[6:9] == ["781", "24", "99968"]
    b4 = rows["pissa-b4-lr0.001-s0"]
    assert b4[6:8] == ["25000", "750"]  # docs/method.md, Paper-scale recipe: 25,000 steps at B=4
    b512 = rows["milora-b512-lr1e-06-s0"]
    assert b512[6:8] == ["195", "6"]  # ~196 steps at B=512, 3 % warmup = 6 steps
    assert "batch 512 drops the last 160 example(s)" in out
    assert "training tokens unknown here" in out  # no hub here: an upper bound is shown instead


def test_plan_on_the_demo_counts_tokens(capsys, tmp_path):
    assert main(["plan", "configs/demo.yaml", f"output_dir={tmp_path}/r"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("b")}
    assert rows["b2-s0"][1:6] == ["2", "x", "1", "x", "1"] and rows["b2-s0"][6] == "1024"
    assert rows["b64-s1"][6] == "32"
    # same seed, same examples: every batch size trains on exactly the same tokens
    assert len({r[-1] for k, r in rows.items() if k.endswith("-s0")}) == 1
    assert "search: start LRs at B=2: lora 0.001778, pissa 0.001, milora 0.001778" in out
    assert "until the best LR has worse neighbours on both sides" in out and "(worst case" in out
    assert "choices (LR, batch size) on validation rows: builtin:tinyworld-lite (validation split)" in out
    assert not (tmp_path / "r").exists()  # plan writes nothing


def test_plan_says_when_training_rows_are_held_out_for_validation(capsys, tmp_path):
    args = ["plan", "configs/demo.yaml", "eval.selection.from_train=48", "data.num_train=256"]
    assert main([*args, "eval.data.gsm8k=tests/fixtures/gsm8k_sample.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "the last 48 of the 256 training rows are held out (not trained on): training uses 208 rows" in out
    row = next(line.split() for line in out.splitlines() if line.startswith("b2-s0"))
    assert row[6:9] == ["104", "4", "208"]  # steps, warmup, examples: the held-out rows are not trained on
