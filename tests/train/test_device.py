"""Device helpers on CPU: no autocast, no TF32, peak RSS reported, the launcher's precision wins."""

from __future__ import annotations

import pytest
import torch

from lorasweep.train import device

cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU behaviour")


@cpu_only
def test_cpu_runs_fp32_without_tf32(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert device.mixed_precision() == "no"
    assert device.enable_tf32() is False and device.tf32_enabled() is False


def test_accelerate_launch_precision_wins(monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert device.mixed_precision() == "fp16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")
    with pytest.raises(ValueError, match="valid: no, bf16, fp16"):
        device.mixed_precision()


@cpu_only
def test_peak_memory_is_the_process_rss_on_cpu():
    device.reset_peak_memory()
    before = device.peak_memory()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    after = device.peak_memory()
    del block
    assert before["kind"] == after["kind"] == "cpu_peak_rss"
    assert 10 < before["mb"] <= after["mb"]


def test_a_single_process_is_the_main_one():
    from accelerate.state import AcceleratorState

    try:
        assert device.is_main_process()
    finally:  # accelerate keeps one state per process: leave none behind for the next test
        AcceleratorState._reset_state(reset_partial_state=True)
