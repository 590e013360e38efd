"""Which trials train together (``sweep.pack``), and one packed group -> one trial directory per trial.

Trials that share the frozen base and the batch split can train in one pass (``train/packed.py``):
the same method (LoRA's base is the model; PiSSA's and MiLoRA's the residual of a full SVD, the same for
every seed) and the same effective batch.  LRs and seeds may differ: a member with its own seed gets
its own rows.  PiSSA with a randomised SVD (``adapter.pissa_niter``) has a residual base per seed, so
its groups also share the seed.  Across methods nothing is packed (that would need the original base
plus a frozen -B0·A0 correction per PiSSA/MiLoRA member).

Every member's directory is the one ``run_trial`` writes (config, status, steps, metrics, adapter,
export, evaluation, provenance), plus a ``packed`` entry in ``provenance.json`` naming the group.  A
member that diverges is written when it leaves; the others are written one by one after training, so
a killed group leaves its finished members finished and a re-run trains only the rest.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from lorasweep import results, trackers
from lorasweep.config import StudyConfig
from lorasweep.data.cache import encoded_train
from lorasweep.evals.suite import evaluate_model, same_step_rows
from lorasweep.rundir import RunDir
from lorasweep.sweep.grid import Trial
from lorasweep.sweep.resume import trial_config
from lorasweep.sweep.trial import run_trial, step_line, train_metrics, train_spec

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
    """Methods whose trials pack.  Without autocast: LoRA, PiSSA, MiLoRA (``stacked.PACKABLE``).  Under
    bf16 autocast (a GPU) LoRA only: a PiSSA or MiLoRA trial alone then keeps the original base and
    subtracts its initial factors in fp32 (``docs/method.md``), which the stacked layer, writing the
    residual into the base, does not reproduce."""
    from lorasweep.adapters.stacked import PACKABLE

    return frozenset(PACKABLE) if trial_autocast(cfg) == "no" else frozenset({"lora"})


def _base_key(cfg: StudyConfig, t: Trial) -> tuple:
    seed_bound = t.method == "pissa" and cfg.adapter.pissa_niter is not None  # randomised SVD
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
    -> 5 + 5), members ordered by seed then LR."""
    if not packable(cfg):
        return [[t] for t in trials]
    methods = packable_methods(cfg)
    by_key: dict[tuple, list[Trial]] = {}
    out = [[t] for t in trials if t.method not in methods]  # DoRA, OLoRA, LoRA+, full: alone
    for t in trials:
        if t.method in methods:
            by_key.setdefault(_base_key(cfg, t), []).append(t)
    for members in by_key.values():
        members = sorted(members, key=lambda t: (t.seed, t.lr))
        cap = group_cap(cfg, members[0].batch_size)
        n = math.ceil(len(members) / cap)
        size = math.ceil(len(members) / n)
        out += [members[i : i + size] for i in range(0, len(members), size)]
    # a local pool, or a Ray cluster started here, runs sweep.workers units at once
    s = cfg.sweep
    busy = s.backend == "local" or (s.backend == "ray" and s.ray_address is None)
    return _fill_workers(out, s.workers if busy else 1)


def _fill_workers(units: list[list[Trial]], workers: int) -> list[list[Trial]]:
    """Split the largest groups until every worker has a unit: a group is one process's work, and
    an idle worker costs more than the packing gains (the last rounds of a search are small)."""
    units = list(units)
    while len(units) < workers and max(map(len, units), default=1) > 1:
        i = max(range(len(units)), key=lambda j: len(units[j]))
        big = units.pop(i)
        units[i:i] = [big[: len(big) // 2], big[len(big) // 2 :]]
    return units


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
        f"packing: {len(trials)} trials in {len(units)} training pass(es) (same method and batch size; at "
        f"most {MAX_GROUP} adapters and {cfg.sweep.pack_rows or cfg.train.max_micro_batch} rows per forward)"
    ]
    if cfg.train.lr_search == "bracket":
        lines.append("packing: each search round packs that round's trials the same way")
    for unit in units:
        if len(unit) > 1:
            lrs = ", ".join(sorted({f"{t.lr:g}" for t in unit}, key=float))
            seeds = ", ".join(str(s) for s in sorted({t.seed for t in unit}))
            lines.append(
                f"  {unit[0].method} B={unit[0].batch_size}: {len(unit)} trials (LRs {lrs}; seeds {seeds})"
            )
    return lines


def run_group(
    cfg: StudyConfig, trials: list[Trial], run_dir: RunDir, log: Callable[[str], None] = print
) -> dict[str, dict]:
    """Train and evaluate ``trials`` (one unit of :func:`groups`) into their trial directories;
    returns each trial's status record by id.  A failure is recorded per trial, as ``run_trial`` does."""
    run_dir = RunDir(run_dir) if not isinstance(run_dir, RunDir) else run_dir
    if len(trials) == 1:
        t = trials[0]
        return {t.id: run_trial(cfg, t, run_dir, log=log)}
    started = time.time()
    dirs = {t.id: run_dir.trial(t).path for t in trials}
    for t in trials:
        d = dirs[t.id]
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        results.atomic_write_json(d / "config.json", trial_config(cfg, t))
        results.write_status(d, "running", started=started)
    records: dict[str, dict] = {}
    try:
        _train_group(cfg, trials, dirs, run_dir, records, started, log)
    except Exception as e:  # recorded per unfinished member, not raised: the sweep goes on
        tb = traceback.format_exc()
        for t in trials:
            if t.id not in records:
                records[t.id] = _failed(dirs[t.id], e, tb, started)
    return records


def _failed(d: Path, e: Exception, tb: str, started: float) -> dict:
    results.atomic_write_text(d / "error.txt", tb)
    record = {
        "state": "failed",
        "error": f"{type(e).__name__}: {e}",
        "started": started,
        "seconds": time.time() - started,
    }
    results.write_status(d, **record)
    return record


def _spec(cfg: StudyConfig, seed: int):
    from lorasweep import adapters

    a = cfg.adapter
    return adapters.AdapterSpec(
        rank=a.rank,
        alpha=a.alpha,
        dropout=a.dropout,
        target_modules=tuple(a.target_modules),
        seed=seed,
        use_rslora=a.use_rslora,
        pissa_niter=a.pissa_niter,
    )


def _train_group(cfg, trials, dirs, run_dir, records, started, log) -> None:
    from accelerate import Accelerator

    from lorasweep import models
    from lorasweep.adapters import stacked
    from lorasweep.train import batching, device, loop, packed

    t = time.perf_counter()
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=device.mixed_precision())
    device.enable_tf32()
    device.reset_peak_memory()
    base, tok = models.load_base(cfg.model.source, cfg.model.dtype, accelerator.device, cfg.model.num_layers)
    train_set = encoded_train(cfg)
    method = trials[0].method
    init = stacked.initialise(method, base, {s: _spec(cfg, s) for s in sorted({tr.seed for tr in trials})})
    template = init.template
    generators = [init.generator(tr.seed, accelerator.device) for tr in trials]
    stack = stacked.install(
        base, [init.factors[tr.seed] for tr in trials], init.scaling, cfg.adapter.dropout, generators
    )
    n_trainable = sum(p.numel() for p in template.parameters() if p.requires_grad)
    n_frozen = sum(p.numel() for p in template.parameters() if not p.requires_grad)
    split = batching.derive_split(trials[0].batch_size, cfg.train.max_micro_batch, 1)
    log(f"[packed {len(trials)}: {', '.join(tr.id for tr in trials)}] {split.describe()}")
    model = accelerator.prepare_model(base)
    setup = time.perf_counter() - t
    ids = [tr.id for tr in trials]

    def write(k: int, result: loop.TrainResult, state: dict, eval_model=None) -> None:
        tr, d = trials[k], dirs[trials[k].id]
        t_eval = time.perf_counter()
        _save_adapter(method, template, state, d)
        metrics = {"train": train_metrics(result, split, n_trainable, n_frozen, accelerator)}
        if eval_model is not None:
            out = run_dir.trial(tr)
            metrics.update(
                evaluate_model(cfg, eval_model, tok, out.eval, out.validation_eval, run_dir.judge_cache)
            )
        timings = {"setup": setup, "train": result.seconds, "eval": time.perf_counter() - t_eval}
        packing = {"group": ids, "position": k, "shared_timings": ["setup", "train"]}
        results.atomic_write_json(d / "metrics.json", metrics)
        results.atomic_write_json(
            d / "provenance.json", {**results.provenance(), "timings": timings, "packed": packing}
        )
        if cfg.report.trackers:  # members train at once; each is sent to the trackers when written
            td = run_dir.trial(tr)
            args = (cfg.report.trackers, cfg.name, tr.id, tr.as_dict(), run_dir.trackers)
            trackers.replay(*args, td.steps, td.metrics)
        outcome = {"state": result.status, "steps": result.steps_done}
        if result.status == "diverged":
            outcome.update(diverged_at=result.diverged_at, reason=result.divergence_reason)
        share = (setup + result.seconds) / len(trials) + timings["eval"]
        records[tr.id] = {"started": started, "seconds": share, **outcome}
        results.write_status(d, **records[tr.id])

    specs = [train_spec(cfg, split, tr) for tr in trials]
    with contextlib.ExitStack() as files:
        logs = [files.enter_context((dirs[tr.id] / "steps.jsonl").open("w")) for tr in trials]
        step_writers = [_step_writer(f) for f in logs]

        def leave(k: int, result: loop.TrainResult, state: dict) -> None:
            logs[k].close()
            write(k, result, state)

        rows = same_step_rows(cfg, tok)
        probe = (
            (lambda n: packed.stacked_heldout_losses(model, n, rows, tok.pad_token_id, cfg.eval.batch_size))
            if rows is not None
            else None
        )
        train_results = packed.train_packed(
            model, stack, train_set, specs, tok.pad_token_id, accelerator.device, step_writers, leave, probe
        )
    finished = [k for k, r in enumerate(train_results) if r.status == "completed"]
    states = {k: stack.member_state(pos) for pos, k in enumerate(finished)}
    plain = accelerator.unwrap_model(model)
    stacked.uninstall(plain, stack)  # the plain base again; each member is merged into it in turn
    plain.eval()
    for pos, k in enumerate(finished):
        saved = stacked.merge(stack, pos)  # ~1.4x faster generation; same function (as run_trial)
        try:
            write(k, train_results[k], states[k], eval_model=plain)
        except Exception as e:  # this member failed; the others still get evaluated
            records[trials[k].id] = _failed(dirs[trials[k].id], e, traceback.format_exc(), started)
        finally:
            stacked.unmerge(stack, saved)


def _step_writer(f):
    def on_step(record: dict) -> None:
        f.write(step_line(record))
        f.flush()

    return on_step


def _save_adapter(method: str, template, state: dict, d: Path) -> None:
    """Write the member's adapter through its method's export, as run_trial does (``adapter/``, and
    for PiSSA/MiLoRA ``adapter_plain_lora/`` for the original base model)."""
    from lorasweep import adapters
    from lorasweep.adapters import stacked

    with torch.no_grad():
        for name, layer in stacked.lora_layers(template).items():
            a, b = state[name]
            layer.lora_A["default"].weight.copy_(a)
            layer.lora_B["default"].weight.copy_(b)
    adapters.get(method).export(template, d)
