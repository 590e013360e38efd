"""Whole-study workflows as typed functions: plan, run (baseline + sweep + report), one trial, status."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from lorasweep import results
from lorasweep.config import StudyConfig, from_dict, to_dict
from lorasweep.errors import UserError
from lorasweep.sweep import grid


def trials_of(cfg: StudyConfig) -> list[grid.Trial]:
    return grid.expand(cfg.adapter.methods, cfg.train.batch_sizes, cfg.train.learning_rates, cfg.train.seeds)


def plan(cfg: StudyConfig, world: int = 1) -> tuple[list[grid.PlanRow], str | None]:
    """The dry-run plan; token counts need the data and tokenizer, else ``(rows, why_not)``."""
    example_tokens, why = None, None
    try:
        from lorasweep.sweep.trial import encoded_train

        enc = encoded_train(cfg)
        example_tokens = [len(e.input_ids) for e in enc]
    except UserError as e:
        why = str(e)
    rows = grid.plan(
        trials_of(cfg),
        cfg.data.num_train,
        cfg.train.epochs,
        cfg.train.warmup_ratio,
        cfg.train.max_micro_batch,
        world,
        example_tokens,
    )
    return rows, why


def format_plan(cfg: StudyConfig, rows: list[grid.PlanRow], why: str | None) -> str:
    lines = [
        f"study {cfg.name}: {len(rows)} trials = {len(cfg.adapter.methods)} methods x "
        f"{len(cfg.train.batch_sizes)} batch sizes x {len(cfg.train.learning_rates)} LRs x "
        f"{len(cfg.train.seeds)} seeds; {cfg.data.num_train} examples x {cfg.train.epochs} epoch(s)"
    ]
    if why:
        lines.append(f"training tokens unknown here ({why}); upper bound = examples x max_seq_len")
    lines.append(
        f"{'trial':<30} {'micro x accum x world':>22} {'steps':>7} {'warmup':>7} {'examples':>9} {'tokens':>11}"
    )
    for r in rows:
        tokens = f"{r.tokens:,}" if r.tokens is not None else f"<={r.examples * cfg.data.max_seq_len:,}"
        split = f"{r.split.micro} x {r.split.accumulation} x {r.split.world}"
        lines.append(
            f"{r.trial.id:<30} {split:>22} {r.steps:>7} {r.warmup_steps:>7} {r.examples:>9} {tokens:>11}"
        )
    dropped = {r.trial.batch_size: r.dropped_examples for r in rows if r.dropped_examples}
    for b, n in dropped.items():
        lines.append(f"note: batch {b} drops the last {n} example(s) of each epoch (partial batch)")
    return "\n".join(lines)


def run_baseline(cfg: StudyConfig, run_dir: Path) -> None:
    """Evaluate the untrained base model once (the line every trial is compared with)."""
    from lorasweep import models
    from lorasweep.sweep.trial import evaluate_model, result_config

    out = run_dir / "baseline"
    conf = result_config(cfg)
    if (out / "metrics.json").exists():
        stored = results.read_json(out / "config.json")
        if result_config(from_dict(stored)) == conf:
            return
    model, tok = models.load_base(cfg.model.source, cfg.model.dtype)
    metrics = evaluate_model(cfg, model, tok, out, run_dir)
    results.atomic_write_json(out / "config.json", conf)
    results.atomic_write_json(out / "metrics.json", metrics)


def _log(message: str) -> None:
    print(message, flush=True)  # progress must show up promptly even when stdout is a file or pipe


def preflight(cfg: StudyConfig) -> None:
    """Load (and cache) the tokenizer, training set and every evaluation set: bad data fails here,
    with exit code 2, before anything is written."""
    from lorasweep.evals.registry import data_source, get
    from lorasweep.sweep.trial import encoded_train, eval_rows

    if cfg.eval.backend == "vllm":
        from lorasweep.evals.vllm_backend import require_vllm

        require_vllm()
    if cfg.sweep.backend == "ray":
        from lorasweep.sweep.ray_backend import check_available, ray_settings

        check_available()
        ray_settings(cfg)
    encoded_train(cfg)
    for task in cfg.eval.tasks:
        for i, row in enumerate(eval_rows(cfg, task)):
            try:
                get(task).check_row(row)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise UserError(f"evaluation row {i}: {e}", data_source(task, cfg.eval.data)) from None


def run(cfg: StudyConfig, log: Callable[[str], None] = _log) -> Path:
    """The whole study into ``cfg.output_dir``; resumes when re-run. Returns the report path."""
    from lorasweep.report.render import build_report
    from lorasweep.sweep.local import run_sweep, todo
    from lorasweep.sweep.lock import RunLock

    t0 = time.time()
    run_dir = Path(cfg.output_dir)
    trials = trials_of(cfg)
    preflight(cfg)
    if run_dir.exists():  # refuse a run dir of another version or config before writing anything
        if (run_dir / "study.json").exists():
            load_study(run_dir)
        todo(cfg, trials, run_dir)
    rows, _ = plan(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        results.atomic_write_json(
            run_dir / "study.json", {"schema": results.SCHEMA_VERSION, "config": to_dict(cfg)}
        )
        splits = {r.split.effective: r.split.describe() for r in rows}
        for b in sorted(splits):
            log(splits[b])
        run_baseline(cfg, run_dir)
        run_sweep(cfg, trials, run_dir, {r.trial.id: r.steps for r in rows}, log)
        report = build_report(
            run_dir, report_metrics(cfg), cfg.report.reference_batch_size, cfg.report.reference_lr
        )
    log(f"study finished in {(time.time() - t0) / 60:.1f} min; report: {report}")
    return report


def report_metrics(cfg: StudyConfig) -> list[str]:
    """The study's report metric, then the primary metric of every other evaluated task."""
    from lorasweep.evals.registry import EVALUATORS

    return [cfg.report.metric] + [f"{t}.{EVALUATORS[t].metrics[0]}" for t in cfg.eval.tasks]


def load_study(run_dir: Path) -> StudyConfig:
    path = run_dir / "study.json"
    if not path.exists():
        raise UserError("not a lorasweep run directory (no study.json)", str(run_dir))
    data = results.read_json(path)
    if data.get("schema") != results.SCHEMA_VERSION:
        raise UserError(f"written by another lorasweep version (schema {data.get('schema')})", str(path))
    return from_dict(data["config"])


def status_table(run_dir: Path) -> str:
    from lorasweep.sweep.local import trial_dir

    cfg = load_study(run_dir)
    by_state: dict[str, list[str]] = {s: [] for s in results.STATES}
    lines = []
    for t in trials_of(cfg):
        d = trial_dir(run_dir, t)
        state = results.read_state(d)
        by_state[state].append(t.id)
        extra = ""
        if state == "running" and (d / "steps.jsonl").exists():
            extra = f"step {sum(1 for _ in (d / 'steps.jsonl').open())}"
        elif state in ("diverged", "failed"):
            st = results.read_json(d / "status.json")
            extra = (
                f"at step {st.get('diverged_at')}: {st.get('reason')}"
                if state == "diverged"
                else st.get("error", "")
            )
        lines.append(f"{t.id:<30} {state:<10} {extra}")
    summary = "  ".join(f"{s}: {len(v)}" for s, v in by_state.items())
    return "\n".join([summary, "", *lines])
