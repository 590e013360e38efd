"""A unit of work made ready to train: the base model, the study's training rows, and the members the
step loop trains (``train/loop.py``), for one trial alone or a packed group alike.

This is the one place that knows how the members are held: a trial alone is its method's PEFT model
(``loop.SingleModel``: any method, several processes, fp16 loss scaling); a group of K > 1 is K
adapters stacked on one frozen base (``packed.StackedMembers``, ``adapters/stacked.py``).  Everything
else (``sweep/trial.py``: train, evaluate, write) goes through :class:`Unit` and does not ask which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from lorasweep import adapters, models
from lorasweep.adapters import stacked
from lorasweep.config import StudyConfig
from lorasweep.data.cache import encoded_train
from lorasweep.evals import packed_generation as generation
from lorasweep.evals.heldout import heldout_loss
from lorasweep.sweep.grid import Trial
from lorasweep.train import batching, device, loop, packed


@dataclass
class Unit:
    """K >= 1 trials on one base, ready for ``loop.run_steps``."""

    trials: list[Trial]
    accelerator: Any
    tokenizer: Any
    train_set: list  # the study's tokenised training rows
    split: batching.BatchSplit
    specs: list[loop.TrainSpec]  # member k's trainer settings
    members: loop.Members
    trainable: int  # per member
    frozen: int
    save: Callable[[int, dict, Path], Path]
    """(member, its adapter tensors from ``members.state``, trial dir) -> the exported folder that
    applies to the original base model (the method's ``export``)."""
    generation_models: Callable[[dict[int, int]], Iterator[tuple[int, Any, Any]]]
    """After training, given {member: its position among the completed members} for the members to
    evaluate: (member, a model computing its function, a generator or None) one at a time; the
    generator (prompts -> completions) of a packed group decodes every member's prompts in shared
    batches (``evals/packed_generation.py``)."""
    heldout: Callable[[list, int], list[float]]
    """(encoded rows, rows per forward) -> the held-out loss of each member still training."""

    def describe(self) -> str:
        ids = ", ".join(t.id for t in self.trials)
        head = f"[{ids}]" if len(self.trials) == 1 else f"[packed {len(self.trials)}: {ids}]"
        return f"{head} {self.split.describe()}"


def build(cfg: StudyConfig, trials: list[Trial]) -> Unit:
    """The base model on the device accelerate chose, the training rows, and the trials' adapters."""
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=device.mixed_precision())
    device.enable_tf32()
    device.reset_peak_memory()
    torch.manual_seed(trials[0].seed)  # a trial alone: its model and adapter start from its seed
    base, tok = models.load_base(cfg.model.source, cfg.model.dtype, accelerator.device, cfg.model.num_layers)
    split = batching.derive_split(trials[0].batch_size, cfg.train.max_micro_batch, accelerator.num_processes)
    specs = [train_spec(cfg, split, t) for t in trials]
    parts = (cfg, trials, accelerator, base, tok, encoded_train(cfg), split, specs)
    return _alone(*parts) if len(trials) == 1 else _stacked(*parts)


def _alone(cfg, trials, accelerator, base, tok, rows, split, specs) -> Unit:
    trial = trials[0]
    spec = adapters.AdapterSpec.of(cfg.adapter, trial.seed, accelerator.mixed_precision != "no")
    method = adapters.get(trial.method)
    model = method.attach(base, spec)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    prepared = accelerator.prepare_model(model)
    groups = method.param_groups(prepared, spec)
    members = loop.SingleModel(prepared, accelerator, specs[0], tok.pad_token_id, groups)
    plain = accelerator.unwrap_model(prepared)

    def generation_models(evaluated: dict[int, int]) -> Iterator[tuple[int, Any, Any]]:
        if evaluated:
            merged = method.merge(plain)  # ~1.4x faster generation; same function
            merged.eval()
            yield 0, merged, None

    def heldout(rows: list, batch: int) -> list[float]:
        with _eval_mode(plain):
            return [heldout_loss(plain, rows, tok.pad_token_id, batch)]

    save = lambda k, state, path: method.export(plain, path)  # noqa: E731  (the model holds the state)
    return Unit(
        trials, accelerator, tok, rows, split, specs, members, trainable, frozen,
        save, generation_models, heldout,
    )  # fmt: skip


def _stacked(cfg, trials, accelerator, base, tok, rows, split, specs) -> Unit:
    autocast = accelerator.mixed_precision != "no"
    keys = [(t.method, t.seed) for t in trials]
    init = stacked.initialise(
        base, {m: adapters.AdapterSpec.of(cfg.adapter, m[1], autocast) for m in dict.fromkeys(keys)}
    )
    stack = init.install(base, keys, cfg.adapter.dropout)
    template = init.templates[trials[0].method]  # every method: the same adapted layers and shapes
    trainable = sum(p.numel() for p in template.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in template.parameters() if not p.requires_grad)
    model = accelerator.prepare_model(base)
    members = packed.StackedMembers(model, stack, tok.pad_token_id, accelerator.device)

    def generation_models(evaluated: dict[int, int]) -> Iterator[tuple[int, Any, Any]]:
        plain = accelerator.unwrap_model(model)
        plain.eval()
        mode = cfg.sweep.pack_generation
        if mode == "off" or (mode == "auto" and accelerator.device.type != "cuda"):
            yield from _merged_in_turn(plain, stack, evaluated)
            return
        ev = cfg.eval
        positions = list(evaluated.values())
        shared = generation.PackedGeneration(plain, stack, tok, positions, ev.max_new_tokens, ev.batch_size)
        try:
            for k, pos in evaluated.items():
                stack.route = [pos]  # every row is member k's: held-out loss, MT-Bench
                yield k, plain, shared.generator(pos)
        finally:
            stack.route = None

    def heldout(rows: list, batch: int) -> list[float]:
        with _eval_mode(model):
            return packed.stacked_heldout_losses(model, stack.size, rows, tok.pad_token_id, batch)

    def save(k: int, state: dict, path: Path) -> Path:
        method = trials[k].method
        return _save_adapter(method, init.templates[method], state, init.factors[keys[k]], path)

    return Unit(
        trials, accelerator, tok, rows, split, specs, members, trainable, frozen,
        save, generation_models, heldout,
    )  # fmt: skip


def _merged_in_turn(plain, stack, evaluated: dict[int, int]) -> Iterator[tuple[int, Any, None]]:
    """Each member merged into the plain base in turn (``sweep.pack_generation``: off, or auto on a CPU)."""
    stacked.uninstall(plain, stack)
    try:
        for k, pos in evaluated.items():
            saved = stacked.merge(stack, pos)  # ~1.4x faster generation than unmerged; same function
            try:
                yield k, plain, None
            finally:
                stacked.unmerge(stack, saved)
    finally:
        stacked.reinstall(plain, stack)


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _save_adapter(method: str, template, state: dict, initial: dict, path: Path) -> Path:
    """Write a packed member's adapter through its method's export, as a trial alone writes it
    (``adapter/``, and for residual methods ``adapter_plain_lora/`` for the original base model, from
    the member's own initial factors ``initial``: with a randomised SVD they differ by seed)."""
    with torch.no_grad():
        for name, layer in stacked.lora_layers(template).items():
            a, b = state[name]
            layer.lora_A["default"].weight.copy_(a)
            layer.lora_B["default"].weight.copy_(b)
            if hasattr(layer, "init_A"):  # residual methods (``adapters/residual.py``)
                layer.init_A.copy_(initial[name][0])
                layer.init_B.copy_(initial[name][1])
    return adapters.get(method).export(template, path)


def train_spec(cfg: StudyConfig, split: batching.BatchSplit, trial: Trial) -> loop.TrainSpec:
    """The trainer's settings for ``trial``."""
    return loop.TrainSpec(
        split=split,
        lr=trial.lr,
        seed=trial.seed,
        epochs=cfg.train.epochs,
        scheduler=cfg.train.scheduler,
        warmup_ratio=cfg.train.warmup_ratio,
        weight_decay=cfg.train.weight_decay,
        max_grad_norm=cfg.train.max_grad_norm,
        divergence_factor=cfg.train.divergence_factor,
        group_by_length=cfg.train.group_by_length,
        padding_free=cfg.train.padding_free,
    )
