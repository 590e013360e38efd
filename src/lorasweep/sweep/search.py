"""Which trials a study needs, from its config and the results on disk: the LR grid, or the bracketed
search of every (method, batch size) cell, plus the reference config's trials.

Every decision is recomputed from finished trials, so a killed study resumes its search exactly where
it was: a re-run finds the same finished trials, makes the same decisions and runs only what is new.
Decisions use validation scores only (``eval.selection``); test metrics are never read here.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorasweep import results
from lorasweep.analysis import lr_batch
from lorasweep.config import StudyConfig
from lorasweep.rundir import RunDir, TrialDir
from lorasweep.sweep import bracket
from lorasweep.sweep.grid import Trial, expand


@dataclass(frozen=True)
class CellState:
    method: str
    batch_size: int
    spec: bracket.SearchSpec | None  # None: waiting for the previous batch size's search
    decision: bracket.Decision | None


def reference_point(cfg: StudyConfig) -> tuple[int, float]:
    """The single reference (batch size, LR) every method also runs at (claim (e))."""
    batches, r = cfg.train.batch_sizes, cfg.report
    b = r.reference_batch_size
    if b is None:
        b = 128 if 128 in batches else sorted(batches)[len(batches) // 2]
    if r.reference_lr is not None:
        return b, r.reference_lr
    if cfg.train.lr_search == "grid":
        lrs = sorted(cfg.train.learning_rates)
        return b, lrs[len(lrs) // 2]
    return b, start_lr(cfg, cfg.adapter.methods[0])


def reference_trials(cfg: StudyConfig) -> list[Trial]:
    if not cfg.report.reference_config:
        return []
    b, lr = reference_point(cfg)
    return expand(cfg.adapter.methods, [b], [bracket.lattice_lr(lr)], cfg.train.seeds)


def start_lr(cfg: StudyConfig, method: str) -> float:
    br = cfg.train.bracket
    return bracket.lattice_lr(br.start_lr.get(method, br.default_start_lr))


def validation_score(trial_dir: TrialDir, metric: str) -> tuple[str, tuple[float, float] | None]:
    """(state, (validation metric, -validation held-out loss)) of one trial; the score is None unless
    the trial completed."""
    state = trial_dir.state()
    if state != "completed":
        return state, None
    metrics = results.read_json(trial_dir.metrics)
    task, name = metric.split(".", 1)
    val = metrics.get("validation", {}).get(task, {})
    if name not in val:
        return "failed", None  # written without validation metrics: cannot take part in a choice
    loss = val.get("heldout_loss")
    return state, (float(val[name]), -float(loss) if loss is not None else 0.0)


def lr_scores(run_dir: Path, method: str, batch: int, lrs, seeds: list[int], metric: str) -> dict:
    """Per LR with every seed finished: the mean validation score, DIVERGED or FAILED."""
    out: dict[float, bracket.Score] = {}
    for lr in lrs:
        states, scores = [], []
        for s in seeds:
            state, score = validation_score(RunDir(run_dir).trial(Trial(method, batch, lr, s)), metric)
            states.append(state)
            scores.append(score)
        if "failed" in states:
            out[lr] = bracket.FAILED
        elif "diverged" in states and all(st in results.TERMINAL for st in states):
            out[lr] = bracket.DIVERGED
        elif all(st == "completed" for st in states):
            out[lr] = tuple(statistics.fmean(c) for c in zip(*scores, strict=True))
    return out


def disk_lrs(run_dir: Path, method: str, batch: int) -> list[float]:
    """LRs with a trial directory for (method, batch), from their config files."""
    found = RunDir(run_dir).existing_trials()
    return sorted({t.lr for t in found if t.method == method and t.batch_size == batch})


def cell_states(cfg: StudyConfig, run_dir: Path) -> list[CellState]:
    """The bracketed search's state of every (method, batch size), batch sizes in ascending order."""
    from lorasweep.evals.suite import selection_metric

    br, metric = cfg.train.bracket, selection_metric(cfg)
    out = []
    for m in cfg.adapter.methods:
        anchor = start_lr(cfg, m)
        batches = sorted(cfg.train.batch_sizes)
        prev: tuple[int, float] | None = None
        bracketed: list[tuple[int, float]] = []  # (B, best LR) of finished, bracketed cells
        for b in batches:
            fit = lr_batch.fit_power_law(bracketed) if br.predict_by == "fit" else None
            if br.predict_start and fit is not None:
                target = fit.predict(b)
            elif br.predict_start and prev is not None:
                target = prev[1] * (b / prev[0]) ** br.batch_exponent
            else:
                target = anchor * (b / batches[0]) ** br.batch_exponent
            offset = bracket.snap(anchor, br.factor, min(max(target, br.min_lr), br.max_lr))
            spec = bracket.SearchSpec(
                anchor, br.factor, br.min_lr, br.max_lr, br.refine, br.max_points, offset
            )
            scores = lr_scores(run_dir, m, b, disk_lrs(run_dir, m, b), cfg.train.seeds, metric)
            d = bracket.decide(spec, scores)
            out.append(CellState(m, b, spec, d))
            if br.predict_start:
                if not d.done:  # later batch sizes wait for this one's answer
                    out += [CellState(m, later, None, None) for later in batches[batches.index(b) + 1 :]]
                    break
                prev = (b, d.best) if d.best is not None else prev
                bracketed += [(b, d.best)] if d.bracketed and d.best is not None else []
    return out


def grid_trials(cfg: StudyConfig) -> list[Trial]:
    t = cfg.train
    return expand(cfg.adapter.methods, t.batch_sizes, t.learning_rates, t.seeds)


def needed_trials(cfg: StudyConfig, run_dir: Path, searched: bool = False) -> list[Trial]:
    """The trials the study needs now (grid: all of them; bracket: each cell's step in progress, its
    finished trials included), reference included; with ``searched``, every trial the search has
    asked for."""
    if cfg.train.lr_search == "grid":
        return list(dict.fromkeys(grid_trials(cfg) + reference_trials(cfg)))
    cells = cell_states(cfg, run_dir)
    base = [
        Trial(c.method, c.batch_size, lr, s)
        for c in cells
        if c.decision is not None
        for lr in dict.fromkeys((*c.decision.searched, *c.decision.needed) if searched else c.decision.step)
        for s in cfg.train.seeds
    ]
    return list(dict.fromkeys(base + _reference_in_round(cfg, run_dir, cells, searched)))


def _reference_in_round(
    cfg: StudyConfig, run_dir: Path, cells: list[CellState], searched: bool
) -> list[Trial]:
    """The reference trials this round holds: the unfinished ones, and the finished ones while their
    cell is still in the first round's step.  So the first round (where they run, beside their cell's
    first step) is the same set of trials whenever a study is interrupted, and a later round never
    holds them again (``packing.groups`` packs a round's trials of one cell together)."""
    refs = reference_trials(cfg)
    if searched:
        return refs
    first = sorted(cfg.train.batch_sizes)[0]
    in_first = {
        (c.method, c.batch_size)
        for c in cells
        if c.decision is not None
        and c.decision.first_step
        and (not cfg.train.bracket.predict_start or c.batch_size == first)
    }
    done = lambda t: RunDir(run_dir).trial(t).state() in results.TERMINAL  # noqa: E731
    return [t for t in refs if not done(t) or (t.method, t.batch_size) in in_first]


def run_rounds(
    cfg: StudyConfig,
    run_dir: Path,
    run_trials: Callable[[list[Trial]], None],
    log: Callable[[str], None] = print,
) -> int:
    """Run round after round of needed trials until none is left; returns the number of rounds.

    A trial that fails is attempted once per invocation (its cell reports itself blocked); re-running
    the study retries it.
    """
    attempted: set[str] = set()
    rounds = 0
    while True:
        needed = needed_trials(cfg, run_dir)
        todo = [
            t
            for t in needed
            if t.id not in attempted and RunDir(run_dir).trial(t).state() not in results.TERMINAL
        ]
        if not todo:
            if rounds == 0:  # a finished study run again: the backend says so and runs nothing
                run_trials(needed_trials(cfg, run_dir, searched=True))
            return rounds
        rounds += 1
        if cfg.train.lr_search == "bracket":
            log(f"search round {rounds}: {len(todo)} trial(s)")
        attempted.update(t.id for t in todo)
        # finished ones included: the backend skips them and counts them in its progress line
        run_trials([t for t in needed if t in todo or t.id not in attempted])


def describe_cells(cfg: StudyConfig, run_dir: Path) -> list[str]:
    """One line per cell: the LRs searched so far and why the search stopped (or what it waits for)."""
    lines = []
    for c in cell_states(cfg, run_dir):
        if c.decision is None:
            lines.append(f"{c.method:<8} B={c.batch_size:<5} waiting for the previous batch size's search")
            continue
        d = c.decision
        lrs = ", ".join(f"{lr:g}" + ("*" if lr == d.best else "") for lr in d.searched) or "none yet"
        state = d.reason if d.done else f"{d.reason}; next: {', '.join(f'{x:g}' for x in d.needed) or '-'}"
        lines.append(f"{c.method:<8} B={c.batch_size:<5} start {c.spec.start:g}  LRs {lrs}  -> {state}")
    return lines
