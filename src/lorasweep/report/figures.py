"""Figures, one function each; PNG via matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lorasweep.report.analysis import Best, Cell, axes  # noqa: E402


def _batch_axis(ax, batches: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("effective batch size")


def accuracy_vs_batch(
    best: dict[tuple[str, int], Best], baseline: float | None, metric: str, path: Path
) -> None:
    """Per method: accuracy at the best LR for each batch size; band = min..max over seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    methods = list(dict.fromkeys(k[0] for k in best))
    batches = sorted({k[1] for k in best})
    for m in methods:
        pts = [(b.batch_size, b.cell) for (mm, _), b in sorted(best.items()) if mm == m and b.cell]
        if not pts:
            continue
        xs = [x for x, _ in pts]
        ax.plot(xs, [c.mean for _, c in pts], marker="o", label=m)
        ax.fill_between(xs, [min(c.values) for _, c in pts], [max(c.values) for _, c in pts], alpha=0.2)
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="base model")
    _batch_axis(ax, batches)
    ax.set_ylabel(f"{metric} at best LR")
    ax.set_title("Batch size, LR tuned per batch size")
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
