"""Out-of-memory fallback (injected) and divergence detection in the training loop."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from lorasweep.train import batching, loop
from tests.train.test_accumulation import lora_model, variable_examples


def run(monkeypatch, spec, examples, fail_above: int | None = None, records=None):
    real = loop.token_loss_sum
    seen = []

    def flaky(model, batch):
        seen.append(batch["input_ids"].shape[0])
        if fail_above is not None and batch["input_ids"].shape[0] > fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(model, batch)

    monkeypatch.setattr(loop, "token_loss_sum", flaky)
    model = lora_model()
    acc = Accelerator(cpu=True)
    result = loop.train(
        model, examples, spec, 0, acc, on_step=(records.append if records is not None else lambda r: None)
    )
    return model, result, seen


def adapter_weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])


def test_oom_halves_the_micro_batch_and_keeps_the_result(monkeypatch):
    examples = variable_examples(16, seed=1)
    spec = loop.TrainSpec(split=batching.derive_split(8, 8), lr=1e-2, seed=0)
    clean_model, clean, _ = run(monkeypatch, spec, examples)
    model, result, seen = run(monkeypatch, spec, examples, fail_above=2)
    assert result.status == "completed" and result.steps_done == 2
    assert (result.split.micro, result.split.accumulation) == (2, 4)  # same effective batch 8
    assert result.oom_retries == [
        {"step": 1, "from_micro": 8, "to_micro": 4},
        {"step": 1, "from_micro": 4, "to_micro": 2},
    ]
    assert seen[:3] == [8, 4, 2] and max(seen[3:]) == 2
    # same data, same order, same effective batch: the same training result
    torch.testing.assert_close(adapter_weights(model), adapter_weights(clean_model), atol=1e-5, rtol=1e-4)
    assert all(abs(a - b) < 1e-5 for a, b in zip(result.losses, clean.losses, strict=True))


def test_oom_at_micro_batch_one_is_raised(monkeypatch):
    import pytest

    spec = loop.TrainSpec(split=batching.derive_split(4, 4), lr=1e-2, seed=0)
    with pytest.raises(torch.OutOfMemoryError):
        run(monkeypatch, spec, variable_examples(8), fail_above=0)


def test_non_finite_loss_is_divergence():
    assert "non-finite loss" in loop._divergence(float("nan"), 1.0, [2.0], 10)
    assert "non-finite gradient" in loop._divergence(2.0, float("inf"), [2.0], 10)
    assert "exceeded 10 x" in loop._divergence(25.0, 1.0, [2.0], 10)
    assert loop._divergence(19.0, 1.0, [2.0], 10) is None
