"""Which trials train together (``sweep.pack``): the units of work a backend hands ``trial.run_unit``.

Trials that share the frozen base and the batch split can train in one pass (``train/packed.py``):
the same effective batch, and a base they can share.  LRs and seeds may differ: a member with its own
seed gets its own rows.  With ``sweep.pack_methods`` apart (the fp32 default) a group holds one method:
LoRA's base is the model; PiSSA's, MiLoRA's and OLoRA's the residual of their init, the same for every
seed (PiSSA with a randomised SVD, ``adapter.pissa_niter``, has a residual base per seed, so its groups
also share the seed).  Together (the default under autocast) methods mix over the original base, every
residual member subtracting its own frozen initial term (the correction form, ``adapters/stacked.py``),
so a search round packs by batch size, not by method.  DoRA and full fine-tuning train alone.

Every member's directory is the one a trial alone writes (``trial.run_unit``: config, status, steps,
metrics, adapter, export, evaluation, provenance), plus a ``packed`` entry in ``provenance.json``
naming the group.
"""

from __future__ import annotations

import math
import os

from lorasweep.config import StudyConfig
from lorasweep.sweep.grid import Trial, schedule_order

MAX_GROUP = 8  # adapters per pass; the gain per added adapter flattens beyond ~4 (bench/packing.py)


def packable(cfg: StudyConfig) -> bool:
    """Whether this study packs at all: ``sweep.pack: auto`` (on every backend: a packed group is one
    local worker's or one Ray trial's work), HF generation (a vLLM server is started per adapter), fp32
    weights (the stacked layer keeps no bf16 residual correction), no autocast or bf16 autocast (fp16
    would need the loss scaling the packed trainer does not do), padded micro-batches (a packed pass puts
    each member's rows side by side; ``train.padding_free`` trials train alone)."""
    s = cfg.sweep
    return (
        s.pack == "auto"
        and cfg.eval.backend == "hf"
        and cfg.model.dtype in ("float32", "auto")
        and trial_autocast(cfg) in ("no", "bf16")
        and not cfg.train.padding_free
    )


def trial_autocast(cfg: StudyConfig) -> str:
    """The autocast the trials will run under: this machine's (``device.mixed_precision``), except on
    Ray with GPUs per trial, where the trials run on GPU workers whatever the driver has."""
    from lorasweep.train import device

    if cfg.sweep.backend == "ray" and cfg.sweep.gpus_per_trial > 0:
        return os.environ.get("ACCELERATE_MIXED_PRECISION") or "bf16"
    return device.mixed_precision()


def packable_methods(cfg: StudyConfig) -> frozenset[str]:
    """Methods whose trials pack (``stacked.PACKABLE``): LoRA, LoRA+, PiSSA, MiLoRA, OLoRA, in fp32
    and under bf16 autocast (residual methods then in the correction form, as their trials alone)."""
    from lorasweep.adapters.stacked import PACKABLE

    return frozenset(PACKABLE)


def methods_together(cfg: StudyConfig) -> bool:
    """Whether a group mixes methods (``sweep.pack_methods``)."""
    if cfg.sweep.pack_methods == "auto":
        return trial_autocast(cfg) != "no"
    return cfg.sweep.pack_methods == "together"


def _base_key(cfg: StudyConfig, t: Trial) -> tuple:
    if methods_together(cfg):  # every residual member in the correction form: one base, W
        return (t.batch_size,)
    # a randomised SVD (PiSSA's adapter.pissa_niter) gives each seed its own residual base
    seed_bound = t.method == "pissa" and cfg.adapter.pissa_niter is not None and trial_autocast(cfg) == "no"
    return (t.method, t.batch_size, t.seed if seed_bound else None)


def group_cap(cfg: StudyConfig, batch_size: int) -> int:
    """Adapters per pass at ``batch_size``: at most ``MAX_GROUP``, and a packed forward holds at most
    ``sweep.pack_rows`` rows (K x the micro-batch; default ``train.max_micro_batch``, the memory a trial
    alone may use).  On a CPU the default is also about where packing stops paying: at 4 rows per trial
    it gains ~1.6x, at 64 it loses ~5 % (``bench/packing.py``); on a GPU it gains ~3x at 8 rows per trial
    (``bench/gpu_check.sh``), so raise ``sweep.pack_rows`` there as far as memory allows."""
    from lorasweep.train import batching

    micro = batching.derive_split(batch_size, cfg.train.max_micro_batch).micro
    rows = cfg.sweep.pack_rows or cfg.train.max_micro_batch
    return max(1, min(MAX_GROUP, rows // micro))


def groups(cfg: StudyConfig, trials: list[Trial]) -> list[list[Trial]]:
    """``trials`` as units of work: one trial each when not packing, else groups of trials sharing a
    base and a batch split, at most :func:`group_cap` each (balanced: 10 trials in groups of at most 8
    -> 5 + 5), members ordered by seed then LR, units in ``schedule_order`` of their first member.

    A pure function of ``trials``, whatever is finished on disk: a search round hands every cell's
    whole step (``search.needed_trials``), so an interrupted study forms the same groups again and
    :func:`units_to_run` re-runs an interrupted group whole; a member's result then never depends on
    where the study was killed."""
    if not packable(cfg):
        return [[t] for t in trials]
    methods = packable_methods(cfg)
    by_key: dict[tuple, list[Trial]] = {}
    out = [[t] for t in trials if t.method not in methods]  # DoRA, full fine-tuning: alone
    for t in trials:
        if t.method in methods:
            by_key.setdefault(_base_key(cfg, t), []).append(t)
    for members in by_key.values():
        members = sorted(members, key=lambda t: (t.method, t.seed, t.lr))
        cap = group_cap(cfg, members[0].batch_size)
        n = math.ceil(len(members) / cap)
        size = math.ceil(len(members) / n)
        out += [members[i : i + size] for i in range(0, len(members), size)]
    first = {t: i for i, t in enumerate(schedule_order(trials))}
    return sorted(out, key=lambda unit: first[unit[0]])


def units_to_run(cfg: StudyConfig, trials: list[Trial], pending: list[Trial]) -> list[list[Trial]]:
    """The units of :func:`groups` (over all of ``trials``) that hold a trial of ``pending``: a group
    with an unfinished member runs again whole, its finished members with it."""
    waiting = set(pending)
    return [unit for unit in groups(cfg, trials) if any(t in waiting for t in unit)]


def run_line(trials: list[Trial], units: list[list[Trial]], pending: list[Trial]) -> str:
    """The sweep's opening line: how many trials are finished and how many run."""
    again = sum(map(len, units)) - len(pending)
    line = f"{len(trials) - len(pending)} already finished, {len(pending)} to run"
    if again:
        line += (
            f" ({again} finished member(s) train again with their interrupted group; their results are kept)"
        )
    return line


def kept(units: list[list[Trial]], pending: list[Trial]) -> frozenset[str]:
    """Ids of the finished members of ``units`` (``trial.run_unit``'s ``keep``)."""
    waiting = {t.id for t in pending}
    return frozenset(t.id for unit in units for t in unit if t.id not in waiting)


def describe(cfg: StudyConfig, trials: list[Trial]) -> list[str]:
    """Plan lines: how the trials pack."""
    if cfg.sweep.pack == "off":
        return ["packing: off (every trial trains alone)"]
    if not packable(cfg):
        return [
            "packing: auto, but not with this setup (vLLM generation, bf16/fp16 weights, fp16 autocast "
            "or train.padding_free)"
        ]
    units = groups(cfg, trials)
    lines = [
        f"packing: {len(trials)} trials in {len(units)} training pass(es) (same batch size"
        f"{'' if methods_together(cfg) else ' and method'}; at "
        f"most {MAX_GROUP} adapters and {cfg.sweep.pack_rows or cfg.train.max_micro_batch} rows per forward)"
    ]
    if cfg.train.lr_search == "bracket":
        lines.append("packing: each search round packs that round's trials the same way")
    for unit in units:
        if len(unit) > 1:
            lrs = ", ".join(sorted({f"{t.lr:g}" for t in unit}, key=float))
            seeds = ", ".join(str(s) for s in sorted({t.seed for t in unit}))
            methods = "+".join(sorted({t.method for t in unit}))
            lines.append(f"  {methods} B={unit[0].batch_size}: {len(unit)} trials (LRs {lrs}; seeds {seeds})")
    return lines
