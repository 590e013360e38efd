"""Gradient accumulation is exact: micro 2 x accumulation 4 == one batch of 8 (docs/method.md)."""

from __future__ import annotations

import random

import torch
from accelerate import Accelerator

from lorasweep.adapters import AdapterSpec, attach
from lorasweep.data.tokenize import Encoded, collate
from lorasweep.train.loop import accumulate_step, token_loss_sum
from tests.conftest import micro_llama

TARGETS = ("q_proj", "v_proj", "up_proj")


def variable_examples(n: int = 8, seed: int = 0) -> list[Encoded]:
    """Different lengths and prompt lengths: exactly where per-micro-batch means go wrong."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(5, 30)
        out.append(
            Encoded([rng.randrange(1, 64) for _ in range(length)], n_prompt=rng.randint(1, length - 2))
        )
    return out


def lora_model():
    spec = AdapterSpec(rank=4, alpha=8.0, dropout=0.0, target_modules=TARGETS, seed=0)
    model = attach("lora", micro_llama(), spec)
    with torch.no_grad():  # non-zero B so every adapter parameter gets a gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return model


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_micro2_accum4_equals_batch8():
    examples = variable_examples()
    acc = Accelerator(cpu=True)
    model = lora_model()
    loss8, tok8 = accumulate_step(model, [examples], pad_id=0, accelerator=acc)
    g8 = grads(model)
    model.zero_grad()
    loss24, tok24 = accumulate_step(model, [examples[i : i + 2] for i in range(0, 8, 2)], 0, acc)
    g24 = grads(model)
    assert tok8 == tok24 == sum(e.n_label_tokens for e in examples)
    assert abs(loss8 - loss24) <= 1e-6 * abs(loss8)
    assert rel(g24, g8) <= 1e-5


def test_the_reference_loss_is_the_token_mean_over_the_whole_batch():
    examples = variable_examples()
    model = lora_model()
    batch = collate(examples, pad_id=0)
    n = (batch["labels"][:, 1:] != -100).sum()
    expected = token_loss_sum(model, batch) / n
    loss, _ = accumulate_step(model, [examples], 0, Accelerator(cpu=True))
    assert abs(loss - expected.item()) < 1e-6


def test_averaging_per_micro_batch_would_differ():
    """The test above can fail: the naive mean-of-means gives measurably different gradients."""
    examples = variable_examples()
    model = lora_model()
    accumulate_step(model, [examples], 0, Accelerator(cpu=True))
    g8 = grads(model)
    model.zero_grad()
    for i in range(0, 8, 2):
        b = collate(examples[i : i + 2], 0)
        n = (b["labels"][:, 1:] != -100).sum()
        (token_loss_sum(model, b) / n / 4).backward()
    assert rel(grads(model), g8) > 1e-3


def test_prompt_and_padding_carry_no_loss():
    e = Encoded([5, 6, 7, 8, 9], n_prompt=3)
    b = collate([e, Encoded([1, 2, 3], n_prompt=1)], pad_id=0)
    assert b["labels"].tolist() == [[-100, -100, -100, 8, 9], [-100, 2, 3, -100, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert e.n_label_tokens == 2


def test_length_grouped_micro_batches_train_the_same_step():
    """train.group_by_length: same examples per process, sorted by length, so fewer pad tokens; the
    step's loss and gradient equal the ungrouped split's up to float rounding."""
    from lorasweep.train import batching

    examples = variable_examples(16, seed=3)
    lengths = [len(e.input_ids) for e in examples]
    split = batching.BatchSplit(16, 4, 4, 1)
    order = list(range(16))
    plain = batching.rank_micro_batches(order, split, 0)
    grouped = batching.rank_micro_batches(order, split, 0, lengths)
    assert sorted(i for mb in grouped for i in mb) == order
    flat = [lengths[i] for mb in grouped for i in mb]
    assert flat == sorted(flat)

    def padded(mbs):
        return sum(len(mb) * max(lengths[i] for i in mb) for mb in mbs)

    assert padded(grouped) < padded(plain)
    acc = Accelerator(cpu=True)
    model = lora_model()
    loss_p, tok_p = accumulate_step(model, [[examples[i] for i in mb] for mb in plain], 0, acc)
    g_p = grads(model)
    model.zero_grad()
    loss_g, tok_g = accumulate_step(model, [[examples[i] for i in mb] for mb in grouped], 0, acc)
    assert tok_p == tok_g
    assert abs(loss_p - loss_g) <= 1e-6 * abs(loss_p)
    assert rel(grads(model), g_p) <= 1e-5


def test_a_two_rank_step_groups_only_inside_each_rank():
    from lorasweep.train import batching

    lengths = [9, 1, 8, 2, 7, 3, 6, 4]
    split = batching.BatchSplit(8, 2, 2, 2)
    order = list(range(8))
    r0 = batching.rank_micro_batches(order, split, 0, lengths)
    r1 = batching.rank_micro_batches(order, split, 1, lengths)
    assert sorted(sum(r0, [])) == [0, 1, 2, 3] and sorted(sum(r1, [])) == [4, 5, 6, 7]
    assert r0 == [[1, 3], [2, 0]] and r1 == [[5, 7], [6, 4]]


def test_padding_free_micro_batches_equal_padded_ones():
    """train.padding_free: each micro-batch as one unpadded row with restarting positions gives the
    padded step's loss, label-token count and gradient up to float rounding (attention stays inside
    each sequence; the first token of a sequence is not predicted from the one before it)."""
    from lorasweep.data.tokenize import IGNORE, collate_flat

    examples = variable_examples(8, seed=5)
    examples.append(Encoded([3, 4, 5, 6], n_prompt=0))  # no prompt: the first token is still not a label
    flat = collate_flat(examples)
    assert flat["input_ids"].shape == (1, sum(len(e.input_ids) for e in examples))  # no padding at all
    assert int((flat["labels"][0, 1:] != IGNORE).sum()) == sum(e.n_label_tokens for e in examples)
    acc = Accelerator(cpu=True)
    model = lora_model()
    micro = [examples[i : i + 3] for i in range(0, 9, 3)]
    loss_p, tok_p = accumulate_step(model, micro, 0, acc)
    g_p = grads(model)
    model.zero_grad()
    loss_f, tok_f = accumulate_step(model, micro, 0, acc, flat=True)
    assert tok_p == tok_f
    assert abs(loss_p - loss_f) <= 1e-5 * abs(loss_p)
    assert rel(grads(model), g_p) <= 1e-5
    # without the restarting positions the sequences would see each other: the check can fail
    model.zero_grad()
    wrong = token_loss_sum(
        model,
        {
            "input_ids": flat["input_ids"],
            "attention_mask": torch.ones_like(flat["input_ids"]),
            "labels": flat["labels"],
        },
    )
    padded = sum(token_loss_sum(model, collate(mb, 0)).item() for mb in [examples])
    assert abs(wrong.item() - padded) > 1e-3 * abs(padded)
