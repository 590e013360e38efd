"""Config errors name the key (and line), suggest the nearest valid one, exit 2, and write nothing."""

from __future__ import annotations

import textwrap

import pytest

from lorasweep.cli import main
from lorasweep.config import field_help, load_config

GOOD = """\
name: t
output_dir: {out}
train:
  batch_sizes: [4, 8]
  learning_rates: [1e-3, 3.0e-3]
"""

BAD = [
    # (yaml body, overrides, expected fragments of the message)
    ("train:\n  batch_size: [4]\n", [], ["train.batch_size", "did you mean 'train.batch_sizes'", ":2"]),
    ("trian:\n  seeds: [0]\n", [], ["trian", "did you mean 'train'"]),
    ("train:\n  batch_sizes: [4, -8]\n", [], ["train.batch_sizes[1]", "must be >= 1"]),
    ("train:\n  learning_rates: [fast]\n", [], ["train.learning_rates[0]", "must be a number"]),
    ("train:\n  epochs: 1.5\n", [], ["train.epochs", "must be an integer"]),
    ("train:\n  warmup_ratio: 1.5\n", [], ["train.warmup_ratio", "must be < 1"]),
    ("adapter:\n  methods: [lora, pisa]\n", [], ["adapter.methods[1]", "did you mean 'pissa'"]),
    ("eval:\n  tasks: [gsm8]\n", [], ["eval.tasks[0]", "did you mean 'gsm8k'"]),
    ("train:\n  scheduler: cosin\n", [], ["train.scheduler", "did you mean 'cosine'"]),
    ("adapter:\n  rank: 0\n", [], ["adapter.rank", "must be >= 1"]),
    ("train:\n  seeds: [0, 0]\n", [], ["train.seeds", "duplicates"]),
    ("train: [1, 2]\n", [], ["train", "must be a mapping"]),
    ("train:\n  batch_sizes: [4\n", [], ["invalid YAML"]),
    ("- just\n- a list\n", [], ["must be a mapping"]),
    ("", ["train.max_micro_batch=0"], ["train.max_micro_batch", "must be >= 1"]),
    ("", ["adapter.dropout=1.0"], ["adapter.dropout", "must be < 1"]),
    ("", ["sweep.workerz=3"], ["sweep.workerz", "did you mean 'sweep.workers'"]),
    ("", ["novalue"], ["key=value"]),
    ("", ["model.dtype=fp8"], ["model.dtype", "must be one of"]),
    ("", ["report.metric=math.strict"], ["report.metric", "not in eval.tasks"]),
]


@pytest.mark.parametrize(("body", "overrides", "fragments"), BAD)
def test_bad_config_exits_2_names_the_key_and_writes_nothing(tmp_path, capsys, body, overrides, fragments):
    out = tmp_path / "run"
    path = tmp_path / "study.yaml"
    path.write_text(body + ("" if body else GOOD.format(out=out)))
    for command in ("run", "plan"):
        code = main([command, str(path), *overrides])
        err = capsys.readouterr().err
        assert code == 2
        for f in fragments:
            assert f in err, (f, err)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


def test_missing_config_file(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_overrides_and_yaml_floats(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.format(out=tmp_path / "r"))
    cfg = load_config(path, ["train.seeds=[3]", "adapter.rank=4", "train.learning_rates=2e-4"])
    assert cfg.train.learning_rates == [2e-4]  # a scalar where a grid is expected is a 1-point grid
    assert cfg.train.seeds == [3] and cfg.adapter.rank == 4
    assert cfg.train.batch_sizes == [4, 8]
    assert load_config(path).train.learning_rates == [1e-3, 3e-3]  # "1e-3" is a string in YAML 1.1


def test_every_key_is_documented():
    rows = field_help()
    assert len(rows) > 30
    assert all(help for _, _, help in rows)


def test_shipped_configs_load():
    from pathlib import Path

    for path in sorted(Path("configs").glob("*.yaml")):
        load_config(path)


def test_error_carries_file_and_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: x
        adapter:
          rank: 8
          alpha: -1
    """)
    )
    with pytest.raises(Exception, match=r"s.yaml:4: adapter.alpha: must be > 0"):
        load_config(path)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        # train.warmup_ratio and train.batch_sizes have a line in the file: the override is named instead
        (["train.warmup_ratio=1.5"], "override 'train.warmup_ratio=1.5': train.warmup_ratio: must be < 1"),
        (
            ["train.batch_sizes=[4, -8]"],
            "override 'train.batch_sizes=[4, -8]': train.batch_sizes[1]: must be >= 1",
        ),
        (["sweep.workerz=3"], "override 'sweep.workerz=3': sweep.workerz: unknown key (did you mean"),
        (["train.seeds=[0"], "override 'train.seeds=[0': invalid YAML value"),
        (["name.x=1"], "override 'name.x=1': name: is not a section"),
        (["adapter.rank=4", "adapter.rank=0"], "override 'adapter.rank=0': adapter.rank: must be >= 1"),
    ],
)
def test_override_errors_name_the_override_not_a_file_line(tmp_path, capsys, overrides, fragment):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD.format(out=tmp_path / "run") + "  warmup_ratio: 0.1\nadapter:\n  rank: 8\n")
    assert main(["plan", str(path), *overrides]) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert "study.yaml:" not in err, err


def test_a_bad_value_in_the_file_still_names_its_line(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD.format(out=tmp_path / "run") + "  warmup_ratio: 1.5\n")
    assert main(["plan", str(path), "adapter.rank=4"]) == 2
    assert "study.yaml:6: train.warmup_ratio: must be < 1" in capsys.readouterr().err
