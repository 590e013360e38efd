"""Same-step view: batch sizes compared at equal optimizer steps, beside the equal-data view.

Every trial logs the validation rows' held-out loss after optimizer steps 1, 2, 4, 8, ...
(``val_loss`` in ``steps.jsonl``, ``eval.same_step_loss``).  Per tuned cell (LR chosen on validation)
this reads those curves; the *shared* steps are those every tuned cell reached.  Plotted against the
step (equal steps: larger batches have seen more data) and against examples seen = step x B (equal
data: smaller batches have taken more steps): the study's appendix comparison.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lorasweep import results  # noqa: E402
from lorasweep.report.tuned import StudyResults  # noqa: E402
from lorasweep.rundir import RunDir, TrialDir  # noqa: E402


@dataclass
class Curves:
    per_cell: dict[tuple[str, int], dict[int, list[float]]]  # (method, B) -> step -> loss per seed
    shared: list[int]  # steps every tuned cell logged

    def mean(self, key: tuple[str, int], step: int) -> float | None:
        v = self.per_cell.get(key, {}).get(step)
        return statistics.fmean(v) if v else None


def _curve(trial_dir: TrialDir) -> dict[int, float]:
    path = trial_dir.steps
    if not path.exists():
        return {}
    out = {}
    for r in results.read_jsonl(path):
        v = r.get("val_loss")
        if isinstance(v, int | float):
            out[int(r["step"])] = float(v)
    return out


def load(run_dir: Path, res: StudyResults) -> Curves:
    per_cell: dict[tuple[str, int], dict[int, list[float]]] = {}
    for key, t in res.tuned.items():
        if t.best.cell is None:
            continue
        seeds = [_curve(RunDir(run_dir).trial(tid)) for tid in t.best.cell.ids]
        steps = set.intersection(*(set(c) for c in seeds)) if seeds else set()
        if steps:
            per_cell[key] = {s: [c[s] for c in seeds] for s in sorted(steps)}
    shared = sorted(set.intersection(*(set(v) for v in per_cell.values()))) if per_cell else []
    return Curves(per_cell, shared)


def figure(curves: Curves, res: StudyResults, path: Path, view: str) -> None:
    """view "step": held-out loss against optimizer steps; "data": against examples seen."""
    methods = [m for m in res.methods if any(k[0] == m for k in curves.per_cell)] or res.methods[:1]
    fig, axs = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), squeeze=False)
    for ax, m in zip(axs[0], methods, strict=True):
        for b in res.batches:
            cell = curves.per_cell.get((m, b))
            if not cell:
                continue
            steps = sorted(cell)
            xs = steps if view == "step" else [s * b for s in steps]
            ax.plot(xs, [statistics.fmean(cell[s]) for s in steps], marker=".", label=f"B={b}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("optimizer step" if view == "step" else "examples seen (step x B)")
        ax.set_ylabel("validation held-out loss")
        ax.set_title(m)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    title = "Equal optimizer steps" if view == "step" else "Equal data"
    fig.suptitle(f"{title}: held-out loss of the tuned cells (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(curves: Curves, res: StudyResults) -> list[str]:
    lines = ["## Same-step view", ""]
    if not curves.shared:
        return lines + [
            "No shared steps: the trials logged no held-out loss during training "
            "(`eval.same_step_loss`, or trials written before it existed).",
            "",
        ]
    s = curves.shared[-1]
    lines += [
        "Validation held-out loss of each tuned cell after the same number of optimizer steps (left) and "
        f"after the same number of examples (right). At step {s}, the last step every batch size reached "
        "(mean [min, max] over seeds):",
        "",
        "![same steps](same_step.png) ![same data](same_data.png)",
        "",
        "| method | " + " | ".join(f"B={b}" for b in res.batches) + " |",
        "|---|" + "---|" * len(res.batches),
    ]
    for m in res.methods:
        row = []
        for b in res.batches:
            v = curves.per_cell.get((m, b), {}).get(s)
            row.append(f"{statistics.fmean(v):.3f} [{min(v):.3f}, {max(v):.3f}]" if v else "—")
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return lines + [""]


def as_dict(curves: Curves) -> dict:
    return {
        "shared_steps": curves.shared,
        "val_loss": [
            {"method": m, "batch_size": b, "steps": {str(s): v for s, v in cell.items()}}
            for (m, b), cell in curves.per_cell.items()
        ],
    }
