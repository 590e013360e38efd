"""The training step loop, on ``accelerate``: the loop is what the study measures, so it is ours.

Per optimizer step: the step's examples are split into micro-batches (``batching.py``); the loss is the
*sum* of token losses over all micro-batches of the step divided by the number of label tokens in the
whole step, across processes (docs/method.md, Batch semantics).  Dividing per micro-batch
instead would weight short and long examples differently as the split changes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lorasweep.data.tokenize import IGNORE, Encoded, collate, collate_flat
from lorasweep.train import batching, noise_scale, schedule


@dataclass(frozen=True)
class TrainSpec:
    split: batching.BatchSplit
    lr: float
    seed: int
    epochs: int = 1
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    divergence_factor: float = 10.0
    group_by_length: bool = False  # micro-batches of similar length inside each step (less padding)
    padding_free: bool = False  # each micro-batch as one unpadded row (collate_flat)


@dataclass
class TrainResult:
    status: str  # "completed" or "diverged"
    total_steps: int
    steps_done: int = 0
    warmup_steps: int = 0
    diverged_at: int | None = None
    divergence_reason: str | None = None
    label_tokens: int = 0
    input_tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    noise_scale: dict = field(default_factory=dict)  # noise_scale.summarize (B_simple) or why not
    split: batching.BatchSplit | None = None  # the split actually used (after OOM fallbacks)
    oom_retries: list[dict] = field(default_factory=list)


def token_loss_sum(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum (not mean) of next-token cross-entropy over the label tokens of ``batch`` (padded, from
    ``collate``, or one padding-free row with ``position_ids``, from ``collate_flat``)."""
    # no KV cache (nothing reads it; and transformers looks for packed sequences only without one)
    if "position_ids" in batch:
        logits = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits
    else:
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),  # a view: no copy of the (rows, T, vocab) logits
        shifted_labels(batch["labels"]).reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


def shifted_labels(labels: torch.Tensor) -> torch.Tensor:
    """Position t's target is token t+1: the labels shifted left, the last position ignored.  Shifting
    the labels rather than slicing the logits (``logits[:, :-1]``) spares a copy of the logits, which
    for a 49K-token vocabulary is the largest tensor of the step."""
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE)


def accumulate_step(
    model, micro_batches: list[list[Encoded]], pad_id: int, accelerator, probe=None, flat: bool = False
) -> tuple[float, int]:
    """Backward over one step's micro-batches, normalised by the step's global label-token count.

    Returns (mean token loss of the step over all processes, global label tokens).  ``probe``
    (``noise_scale.MicroGradProbe``) reads each micro-batch's gradient between backward passes.
    ``flat``: each micro-batch as one padding-free row (``collate_flat``, ``train.padding_free``).
    """
    world = accelerator.num_processes
    local = sum(e.n_label_tokens for mb in micro_batches for e in mb)
    counts = torch.tensor([float(local), 0.0], device=accelerator.device)
    total = int(accelerator.reduce(counts, "sum")[0].item()) if world > 1 else local
    loss_total = torch.zeros((), device=accelerator.device)
    if probe is not None:
        probe.begin(total, world, len(micro_batches))
    for i, mb in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = contextlib.nullcontext() if last or world == 1 else accelerator.no_sync(model)
        with sync:
            batch = {
                k: v.to(accelerator.device)
                for k, v in (collate_flat(mb) if flat else collate(mb, pad_id)).items()
            }
            loss_sum = token_loss_sum(model, batch)
            # DDP averages gradients over processes; x world turns that average back into the sum.
            accelerator.backward(loss_sum * (world / max(total, 1)))
        if probe is not None:
            probe.after_backward([e.n_label_tokens for e in mb], last)
        loss_total += loss_sum.detach()
    if world > 1:
        loss_total = accelerator.reduce(loss_total, "sum")
    return loss_total.item() / max(total, 1), total


def is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def retry_on_oom(attempt, split, reset, on_retry):
    """``attempt(split)``; on out-of-memory, ``reset()`` (drop the failed attempt's partial gradients)
    and retry with a smaller micro-batch and more accumulation (``BatchSplit.smaller``: same effective
    batch, same examples, same order), down to micro-batch 1.  Returns (attempt's result, split used)."""
    while True:
        try:
            return attempt(split), split
        except (RuntimeError, torch.OutOfMemoryError) as e:
            if not is_oom(e) or split.micro == 1:
                raise
            reset()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            smaller = split.smaller()
            on_retry(split, smaller)
            split = smaller


def step_with_oom_fallback(
    model, examples, indices, split, pad_id, accelerator, on_retry, probe=None, lengths=None, flat=False
):
    """One step's backward at ``split``, retried at a smaller micro-batch on out-of-memory."""

    def attempt(split):
        micro = [
            [examples[i] for i in mb]
            for mb in batching.rank_micro_batches(indices, split, accelerator.process_index, lengths)
        ]
        return accumulate_step(model, micro, pad_id, accelerator, probe, flat)

    (loss, tokens), split = retry_on_oom(attempt, split, lambda: model.zero_grad(set_to_none=True), on_retry)
    return loss, tokens, split


def train(
    model,
    examples: list[Encoded],
    spec: TrainSpec,
    pad_id: int,
    accelerator,
    on_step: Callable[[dict], None] = lambda record: None,
    param_groups: list[dict] | None = None,
) -> TrainResult:
    """Train the trainable parameters of ``model`` (already ``accelerator.prepare``d) for ``spec.epochs``.

    ``param_groups`` (the adapter method's, default: one group of every trainable parameter) go to
    AdamW as they are; a group's ``lr_scale`` multiplies the scheduled LR (LoRA+'s B matrices).
    """
    split = spec.split
    per_epoch = batching.steps_per_epoch(len(examples), split.effective)
    if per_epoch == 0:
        raise ValueError(f"{len(examples)} examples are fewer than one batch of {split.effective}")
    total = per_epoch * spec.epochs
    warmup = schedule.warmup_steps(total, spec.warmup_ratio)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    params = [p for g in groups for p in g["params"]]
    # foreach: one multi-tensor update per step instead of a Python loop over the adapter's many small
    # tensors (CUDA's default already); the same arithmetic, bit-identical results, less per-step overhead.
    optimizer = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay, foreach=True)
    optimizer = accelerator.prepare_optimizer(optimizer)
    lr_at = lambda s: spec.lr * schedule.lr_factor(s, total, warmup, spec.scheduler)  # noqa: E731
    result = TrainResult("completed", total, warmup_steps=warmup, split=split)
    max_norm = spec.max_grad_norm if spec.max_grad_norm is not None else math.inf
    # fp16 loss scaling leaves the micro-batch gradients scaled: no noise scale then
    probe = noise_scale.MicroGradProbe(params) if getattr(accelerator, "scaler", None) is None else None
    noise_log: list[dict] = []
    lengths = [len(e.input_ids) for e in examples] if spec.group_by_length else None
    t_start = time.perf_counter()
    model.train()
    step = 0
    for epoch in range(spec.epochs):
        order = batching.example_order(len(examples), spec.seed, epoch)
        for k in range(per_epoch):
            t0 = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step) * group.get("lr_scale", 1.0)
            indices = batching.step_indices(order, k, split)

            def retried(old, new, step=step):
                result.oom_retries.append({"step": step + 1, "from_micro": old.micro, "to_micro": new.micro})

            loss, tokens, split = step_with_oom_fallback(
                model,
                examples,
                indices,
                split,
                pad_id,
                accelerator,
                retried,
                probe,
                lengths,
                spec.padding_free,
            )
            result.split = split
            grad_norm = float(accelerator.clip_grad_norm_(params, max_norm))
            noise = probe.observe(grad_norm, [examples[i].n_label_tokens for i in indices]) if probe else {}
            noise_log.append(noise)
            scaled = getattr(accelerator, "scaler", None) is not None
            reason = _divergence(loss, grad_norm, result.losses, spec.divergence_factor, scaled)
            if reason is None:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            result.label_tokens += tokens
            result.input_tokens += sum(len(examples[i].input_ids) for i in indices)
            result.losses.append(loss)
            on_step(
                {
                    "step": step + 1,
                    "epoch": epoch,
                    "loss": loss,
                    "lr": lr_at(step),
                    "grad_norm": grad_norm,
                    "tokens": tokens,
                    "seconds": time.perf_counter() - t0,
                    **noise,
                }
            )
            step += 1
            result.steps_done = step
            if reason is not None:
                result.status, result.diverged_at, result.divergence_reason = "diverged", step, reason
                result.seconds = time.perf_counter() - t_start
                result.noise_scale = noise_scale.summarize_trial(noise_log, split)
                return result
    result.seconds = time.perf_counter() - t_start
    result.noise_scale = noise_scale.summarize_trial(noise_log, split)
    return result


def _divergence(
    loss: float, grad_norm: float, history: list[float], factor: float, scaled: bool = False
) -> str | None:
    if not math.isfinite(loss):
        return f"non-finite loss ({loss})"
    # fp16 loss scaling: an overflowing gradient is expected; the scaler skips that step and lowers
    # the scale, so it is not divergence.
    if not math.isfinite(grad_norm) and not scaled:
        return f"non-finite gradient norm ({grad_norm})"
    if history and loss > factor * history[0]:
        return f"loss {loss:.4g} exceeded {factor:g} x the first loss {history[0]:.4g}"
    return None
