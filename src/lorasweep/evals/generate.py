"""Batched greedy generation with a pinned batch size (it changes greedy results: padding numerics)."""

from __future__ import annotations

import functools

import torch

from lorasweep.data.tokenize import bos_ids


@functools.lru_cache(maxsize=8192)
def prompt_ids(tokenizer, prompt: str) -> tuple[int, ...]:
    """A prompt's token ids, tokenised once per tokenizer: the adapters of a packed group are evaluated
    one after another with the same tokenizer on the same prompts."""
    return tuple(bos_ids(tokenizer, prompt) + tokenizer(prompt, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions of ``prompts`` in order, each cut at EOS; left padding, fixed batches."""
    return generate_copies(model, tokenizer, prompts, max_new_tokens, batch_size, 1)[0]


@torch.no_grad()
def generate_copies(
    model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int, copies: int
) -> list[list[str]]:
    """``generate`` with every batch of prompts stacked ``copies`` times (copy c = rows
    [c·m, (c+1)·m)), for a model whose c-th slice of rows is a different adapter
    (``adapters/stacked.py``): per copy, the completions of ``prompts``.  Each copy's rows are padded
    exactly as ``generate`` pads them alone, so a row's arithmetic does not depend on the others."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    out: list[list[str]] = [[] for _ in range(copies)]
    for start in range(0, len(prompts), batch_size):
        encoded = [prompt_ids(tokenizer, p) for p in prompts[start : start + batch_size]]
        width = max(map(len, encoded))
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, e in enumerate(encoded):
            ids[i, width - len(e) :] = torch.tensor(e)
            mask[i, width - len(e) :] = 1
        gen = model.generate(
            input_ids=ids.repeat(copies, 1).to(device),
            attention_mask=mask.repeat(copies, 1).to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad,
        )
        for j, row in enumerate(gen[:, width:].tolist()):
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            out[j // len(encoded)].append(tokenizer.decode(row, skip_special_tokens=True))
    return out
