"""Whole-study workflows as typed functions: plan, run (baseline + sweep + report), one trial, status."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from lorasweep import results
from lorasweep.config import StudyConfig, from_dict, to_dict
from lorasweep.errors import UserError
from lorasweep.rundir import RunDir
from lorasweep.sweep import grid


def trials_of(cfg: StudyConfig) -> list[grid.Trial]:
    """The grid's trials and the reference config's (a bracketed search decides its own as it goes)."""
    from lorasweep.sweep.search import grid_trials, reference_trials

    base = grid_trials(cfg) if cfg.train.lr_search == "grid" else []
    return list(dict.fromkeys(base + reference_trials(cfg)))


def plan(cfg: StudyConfig, world: int = 1) -> tuple[list[grid.PlanRow], str | None]:
    """The dry-run plan; token counts need the data and tokenizer, else ``(rows, why_not)``.

    Grid: one row per trial.  Bracket: one row per (batch size, seed) of the first method at its start
    LR (the split, steps and tokens do not depend on the LR or the method), then the reference trials.
    """
    from lorasweep.data.cache import encoded_train, n_train
    from lorasweep.sweep.search import start_lr

    example_tokens, why = None, None
    try:
        enc = encoded_train(cfg)
        example_tokens = [len(e.input_ids) for e in enc]
    except UserError as e:
        why = str(e)
    t = cfg.train
    if t.lr_search == "grid":
        trials = trials_of(cfg)
    else:
        m = cfg.adapter.methods[0]
        trials = grid.expand([m], t.batch_sizes, [start_lr(cfg, m)], t.seeds)
    rows = grid.plan(
        list(dict.fromkeys(trials)),
        n_train(cfg),
        t.epochs,
        t.warmup_ratio,
        t.max_micro_batch,
        world,
        example_tokens,
    )
    return rows, why


def format_plan(cfg: StudyConfig, rows: list[grid.PlanRow], why: str | None) -> str:
    from lorasweep.evals.suite import selection_metric, validation_source
    from lorasweep.sweep.search import reference_point

    t, n_m, n_b, n_s = cfg.train, len(cfg.adapter.methods), len(cfg.train.batch_sizes), len(cfg.train.seeds)
    if t.lr_search == "grid":
        head = f"{len(rows)} trials = {n_m} methods x {n_b} batch sizes x {len(t.learning_rates)} LRs x {n_s} seeds"
    else:
        head = f"bracketed LR search over {n_m} methods x {n_b} batch sizes x {n_s} seeds"
    lines = [f"study {cfg.name}: {head}; {cfg.data.num_train} examples x {t.epochs} epoch(s)"]
    sel = cfg.eval.selection
    if sel.from_train:
        lines.append(
            f"validation: the last {sel.from_train} of the {cfg.data.num_train} training rows are held out "
            f"(not trained on): training uses {cfg.data.num_train - sel.from_train} rows"
        )
    lines.append(
        f"choices (LR, batch size) on validation rows: {validation_source(cfg)}; "
        f"metric {selection_metric(cfg)}; reported numbers on test rows only ({cfg.report.metric})"
    )
    if t.lr_search == "bracket":
        lines += _plan_search(cfg)
    if cfg.report.reference_config:
        ref_b, ref_lr = reference_point(cfg)
        lines.append(f"reference config: B={ref_b}, LR={ref_lr:g} (every method, every seed)")
    else:
        lines.append("reference config: not run (report.reference_config: false; claim (e) is not tested)")
    lines += _plan_packing(cfg)
    if why:
        lines.append(f"training tokens unknown here ({why}); upper bound = examples x max_seq_len")
    lines.append(
        f"{'trial':<30} {'micro x accum x world':>22} {'steps':>7} {'warmup':>7} {'examples':>9} {'tokens':>11}"
    )
    for r in rows:
        tokens = f"{r.tokens:,}" if r.tokens is not None else f"<={r.examples * cfg.data.max_seq_len:,}"
        split = f"{r.split.micro} x {r.split.accumulation} x {r.split.world}"
        name = (
            r.trial.id
            if t.lr_search == "grid"
            else r.trial.id.split("-", 1)[1].replace(f"lr{r.trial.lr:g}-", "")
        )
        lines.append(f"{name:<30} {split:>22} {r.steps:>7} {r.warmup_steps:>7} {r.examples:>9} {tokens:>11}")
    dropped = {r.trial.batch_size: r.dropped_examples for r in rows if r.dropped_examples}
    for b, n in dropped.items():
        lines.append(f"note: batch {b} drops the last {n} example(s) of each epoch (partial batch)")
    return "\n".join(lines)


def _plan_search(cfg: StudyConfig) -> list[str]:
    from lorasweep.sweep import bracket
    from lorasweep.sweep.search import reference_trials, start_lr

    br, t = cfg.train.bracket, cfg.train
    starts = ", ".join(f"{m} {start_lr(cfg, m):g}" for m in cfg.adapter.methods)
    rule = (
        f"later batch sizes start from the previous one's best LR x (B/B_prev)^{br.batch_exponent:g}"
        if br.predict_start
        else f"batch size B starts from start LR x (B/B_smallest)^{br.batch_exponent:g}"
    )
    worst = sum(
        bracket.SearchSpec(
            start_lr(cfg, m), br.factor, br.min_lr, br.max_lr, br.refine, br.max_points
        ).worst_case_points()
        for m in cfg.adapter.methods
    ) * len(t.batch_sizes) * len(t.seeds) + len(reference_trials(cfg))
    best = len(cfg.adapter.methods) * len(t.batch_sizes) * len(t.seeds) * (3 + (1 if br.refine else 0))
    return [
        f"search: start LRs at B={min(t.batch_sizes)}: {starts}; {rule} (snapped to the lattice)",
        f"search: step x{br.factor:g} in log space until the best LR has worse neighbours on both sides, "
        f"{'then one refinement at half a step; ' if br.refine else ''}bounds [{br.min_lr:g}, {br.max_lr:g}], "
        f"at most {br.max_points} LRs per cell, every seed at every LR",
        f"search: {best} trials if every cell brackets in its first round, at most {worst} (worst case, "
        "reference trials included)",
    ]


def _plan_packing(cfg: StudyConfig) -> list[str]:
    """How the next round's trials (the grid's: all of them) pack into training passes."""
    from lorasweep.sweep import packing
    from lorasweep.sweep.search import needed_trials

    return packing.describe(cfg, needed_trials(cfg, Path(cfg.output_dir)))


def run_baseline(cfg: StudyConfig, run_dir: Path) -> None:
    """Evaluate the untrained base model once (the line every trial is compared with)."""
    from lorasweep import models
    from lorasweep.evals.suite import evaluate_model
    from lorasweep.sweep.resume import result_config

    rd = RunDir(run_dir)
    conf = result_config(cfg)
    if rd.baseline_metrics.exists():
        stored = results.read_json(rd.baseline_config)
        if result_config(from_dict(stored)) == conf:
            return
    model, tok = models.load_base(cfg.model.source, cfg.model.dtype, num_layers=cfg.model.num_layers)
    metrics = evaluate_model(cfg, model, tok, rd.baseline, rd.baseline_validation, rd.judge_cache)
    results.atomic_write_json(rd.baseline_config, conf)
    results.atomic_write_json(rd.baseline_metrics, metrics)


def _log(message: str) -> None:
    print(message, flush=True)  # progress must show up promptly even when stdout is a file or pipe


def preflight(cfg: StudyConfig) -> None:
    """Load (and cache) the tokenizer, training set and every evaluation set: bad data fails here,
    with exit code 2, before anything is written."""
    from lorasweep.data.cache import encoded_train
    from lorasweep.evals.registry import data_source, get
    from lorasweep.evals.suite import eval_rows
    from lorasweep.sweep import backends
    from lorasweep.trackers import require

    require(cfg.report.trackers)
    if cfg.eval.backend == "vllm":
        from lorasweep.evals.vllm_backend import require_vllm

        require_vllm()
    backends.get(cfg.sweep.backend).check(cfg)
    encoded_train(cfg)
    for task in cfg.eval.tasks:
        for i, row in enumerate(eval_rows(cfg, task)):
            try:
                get(task).check_row(row)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise UserError(f"evaluation row {i}: {e}", data_source(task, cfg.eval.data)) from None
    check_selection(cfg)


def check_selection(cfg: StudyConfig) -> None:
    """The validation rows load, are valid, and share no prompt with the test rows: a test row can
    never influence a choice."""
    from lorasweep.evals.registry import get
    from lorasweep.evals.suite import eval_rows, selection_task, validation_rows, validation_source

    task = get(selection_task(cfg))
    where = validation_source(cfg)
    val = validation_rows(cfg)
    if not val:
        raise UserError("the validation set is empty", where)
    for i, row in enumerate(val):
        try:
            task.check_row(row)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"validation row {i}: {e}", where) from None
    test_prompts = {task.prompt(r) for r in eval_rows(cfg, task.name)}
    shared = [i for i, r in enumerate(val) if task.prompt(r) in test_prompts]
    if shared:
        raise UserError(
            f"{len(shared)} validation row(s) also appear in the test rows (first: validation row {shared[0]}); "
            "choices must not see test data",
            where,
        )


def run(cfg: StudyConfig, log: Callable[[str], None] = _log) -> Path:
    """The whole study into ``cfg.output_dir``; resumes when re-run. Returns the report path."""
    from lorasweep.analysis.at_init import ensure_curvature
    from lorasweep.locks import RunLock
    from lorasweep.report.render import build_report
    from lorasweep.sweep.backends import run_sweep
    from lorasweep.sweep.resume import todo
    from lorasweep.sweep.search import run_rounds

    t0 = time.time()
    run_dir = Path(cfg.output_dir)
    rd = RunDir(run_dir)
    preflight(cfg)
    if run_dir.exists():  # refuse a run dir of another version or config before writing anything
        if rd.study.exists():
            load_study(run_dir)
        todo(cfg, rd.existing_trials(), run_dir)
    rows, _ = plan(cfg)
    steps = {r.trial.batch_size: r.steps for r in rows}
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):
        results.atomic_write_json(rd.study, {"schema": results.SCHEMA_VERSION, "config": to_dict(cfg)})
        splits = {r.split.effective: r.split.describe() for r in rows}
        for b in sorted(splits):
            log(splits[b])
        run_baseline(cfg, run_dir)
        ensure_curvature(cfg, log)

        def run_trials(trials: list[grid.Trial]) -> None:
            run_sweep(cfg, trials, run_dir, {t.id: steps.get(t.batch_size, 0) for t in trials}, log)

        run_rounds(cfg, run_dir, run_trials, log)
        report = build_report(run_dir, cfg)
    log(f"study finished in {(time.time() - t0) / 60:.1f} min; report: {report}")
    return report


def load_study(run_dir: Path) -> StudyConfig:
    path = RunDir(run_dir).study
    if not path.exists():
        raise UserError("not a lorasweep run directory (no study.json)", str(run_dir))
    data = results.read_json(path)
    if data.get("schema") != results.SCHEMA_VERSION:
        raise UserError(f"written by another lorasweep version (schema {data.get('schema')})", str(path))
    return from_dict(data["config"])


INTERRUPTED = "interrupted"  # shown for a trial left "running" by a runner that is gone


def status_table(run_dir: Path) -> str:
    """Trials by state; a trial whose status says ``running`` while no process holds the run
    directory's lock (the runner was killed) is shown as ``interrupted``."""
    from lorasweep.locks import runner_alive
    from lorasweep.sweep.search import describe_cells

    cfg = load_study(run_dir)
    rd = RunDir(run_dir)
    alive = runner_alive(run_dir)
    states = (*results.STATES[:2], INTERRUPTED, *results.STATES[2:])
    by_state: dict[str, list[str]] = {s: [] for s in states}
    lines = []
    trials = list(dict.fromkeys(trials_of(cfg) + rd.existing_trials()))
    for t in sorted(
        trials,
        key=lambda t: (
            cfg.adapter.methods.index(t.method) if t.method in cfg.adapter.methods else 99,
            t.batch_size,
            t.lr,
            t.seed,
        ),
    ):
        d = rd.trial(t)
        state = d.state()
        if state == "running" and not alive:
            state = INTERRUPTED
        by_state[state].append(t.id)
        extra = ""
        if state in ("running", INTERRUPTED) and d.steps.exists():
            extra = f"step {d.steps_done()}"
        if state == INTERRUPTED:
            extra = f"{extra}; its runner is gone: re-run to resume".lstrip("; ")
        elif state in ("diverged", "failed"):
            st = results.read_json(d.status)
            extra = (
                f"at step {st.get('diverged_at')}: {st.get('reason')}"
                if state == "diverged"
                else st.get("error", "")
            )
        lines.append(f"{t.id:<30} {state:<10} {extra}")
    summary = "  ".join(f"{s}: {len(v)}" for s, v in by_state.items())
    out = [summary, "", *lines]
    if cfg.train.lr_search == "bracket":
        out += [
            "",
            "learning-rate search per cell (* = best on validation so far):",
            *describe_cells(cfg, run_dir),
        ]
    return "\n".join(out)
