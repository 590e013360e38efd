"""On CUDA: a bf16-autocast training step is finite, exact in its batch, and close to fp32 (pytest -m gpu).

Skipped without CUDA; ``bench/gpu_check.sh`` runs these.
"""

from __future__ import annotations

import math

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from lorasweep.train import batching, device, loop
from tests.train.test_accumulation import grads, lora_model, rel, variable_examples

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def accelerator(mixed_precision: str) -> Accelerator:
    # accelerate keeps one state per process; other tests may have made a CPU one
    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision=mixed_precision)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def step(acc: Accelerator, examples, split: batching.BatchSplit):
    model = acc.prepare_model(lora_model())
    micro = [[examples[i] for i in mb] for mb in batching.rank_micro_batches(list(range(8)), split, 0)]
    loss, tokens = loop.accumulate_step(model, micro, 0, acc)
    return model, loss, tokens, grads(model)


def test_bf16_autocast_step_is_finite_exact_and_close_to_fp32():
    examples = variable_examples()
    split = batching.derive_split(8, 2)
    assert (split.micro, split.accumulation, split.world) == (2, 4, 1)
    fp32 = accelerator("no")
    _, loss32, tokens32, g32 = step(fp32, examples, split)
    acc = accelerator("bf16")
    model, loss, tokens, g = step(acc, examples, split)
    assert acc.device.type == "cuda" and next(model.parameters()).device.type == "cuda"
    assert tokens == tokens32 == sum(e.n_label_tokens for e in examples)  # every example, once
    assert math.isfinite(loss) and bool(torch.isfinite(g).all()) and g.norm() > 0
    assert abs(loss - loss32) <= 2e-2 * loss32
    assert rel(g, g32) <= 5e-2  # bf16 has an 8-bit mantissa; the structure of the gradient is the same


def test_bf16_autocast_really_computes_in_bf16():
    acc = accelerator("bf16")
    model = acc.prepare_model(lora_model())
    seen = []
    layer = model.base_model.model.model.layers[0].mlp.up_proj.base_layer
    layer.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    loop.accumulate_step(model, [variable_examples(2)], 0, acc)
    assert seen == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)  # fp32 master weights


def test_train_on_cuda_completes_with_exact_batches_and_reports_memory():
    acc = accelerator(device.mixed_precision())
    assert device.enable_tf32() and device.tf32_enabled()
    device.reset_peak_memory()
    model = acc.prepare_model(lora_model())
    examples = variable_examples(24, seed=2)
    split = batching.derive_split(8, 4)
    spec = loop.TrainSpec(split, lr=1e-2, seed=0, scheduler="constant", warmup_ratio=0.0)
    result = loop.train(model, examples, spec, 0, acc)
    assert result.status == "completed" and result.steps_done == 3
    assert all(math.isfinite(x) for x in result.losses)
    assert result.label_tokens == sum(e.n_label_tokens for e in examples)  # 3 steps x 8 = all 24
    memory = device.peak_memory()
    assert memory["kind"] == "cuda_max_allocated" and memory["mb"] > 0
    assert device.describe(acc)["name"] == torch.cuda.get_device_name(0)


def _no_tf32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.mark.parametrize("method", ["lora", "pissa"])
def test_a_packed_group_on_cuda_equals_its_trials_alone_in_fp32(method):
    """The stacked layer's batched products on a GPU, no autocast, no TF32: each member trains as its
    trial alone (losses, gradient norms, adapter tensors; rel <= 1e-4: the kernels differ by shape)."""
    from tests.train import test_packed as tp

    _no_tf32()
    examples = variable_examples(16)
    out, steps, states, _ = tp.together(method, tp.MEMBERS, examples, acc=accelerator("no"))
    for k, (lr, seed) in enumerate(tp.MEMBERS):
        assert out[k].status == "completed" and out[k].steps_done == 4
        alone = tp.alone(method, lr, seed, examples, acc=accelerator("no"))
        tp.assert_same_trial((out[k], steps[k], states[k]), alone, tol=1e-4)


def test_a_packed_lora_group_under_bf16_autocast_trains_as_its_trials_alone():
    """bf16 autocast, the sweep's setting on a GPU (only LoRA packs there): the same losses and
    adapters as each trial alone under the same autocast, to bf16 precision."""
    from tests.train import test_packed as tp

    examples = variable_examples(16)
    out, steps, states, _ = tp.together("lora", tp.MEMBERS, examples, acc=accelerator("bf16"))
    for k, (lr, seed) in enumerate(tp.MEMBERS):
        r1, steps1, state1 = tp.alone("lora", lr, seed, examples, acc=accelerator("bf16"))
        assert out[k].status == r1.status == "completed" and out[k].steps_done == r1.steps_done == 4
        for a, b in zip(steps[k], steps1, strict=True):
            assert abs(a["loss"] - b["loss"]) <= 2e-2 * abs(b["loss"]), (a, b)
        for name, (a, b) in state1.items():
            assert tp.rel(states[k][name][0], a) <= 5e-2 and tp.rel(states[k][name][1], b) <= 5e-2, name
            assert states[k][name][1].abs().max() > 0  # B starts at zero: it trained
