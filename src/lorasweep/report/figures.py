"""Figures, one function each; PNG via matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lorasweep.report.analysis import Cell, axes  # noqa: E402


def _batch_axis(ax, batches: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("effective batch size")


def accuracy_vs_batch(res, metric: str, path: Path) -> None:
    """Per method: test value at the LR chosen on validation for each batch size; band = its bootstrap
    interval over test items and seeds; hollow markers: LR not bracketed."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m in res.methods:
        pts = [
            (b, res.tuned[(m, b)]) for b in res.batches if (m, b) in res.tuned and res.tuned[(m, b)].estimate
        ]
        if not pts:
            continue
        xs = [x for x, _ in pts]
        (line,) = ax.plot(xs, [t.estimate.mean for _, t in pts], marker="o", label=m)
        ax.fill_between(xs, [t.estimate.lo for _, t in pts], [t.estimate.hi for _, t in pts], alpha=0.2)
        edge = [(b, t.estimate.mean) for b, t in pts if not t.best.bracketed]
        if edge:
            ax.plot(*zip(*edge, strict=True), "o", mfc="white", color=line.get_color())
    if res.baseline is not None:
        ax.axhline(res.baseline.mean, color="grey", linestyle="--", linewidth=1, label="base model")
    _batch_axis(ax, res.batches)
    ax.set_ylabel(f"{metric}, test")
    ax.set_title("Batch size, LR chosen on validation per batch size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def lr_batch_heatmap(table: dict[tuple[str, int, float], Cell], method: str, metric: str, path: Path) -> None:
    """Mean accuracy over seeds for every (LR, batch size); 'div' marks cells where a seed diverged."""
    _, batches, lrs = axes(table)
    grid = [[table.get((method, b, lr)) for b in batches] for lr in lrs]
    values = [[c.mean if c and c.mean is not None else float("nan") for c in row] for row in grid]
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(batches), 1.0 + 0.6 * len(lrs)))
    im = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower")
    for i, row in enumerate(grid):
        for j, c in enumerate(row):
            text = "-" if c is None else f"{c.mean:.0f}" if c.mean is not None else "div"
            if c is not None and (c.n_diverged or c.n_failed) and c.mean is not None:
                text += "*"
            ax.text(j, i, text, ha="center", va="center", color="w", fontsize=8)
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_xlabel("effective batch size")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{method}: {metric}")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def accuracy_per_lr(table: dict[tuple[str, int, float], Cell], method: str, metric: str, path: Path) -> None:
    """Appendix figure: one accuracy-vs-batch curve per LR."""
    _, batches, lrs = axes(table)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for lr in lrs:
        pts = [
            (b, table[(method, b, lr)].mean)
            for b in batches
            if (method, b, lr) in table and table[(method, b, lr)].mean is not None
        ]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"lr {lr:g}")
    _batch_axis(ax, batches)
    ax.set_ylabel(metric)
    ax.set_title(f"{method}: every learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def lr_vs_batch(ins, path: Path) -> None:
    """Validation-chosen LR against batch size per method (hollow: not bracketed), the fitted power law
    (solid) and the square-root / linear rules through the same points (dotted / dashed)."""
    from lorasweep.analysis import lr_batch

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m, pts in ins.lr_points.items():
        if not pts:
            continue
        (line,) = ax.plot([b for b, _, ok in pts if ok], [lr for _, lr, ok in pts if ok], "o", label=m)
        color = line.get_color()
        loose = [(b, lr) for b, lr, ok in pts if not ok]
        if loose:
            ax.plot(*zip(*loose, strict=True), "o", mfc="white", color=color)
        xs = sorted({b for b, _, _ in pts})
        fit = ins.lr_fit.get(m)
        if fit is not None:
            ax.plot(xs, [fit.predict(b) for b in xs], "-", color=color, label=f"{m}: k={fit.exponent:.2f}")
        ok = [(b, lr) for b, lr, br in pts if br]
        for style, k in (("-.", lr_batch.RULES["square-root"]), ("--", lr_batch.RULES["linear"])):
            rule = lr_batch.rule_line(ok, k)
            if rule is not None and len(ok) > 1:
                ax.plot(xs, [rule.predict(b) for b in xs], style, color=color, alpha=0.4, linewidth=1)
    ax.set_yscale("log")
    _batch_axis(ax, sorted({b for pts in ins.lr_points.values() for b, _, _ in pts}) or [1])
    ax.set_ylabel("LR chosen on validation")
    ax.set_title("Best LR vs batch size (-. square-root rule, -- linear rule)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cost_frontier(ins, metric: str, path: Path) -> None:
    """Tuned test value (with its interval) against each cost of one trial: steps, tokens, seconds,
    FLOPs; one panel each, one series per method, batch sizes annotated."""
    fig, axs = plt.subplots(2, 2, figsize=(9.6, 6.4))
    for ax, axis in zip(axs.flat, ("steps", "tokens", "seconds", "flops"), strict=True):
        for m, pts in ins.cost.items():
            pts = [p for p in pts if p.cost(axis) is not None]
            if not pts:
                continue
            xs = [p.cost(axis) for p in pts]
            ys = [p.test.mean for p in pts]
            err = [[p.test.mean - p.test.lo for p in pts], [p.test.hi - p.test.mean for p in pts]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=m)
            for p, x, y in zip(pts, xs, ys, strict=True):
                ax.annotate(f"{p.batch_size}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel(f"{metric}, test")
        ax.grid(alpha=0.3)
    axs.flat[0].legend(fontsize=8)
    fig.suptitle("Cost frontier: accuracy vs the cost of one trial (labels: batch size)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
