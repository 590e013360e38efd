"""bench/hf_trainer.py compares like with like: the stock transformers.Trainer, given lorasweep's
example order, split, optimizer and LR schedule, follows the same loss curve (docs/method.md, Batch
semantics and loss normalisation; Learning-rate schedule)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lorasweep import models
from lorasweep.data.tokenize import Encoded
from lorasweep.train import batching

BENCH = Path(__file__).resolve().parents[2] / "bench" / "hf_trainer.py"


def _bench():
    spec = importlib.util.spec_from_file_location("hf_trainer_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _bench()


def test_five_step_curves_agree(bench):
    torch.set_num_threads(1)
    base, tok = models.load_base("builtin:tinyworld", "float32", "cpu")
    examples = bench.load_examples("builtin:tinyworld", 20, tok, 64)
    split = batching.derive_split(4, 2)  # micro 2 x accumulation 2: the loss spans micro-batches
    init = bench.adapter_state(bench.fresh_lora(base))
    ls = bench.run_lorasweep(base, examples, split, tok.pad_token_id)
    hf = bench.run_hf(base, examples, split, tok.pad_token_id)
    assert len(ls["losses"]) == len(hf["losses"]) == 5
    diff = bench.compare(ls, hf)
    assert diff["max_abs_loss_diff"] <= 1e-3
    assert diff["max_abs_weight_diff"] <= 1e-5
    # both sides trained (a curve pair of an untrained model would agree trivially)
    for run in (ls, hf):
        moved = {
            n.replace("module.", ""): float((t - init[n.replace("module.", "")]).abs().max())
            for n, t in run["state"].items()
        }
        assert min(v for n, v in moved.items() if "lora_B" in n) > 0
    assert len(set(ls["losses"])) == 5


@pytest.mark.parametrize(
    "lengths, micro, waste",
    [
        ([4, 4, 4, 4], 2, 0.0),  # equal lengths: no padding
        ([2, 4, 2, 4], 4, 4 / 16),  # one micro-batch of width 4: 4 padded of 16 slots
        ([2, 4, 2, 4], 1, 0.0),  # micro-batch 1: never padded
    ],
)
def test_padding_waste(bench, lengths, micro, waste):
    examples = [Encoded(list(range(1, n + 1)), 1) for n in lengths]
    split = batching.derive_split(4, micro)
    got = bench.padding_waste(examples, split)
    assert got["waste"] == pytest.approx(waste)
    assert got["token_slots"] - got["padded_tokens"] == sum(lengths)
