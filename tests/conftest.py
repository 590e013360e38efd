"""Shared fixtures: a micro Llama (random weights, for invariants) and the micro study config."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def micro_llama(seed: int = 0, vocab: int = 64, hidden: int = 32, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=48,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model


@pytest.fixture
def micro_model():
    return micro_llama()


# The smallest real study (one trial, a few rows, in-process): for tests of what a run writes or refuses.
TINY_STUDY = [
    "report.curvature_examples=0",  # the demo computes λmax first; tests of other things skip it
    "adapter.methods=[lora]",
    "train.batch_sizes=[8]",
    "train.lr_search=grid",
    "report.reference_batch_size=null",
    "report.reference_lr=null",
    "eval.selection.num_examples=8",
    "eval.selection.data=builtin:tinyworld-lite",
    "train.learning_rates=[5e-3]",
    "train.seeds=[0]",
    "data.num_train=16",
    "eval.num_examples=4",
    "eval.max_new_tokens=4",
    "sweep.backend=inprocess",
]
