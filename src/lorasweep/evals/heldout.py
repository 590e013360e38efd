"""Held-out loss: mean response-token cross-entropy on the evaluation rows (same masking as training)."""

from __future__ import annotations

import torch

from lorasweep.data.tokenize import Encoded, collate
from lorasweep.train.loop import token_loss_sum


@torch.no_grad()
def heldout_loss(model, encoded: list[Encoded], pad_id: int, batch_size: int) -> float:
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
        total += token_loss_sum(model, batch).item()
        tokens += sum(e.n_label_tokens for e in chunk)
    return total / max(tokens, 1)
