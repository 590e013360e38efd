"""The study config reaches every registered method and refuses what a method cannot do."""

from __future__ import annotations

import pytest

from lorasweep.adapters import METHODS
from lorasweep.config import load_config
from lorasweep.errors import ConfigError

BODY = "name: t\noutput_dir: {out}\ntrain:\n  batch_sizes: [4]\n  learning_rates: [1e-3]\n"


def load(tmp_path, *overrides: str):
    path = tmp_path / "study.yaml"
    path.write_text(BODY.format(out=tmp_path / "run"))
    return load_config(path, list(overrides))


def test_every_registered_method_is_a_valid_config_value(tmp_path):
    cfg = load(tmp_path, f"adapter.methods=[{','.join(METHODS)}]", "adapter.loraplus_lr_ratio=4")
    assert cfg.adapter.methods == list(METHODS) and cfg.adapter.loraplus_lr_ratio == 4


def test_loraplus_ratio_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="adapter.loraplus_lr_ratio: must be > 0"):
        load(tmp_path, "adapter.loraplus_lr_ratio=0")


@pytest.mark.parametrize(("method", "kind"), [("dora", "peft"), ("full", "model")])
def test_vllm_refuses_a_method_whose_export_is_not_a_plain_lora(tmp_path, method, kind):
    with pytest.raises(ConfigError, match=rf"adapter.methods\[1\]: .*{method!r} exports a {kind!r}"):
        load(tmp_path, f"adapter.methods=[lora,{method}]", "eval.backend=vllm")


def test_config_help_names_every_registered_method():
    from lorasweep.config import field_help

    (help_text,) = [text for key, _, text in field_help() if key == "adapter.methods"]
    assert all(m in help_text for m in METHODS), help_text
