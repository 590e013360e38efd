"""Several trials in one training pass: K adapters on one frozen base (``adapters/stacked.py``).

The step loop is ``loop.run_steps``, the same for a trial alone; this module supplies the members it
trains (:class:`StackedMembers`).  The trials of a group share the base model and the effective batch,
hence the micro-batch split; each keeps everything that makes it its own trial, with the same
arithmetic as a trial alone:

- its data order (its seed's ``batching.example_order``): step k's micro-batch i of every member forms
  one slice of one forward pass (members with the same seed carry copies of the same rows);
- its loss: its slice's token-loss sum over all micro-batches of the step divided by its own label
  tokens in the step (``loop.accumulate_step``);
- its AdamW state, LR and schedule, gradient-norm clipping (``torch.nn.utils.clip_grad_norm_``'s
  formula, per member), divergence check (``loop._divergence``) and dropout random stream;
- a member that diverges leaves the group at that step, before the update (as ``loop.train`` skips
  it), and the others go on with a smaller batch.

mLoRA (arXiv 2312.02515) and PLoRA (arXiv 2508.02932) share one base across LoRA jobs the same way.
Covered: one process, one device (CPU, or a GPU with bf16 autocast).  Not covered: several processes
(a distributed trial runs alone, ``loop.train``), fp16 loss scaling.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lorasweep.adapters.stacked import AdapterStack
from lorasweep.data.tokenize import IGNORE, Encoded, collate
from lorasweep.train import batching, noise_scale
from lorasweep.train.loop import TrainResult, TrainSpec, run_steps, shifted_labels


class StackedAdamW:
    """``torch.optim.AdamW`` (``foreach`` arithmetic, amsgrad off) on a (K, P) buffer, one LR and
    weight decay per row: the K members' updates in a few tensor operations.  A parameter group's
    ``lr_scale`` (LoRA+'s B matrices) multiplies its member's columns (``AdapterStack.lr_scale``)."""

    def __init__(self, stack: AdapterStack, betas=(0.9, 0.999), eps: float = 1e-8):
        self.stack = stack
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = torch.zeros_like(stack.flat)
        self.exp_avg_sq = torch.zeros_like(stack.flat)
        self.steps = 0

    def keep(self, members: list[int]) -> None:
        index = torch.tensor(members, dtype=torch.long, device=self.exp_avg.device)
        self.exp_avg = self.exp_avg.index_select(0, index)
        self.exp_avg_sq = self.exp_avg_sq.index_select(0, index)

    @torch.no_grad()
    def step(self, lrs: list[float], weight_decays: list[float]) -> None:
        p, g, scale = self.stack.flat, self.stack.grad, self.stack.lr_scale  # scale: (K, P) or None
        self.steps += 1
        column = lambda values: torch.tensor(values, dtype=p.dtype, device=p.device).unsqueeze(1)  # noqa: E731
        if any(weight_decays):
            decay = column([lr * wd for lr, wd in zip(lrs, weight_decays, strict=True)])
            p.mul_(1 - (decay if scale is None else decay * scale))
        self.exp_avg.lerp_(g, 1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        bias1 = 1 - self.beta1**self.steps
        bias2_sqrt = (1 - self.beta2**self.steps) ** 0.5
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
        step = column([-(lr / bias1) for lr in lrs])
        p.add_((self.exp_avg / denom) * (step if scale is None else step * scale))


@torch.no_grad()
def clip_members(stack: AdapterStack, max_norms: list[float]) -> list[float]:
    """Clip each member's gradient to its max norm; returns the norms before clipping."""
    norms = torch.linalg.vector_norm(stack.grad, dim=1)
    limit = torch.tensor(max_norms, dtype=norms.dtype, device=norms.device)
    stack.grad.mul_((limit / (norms + 1e-6)).clamp(max=1.0).unsqueeze(1))
    return norms.tolist()


def stacked_batch(slices: list[list[int]], examples: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """One padded batch of K equal slices of rows (slice k = ``slices[k]``), each right-padded to the
    widest; identical slices are collated once."""
    cache: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}
    parts = []
    for idx in slices:
        key = tuple(idx)
        if key not in cache:
            cache[key] = collate([examples[i] for i in idx], pad_id)
        parts.append(cache[key])
    width = max(p["input_ids"].shape[1] for p in parts)
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE}
    return {
        k: torch.cat([F.pad(p[k], (0, width - p[k].shape[1]), value=v) for p in parts])
        for k, v in fill.items()
    }


def slice_loss_sums(model, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    """Per slice, the sum of next-token cross-entropy over its label tokens: shape (k,)."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits
    losses = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        shifted_labels(batch["labels"]).reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    )
    return losses.view(k, -1).sum(1)


@torch.no_grad()
def stacked_heldout_losses(model, k: int, encoded: list[Encoded], pad_id: int, rows: int) -> list[float]:
    """Held-out loss of each of the ``k`` stacked adapters on the same rows (``evals/heldout.py``'s
    mean response-token loss): every forward holds ``k`` copies of at most ``rows // k`` rows, so it
    is no larger than one trial's evaluation batch."""
    device = next(model.parameters()).device
    per = max(1, rows // k)
    sums = torch.zeros(k, dtype=torch.float64)
    for start in range(0, len(encoded), per):
        idx = list(range(start, min(start + per, len(encoded))))
        batch = {n: v.to(device) for n, v in stacked_batch([idx] * k, encoded, pad_id).items()}
        sums += slice_loss_sums(model, batch, k).double().cpu()
    tokens = sum(e.n_label_tokens for e in encoded)
    return (sums / max(tokens, 1)).tolist()


def accumulate_packed(
    model,
    stack: AdapterStack,
    micro: list[list[list[int]]],
    examples: list[Encoded],
    pad_id: int,
    device,
    probe: noise_scale.StackedGradProbe | None = None,
) -> tuple[list[float], list[int]]:
    """Backward over one step for every member; ``micro[k][i]`` = member k's micro-batch i (indices).

    Each member's loss is normalised by its own label tokens in the whole step.  Returns (mean token
    loss, label tokens) per member.  ``probe`` reads each micro-batch's per-member gradient (noise scale).
    """
    k = len(micro)
    totals = [sum(examples[i].n_label_tokens for mb in m for i in mb) for m in micro]
    scale = torch.tensor([1 / max(t, 1) for t in totals], device=device)
    loss_total = torch.zeros(k, device=device)
    if probe is not None:
        probe.begin(totals, len(micro[0]))
    for i in range(len(micro[0])):
        batch = {n: v.to(device) for n, v in stacked_batch([m[i] for m in micro], examples, pad_id).items()}
        sums = slice_loss_sums(model, batch, k)
        with warnings.catch_warnings():  # gradients accumulate into views of one buffer, on purpose
            warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")
            (sums * scale).sum().backward()
        if probe is not None:
            tokens = [[examples[j].n_label_tokens for j in m[i]] for m in micro]
            probe.after_backward(stack.grad, tokens, i == len(micro[0]) - 1)
        loss_total += sums.detach()
    return [loss / max(t, 1) for loss, t in zip(loss_total.tolist(), totals, strict=True)], totals


class StackedMembers:
    """The members of a packed group for the step loop (``loop.run_steps``): K adapters stacked on
    one frozen base (``adapters/stacked.py``), one ``StackedAdamW`` and one noise probe for all."""

    scaled = False  # fp16 loss scaling is not covered (``packing.packable``)

    def __init__(self, model, stack: AdapterStack, pad_id: int, device):
        self.model, self.stack, self.pad_id, self.device = model, stack, pad_id, device
        self.optimizer = StackedAdamW(stack)
        self.probe = noise_scale.StackedGradProbe(stack.size)

    def backward(self, examples, indices, split, lengths):
        micro = [batching.rank_micro_batches(idx, split, 0, lengths) for idx in indices]
        return accumulate_packed(
            self.model, self.stack, micro, examples, self.pad_id, self.device, self.probe
        )

    def reset(self) -> None:
        self.stack.zero_grad()

    def clip(self, max_norms):
        return clip_members(self.stack, max_norms)

    def noise(self, norms, tokens):
        return self.probe.observe(norms, tokens)

    def update(self, lrs, weight_decays):
        self.optimizer.step(lrs, weight_decays)

    def keep(self, positions):
        self.stack.keep(positions)
        self.optimizer.keep(positions)
        self.probe.keep(positions)

    def state(self, position):
        return self.stack.member_state(position)


def train_packed(
    model,
    stack: AdapterStack,
    examples: list[Encoded],
    specs: list[TrainSpec],
    pad_id: int,
    device,
    on_step: list[Callable[[dict], None]],
    on_leave: Callable[[int, TrainResult, dict], None] = lambda k, result, state: None,
    probe: Callable[[], list[float]] | None = None,
) -> list[TrainResult]:
    """Train the stacked adapters of ``model``, adapter k as the trial ``specs[k]``: the step loop
    (``loop.run_steps``) on :class:`StackedMembers`."""
    if stack.size != len(specs):
        raise ValueError(f"{stack.size} stacked adapters for {len(specs)} trials")
    return run_steps(StackedMembers(model, stack, pad_id, device), examples, specs, on_step, on_leave, probe)
