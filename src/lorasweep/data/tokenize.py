"""Tokenise (prompt, response) pairs with the prompt masked out, and pad micro-batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE = -100  # label of tokens that carry no loss (prompt, padding)


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    n_prompt: int  # tokens before the response; labels are input_ids with these masked

    @property
    def n_label_tokens(self) -> int:
        """Tokens whose prediction is trained: every response token (predicted from its predecessor)."""
        return len(self.input_ids) - max(self.n_prompt, 1)


def encode(tokenizer, prompt: str, response: str, max_len: int) -> Encoded:
    """BOS + prompt + response + EOS, truncated to ``max_len``; prompt and response tokenised apart
    so the boundary is exact."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    bos = bos_ids(tokenizer, prompt)
    ids = (bos + p + r)[:max_len]
    return Encoded(ids, min(len(bos) + len(p), len(ids)))


def bos_ids(tokenizer, prompt: str) -> list[int]:
    """[BOS] unless the tokenizer has none or the prompt (a chat template's output) already starts with it."""
    if tokenizer.bos_token_id is None or (tokenizer.bos_token and prompt.startswith(tokenizer.bos_token)):
        return []
    return [tokenizer.bos_token_id]


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (prompt and padding = IGNORE)."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        labels[i, e.n_prompt : n] = ids[i, e.n_prompt : n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_flat(batch: list[Encoded]) -> dict[str, torch.Tensor]:
    """The micro-batch as ONE row with no padding (``train.padding_free``): the sequences one after the
    other, ``position_ids`` restarting at 0 for each.  A causal LM given ``position_ids`` and no
    attention mask attends only within each sequence (transformers' packed-sequence mask, found from
    the restarts), so every token sees what it sees in the padded batch.  Labels as in :func:`collate`;
    each sequence's first label position is masked as well, since after the shift it would be predicted
    from the previous sequence's last token (its padded counterpart is never predicted either), so the
    label tokens are exactly ``Encoded.n_label_tokens``."""
    ids = torch.tensor([t for e in batch for t in e.input_ids], dtype=torch.long)
    positions = torch.cat([torch.arange(len(e.input_ids)) for e in batch])
    labels = torch.full_like(ids, IGNORE)
    start = 0
    for e in batch:
        n = len(e.input_ids)
        first = start + max(e.n_prompt, 1)
        labels[first : start + n] = ids[first : start + n]
        start += n
    return {"input_ids": ids[None], "position_ids": positions[None], "labels": labels[None]}
