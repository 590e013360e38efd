"""Backends by registry name: the config's choices are the registry's names, an unknown name is a
clear error, and run_sweep calls the configured entry."""

from __future__ import annotations

import pytest

from lorasweep.config import SWEEP_BACKENDS, load_config
from lorasweep.errors import UserError
from lorasweep.sweep import backends


def test_config_choices_are_the_registry():
    assert tuple(backends.BACKENDS) == SWEEP_BACKENDS


def test_unknown_backend_names_the_key_and_the_nearest():
    with pytest.raises(UserError, match=r"sweep.backend: unknown backend 'rey'; valid: .*did you mean 'ray'"):
        backends.get("rey")


def test_run_sweep_calls_the_configured_backend(monkeypatch, tmp_path):
    calls = []
    fake = backends.Backend(
        lambda cfg, trials, run_dir, steps, log: calls.append((cfg.sweep.backend, run_dir))
    )
    monkeypatch.setitem(backends.BACKENDS, "inprocess", fake)
    cfg = load_config("configs/demo.yaml", ["sweep.backend=inprocess"])
    backends.run_sweep(cfg, [], tmp_path, {}, log=lambda m: None)
    assert calls == [("inprocess", tmp_path)]
