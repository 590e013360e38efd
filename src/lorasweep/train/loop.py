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
from typing import Protocol

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
    probe_seconds: float = 0.0  # the same-step probe's time (not in ``seconds``)


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


class Members(Protocol):
    """What the step loop trains: K >= 1 adapters (members) on one model, each a trial of its own.

    ``SingleModel`` is one trial's model (any method, DDP and fp16 loss scaling included);
    ``packed.StackedMembers`` is K LoRA-family adapters stacked on one frozen base.  Positions are
    those of the members still training, in order; ``keep`` drops the others."""

    model: torch.nn.Module  # put in training mode by the loop (the probe puts it back after reading)
    scaled: bool  # fp16 loss scaling: a non-finite gradient is the scaler's to skip, not divergence

    def backward(
        self, examples: list[Encoded], indices: list[list[int]], split, lengths
    ) -> tuple[list[float], list[int]]:
        """One step's backward; ``indices[k]``: member k's rows.  Returns (loss, label tokens) per member."""

    def reset(self) -> None:
        """Drop the gradients (after a step, or a step that ran out of memory)."""

    def clip(self, max_norms: list[float]) -> list[float]:
        """Clip each member's gradient; returns the norms before clipping."""

    def noise(self, norms: list[float], tokens: list[list[int]]) -> list[dict]:
        """Each member's gradient-noise fields for this step (``noise_scale``)."""

    def update(self, lrs: list[float], weight_decays: list[float]) -> None:
        """One optimizer step, member k at ``lrs[k]``."""

    def keep(self, positions: list[int]) -> None: ...

    def state(self, position: int) -> dict:
        """The member's adapter tensors as they are now (before a failed update)."""


class SingleModel:
    """One trial's model for the step loop: the model ``accelerator.prepare``d, AdamW on the method's
    ``param_groups`` (default: every trainable parameter in one group; a group's ``lr_scale``
    multiplies the scheduled LR, LoRA+'s B matrices)."""

    def __init__(self, model, accelerator, spec: TrainSpec, pad_id: int, param_groups: list[dict] | None):
        self.model, self.accelerator, self.pad_id, self.flat = model, accelerator, pad_id, spec.padding_free
        groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
        self.params = [p for g in groups for p in g["params"]]
        # foreach: one multi-tensor update per step instead of a Python loop over the adapter's many
        # small tensors (CUDA's default already); the same arithmetic, bit-identical results.
        optimizer = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay, foreach=True)
        self.optimizer = accelerator.prepare_optimizer(optimizer)
        self.scaled = getattr(accelerator, "scaler", None) is not None
        # fp16 loss scaling leaves the micro-batch gradients scaled: no noise scale then
        self.probe = None if self.scaled else noise_scale.MicroGradProbe(self.params)

    def backward(self, examples, indices, split, lengths):
        rank = self.accelerator.process_index
        micro = [
            [examples[i] for i in mb] for mb in batching.rank_micro_batches(indices[0], split, rank, lengths)
        ]
        loss, tokens = accumulate_step(
            self.model, micro, self.pad_id, self.accelerator, self.probe, self.flat
        )
        return [loss], [tokens]

    def reset(self) -> None:
        self.model.zero_grad(set_to_none=True)

    def clip(self, max_norms):
        return [float(self.accelerator.clip_grad_norm_(self.params, max_norms[0]))]

    def noise(self, norms, tokens):
        return [self.probe.observe(norms[0], tokens[0]) if self.probe else {}]

    def update(self, lrs, weight_decays):
        for group in self.optimizer.param_groups:
            group["lr"] = lrs[0] * group.get("lr_scale", 1.0)
        self.optimizer.step()

    def keep(self, positions):
        if positions != [0]:
            raise ValueError("a single model has one member")

    def state(self, position):
        return {}  # the model itself holds it


def train(
    model,
    examples: list[Encoded],
    spec: TrainSpec,
    pad_id: int,
    accelerator,
    on_step: Callable[[dict], None] = lambda record: None,
    param_groups: list[dict] | None = None,
) -> TrainResult:
    """Train the trainable parameters of ``model`` (already ``accelerator.prepare``d) as one trial:
    :func:`run_steps` on a :class:`SingleModel`."""
    members = SingleModel(model, accelerator, spec, pad_id, param_groups)
    return run_steps(members, examples, [spec], [on_step])[0]


def run_steps(
    members: Members,
    examples: list[Encoded],
    specs: list[TrainSpec],
    on_step: list[Callable[[dict], None]],
    on_leave: Callable[[int, TrainResult, dict], None] = lambda k, result, state: None,
    probe: Callable[[], list[float]] | None = None,
) -> list[TrainResult]:
    """The step loop, for one trial or a packed group: member k trains as the trial ``specs[k]``.

    Per step: each member's LR from its schedule, its rows from its seed's order, one backward for all
    (retried at a smaller micro-batch on out-of-memory), clipping, the divergence check, the update.
    ``on_step[k]`` gets member k's step records; ``on_leave(k, result, state)`` is called when member
    k diverges, with its adapter tensors before the failed update (the others go on).  ``probe()``
    (the same-step view) returns the held-out loss of each member still training; it runs
    after optimizer steps 1, 2, 4, 8, ..., its value goes into the records as ``val_loss`` and its time
    is not counted as training (``TrainResult.probe_seconds``).
    """
    split, epochs = specs[0].split, specs[0].epochs
    if any(s.split != split or s.epochs != epochs for s in specs):
        raise ValueError("packed trials must share the batch split and the number of epochs")
    per_epoch = batching.steps_per_epoch(len(examples), split.effective)
    if per_epoch == 0:
        raise ValueError(f"{len(examples)} examples are fewer than one batch of {split.effective}")
    members.model.train()
    run = _Run(specs, per_epoch * epochs, split)
    lengths = [len(e.input_ids) for e in examples] if specs[0].group_by_length else None
    for epoch in range(epochs):
        orders = {s.seed: batching.example_order(len(examples), s.seed, epoch) for s in specs}
        for k in range(per_epoch):
            t0 = time.perf_counter()
            indices = [batching.step_indices(orders[specs[m].seed], k, run.split) for m in run.active]
            retried = run.on_retry(run.step)
            attempt = lambda split, idx=indices: members.backward(examples, idx, split, lengths)  # noqa: E731
            (losses, tokens), run.split = retry_on_oom(attempt, run.split, members.reset, retried)
            norms = members.clip([specs[m].max_grad_norm or math.inf for m in run.active])
            noise = members.noise(norms, [[examples[i].n_label_tokens for i in idx] for idx in indices])
            inputs = [sum(len(examples[i].input_ids) for i in idx) for idx in indices]
            records = run.record(epoch, losses, norms, tokens, inputs, noise, t0, members.scaled)
            leaving = [pos for pos, m in enumerate(run.active) if run.out[m].status == "diverged"]
            for pos in leaving:
                m = run.active[pos]
                on_step[m](records[pos])
                on_leave(m, run.finish(m), members.state(pos))
            if leaving:
                keep = [pos for pos in range(len(run.active)) if pos not in leaving]
                if not keep:
                    return run.out
                members.keep(keep)
                records = [records[pos] for pos in keep]
                run.active = [run.active[pos] for pos in keep]
            members.update(run.lrs(), [specs[m].weight_decay for m in run.active])
            members.reset()
            run.step += 1
            if probe is not None and run.step & (run.step - 1) == 0:  # a power of two
                run.measure(probe, records)
            for m, record in zip(run.active, records, strict=True):
                on_step[m](record)
    for m in run.active:
        run.finish(m)
    return run.out


class _Run:
    """The step loop's bookkeeping: each member's result, schedule and step records."""

    def __init__(self, specs: list[TrainSpec], total: int, split: batching.BatchSplit):
        self.specs, self.total, self.split = specs, total, split
        self.warmups = [schedule.warmup_steps(total, s.warmup_ratio) for s in specs]
        self.out = [TrainResult("completed", total, warmup_steps=w, split=split) for w in self.warmups]
        self.noise_logs: list[list[dict]] = [[] for _ in specs]
        self.active = list(range(len(specs)))  # members still training
        self.step = 0
        self.t_start = time.perf_counter()
        self.probing = 0.0  # seconds spent in the same-step probe

    def lr(self, m: int) -> float:
        s = self.specs[m]
        return s.lr * schedule.lr_factor(self.step, self.total, self.warmups[m], s.scheduler)

    def lrs(self) -> list[float]:
        return [self.lr(m) for m in self.active]

    def on_retry(self, step: int):
        members = tuple(self.active)

        def retried(old, new) -> None:
            for m in members:
                self.out[m].oom_retries.append(
                    {"step": step + 1, "from_micro": old.micro, "to_micro": new.micro}
                )

        return retried

    def record(self, epoch, losses, norms, tokens, inputs, noise, t0, scaled) -> list[dict]:
        """Each active member's step record; a member whose step diverged is marked so."""
        seconds = (time.perf_counter() - t0) / len(self.active)  # each member's share of the step
        records = []
        for pos, m in enumerate(self.active):
            r = self.out[m]
            reason = _divergence(losses[pos], norms[pos], r.losses, self.specs[m].divergence_factor, scaled)
            r.split = self.split
            r.label_tokens += tokens[pos]
            r.input_tokens += inputs[pos]
            r.losses.append(losses[pos])
            r.steps_done = self.step + 1
            self.noise_logs[m].append(noise[pos])
            if reason is not None:
                r.status, r.diverged_at, r.divergence_reason = "diverged", self.step + 1, reason
            records.append(
                {
                    "step": self.step + 1,
                    "epoch": epoch,
                    "loss": losses[pos],
                    "lr": self.lr(m),
                    "grad_norm": norms[pos],
                    "tokens": tokens[pos],
                    "seconds": seconds,
                    **noise[pos],
                }
            )
        return records

    def measure(self, probe: Callable[[], list[float]], records: list[dict]) -> None:
        t = time.perf_counter()
        for record, v in zip(records, probe(), strict=True):
            record["val_loss"] = v
        self.probing += time.perf_counter() - t

    def finish(self, m: int) -> TrainResult:
        r = self.out[m]
        r.seconds = time.perf_counter() - self.t_start - self.probing
        r.probe_seconds = self.probing
        r.noise_scale = noise_scale.summarize_trial(self.noise_logs[m], self.split)
        return r


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
