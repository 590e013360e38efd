"""``lorasweep proxy CONFIG``: tune the batch size cheaply, then say whether it transferred.

The proxy runs the same batch-size study (same data, same budget, same batch sizes, same search) at a
cheaper setting: a smaller adapter rank (``alpha`` scaled so that an update at a given LR keeps its
size: :func:`proxy_alpha`), optionally a smaller base model (another one, or the target's first N
decoder layers: ``--layers``), only the first seed, no refinement step in the LR search
and no reference config.  *Beware of the Batch Size*
(arXiv 2602.09492) proposes exactly this proxy: the best batch size moves with the data more than with
rank or model size.  Per method it recommends the batch size the study's cost rule picks
(``report.cost_tolerance``, ``report.cost_axis``) and that batch size's LR, and beside it the batch
size with the best validation score.

When the target study's results exist (its ``output_dir``), it also reports whether the recommendation
transferred -- the target's tuned test value at the recommended batch size lies inside the interval of
the target's best batch size (chosen on validation) -- and the compute ratio, proxy ÷ target, in
training FLOPs summed over every trial each study ran (``report/cost.py``'s formula), and beside it in
trial seconds (training and evaluation).  The result goes to ``<proxy output_dir>/proxy.json`` and,
when the target exists, to its ``analysis/proxy.json``, and the target's report is rebuilt with a
proxy section.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from lorasweep import results
from lorasweep.config import StudyConfig
from lorasweep.errors import UserError
from lorasweep.rundir import RunDir, TrialDir


def proxy_alpha(adapter, rank: int) -> float:
    """``alpha`` at the proxy's rank such that an update at a given LR has the target's size.

    Under Adam the first updates move every entry of B by about the LR, so ``scale · B A`` grows as
    ``scale · LR · sqrt(r)``: with LoRA's ``scale = alpha / r`` a lower rank at the same alpha/r moves the
    weights less and its best LR shifts up (a rank-1 proxy of a rank-8 study by ~sqrt(8), half a
    decade).  rsLoRA (arXiv 2312.03732) shows ``alpha / sqrt(r)`` is the rank-stable scale, so the
    proxy keeps ``alpha / sqrt(r)``: alpha x sqrt(rank / target rank); with ``use_rslora`` the scale
    is already alpha / sqrt(r) and alpha stays."""
    if adapter.use_rslora:
        return adapter.alpha
    return adapter.alpha * (rank / adapter.rank) ** 0.5


def proxy_config(
    cfg: StudyConfig,
    rank: int,
    model: str | None,
    all_seeds: bool = False,
    refine: bool = False,
    layers: int | None = None,
) -> StudyConfig:
    """The target's study at the proxy's cost: rank ``rank`` (alpha by :func:`proxy_alpha`), ``model`` if
    given, the first seed only, and -- since it only has to find the batch size -- no refinement step
    in the LR search and no reference config (claim (e) is the target's question)."""
    if rank < 1:
        raise UserError(f"must be >= 1, got {rank}", "--rank")
    adapter = dataclasses.replace(cfg.adapter, rank=rank, alpha=proxy_alpha(cfg.adapter, rank))
    train = cfg.train if all_seeds else dataclasses.replace(cfg.train, seeds=cfg.train.seeds[:1])
    train = dataclasses.replace(train, bracket=dataclasses.replace(train.bracket, refine=refine))
    suffix = f"-proxy-r{rank}" + ("-" + Path(model).name.replace(":", "-") if model else "")
    suffix += f"-L{layers}" if layers else ""
    mcfg = dataclasses.replace(cfg.model, source=model) if model else cfg.model
    if layers:
        mcfg = dataclasses.replace(mcfg, num_layers=layers)
    return dataclasses.replace(
        cfg,
        name=f"{cfg.name}{suffix}",
        output_dir=f"{cfg.output_dir}{suffix}",
        adapter=adapter,
        train=train,
        model=mcfg,
        report=dataclasses.replace(cfg.report, reference_config=False, curvature_examples=0),
    )


def study_flops(run_dir: Path) -> float | None:
    """Training FLOPs of every trial in ``run_dir`` (None if a finished trial lacks the counts)."""
    from lorasweep.report.cost import train_flops

    total = 0.0
    for d in _finished(run_dir):
        t = results.read_json(d.metrics).get("train", {})
        f = train_flops(t.get("input_tokens"), t.get("frozen_parameters"), t.get("trainable_parameters"))
        if f is None:
            return None
        total += f
    return total


def study_seconds(run_dir: Path) -> float:
    """Wall seconds of every finished trial in ``run_dir`` (training and evaluation, one worker each)."""
    return sum(float(results.read_json(d.status).get("seconds", 0.0)) for d in _finished(run_dir))


def _finished(run_dir: Path) -> list[TrialDir]:
    """The trial directories of ``run_dir`` that hold metrics, in name order."""
    return [d for d in RunDir(run_dir).trial_dirs() if d.metrics.exists()]


def recommend(cfg: StudyConfig, run_dir: Path) -> dict:
    """Per method: the batch size and LR the proxy study recommends -- the cheapest batch size within
    ``report.cost_tolerance`` of the best on validation (the report's cost rule) -- and, beside it, the
    batch size with the best validation score."""
    from lorasweep.report import insight, tuned

    res = tuned.build(cfg, run_dir, cfg.report.metric, with_claims=False)
    ins = insight.build(cfg, run_dir, res)
    return {
        m: {
            "batch_size": r.chosen.batch_size,
            "lr": r.chosen.lr,
            "proxy_test": r.chosen.test.as_dict(),
            "best_batch_size": r.best.batch_size,
            "best_lr": r.best.lr,
        }
        for m, r in ins.recommendation.items()
        if r is not None
    }


def transfer(cfg: StudyConfig, run_dir: Path, recommended: dict) -> dict:
    """Per method: the target's tuned test value at the recommended batch size (and at the proxy's best
    one) against the interval of the target's best batch size (chosen on the target's validation rows)."""
    from lorasweep.report import insight, tuned

    res = tuned.build(cfg, run_dir, cfg.report.metric, with_claims=False)
    ins = insight.build(cfg, run_dir, res)
    out = {}
    for m, rec in recommended.items():
        best = ins.best_batch.get(m)
        at = res.tuned.get((m, rec["batch_size"]))
        if best is None or at is None or at.estimate is None:
            out[m] = {"transferred": None, "why": "the target has no tuned result for this batch size"}
            continue
        b = res.tuned[(m, best)].estimate
        out[m] = {
            "target_best_batch_size": best,
            "target_best_test": b.as_dict(),
            "target_test_at_recommended": at.estimate.as_dict(),
            "target_lr_at_recommended": at.best.lr,
            "transferred": b.lo <= at.estimate.mean <= b.hi,
        }
        at_best = res.tuned.get((m, rec.get("best_batch_size")))
        if at_best is not None and at_best.estimate is not None:
            out[m]["target_test_at_proxy_best"] = at_best.estimate.as_dict()
            out[m]["proxy_best_transferred"] = b.lo <= at_best.estimate.mean <= b.hi
    return out


def run_proxy(
    cfg: StudyConfig,
    rank: int,
    model: str | None = None,
    all_seeds: bool = False,
    refine: bool = False,
    log: Callable[[str], None] = print,
    layers: int | None = None,
) -> dict:
    from lorasweep import study

    pcfg = proxy_config(cfg, rank, model, all_seeds, refine, layers)
    pdir = Path(pcfg.output_dir)
    log(
        f"proxy study: rank {pcfg.adapter.rank}, model {pcfg.model.source}"
        + (f" (first {layers} layers)" if layers else "")
        + f", seeds {pcfg.train.seeds} -> {pdir}"
    )
    study.run(pcfg, log)
    out: dict = {
        "proxy": {
            "rank": pcfg.adapter.rank,
            "model": pcfg.model.source,
            "layers": pcfg.model.num_layers,
            "seeds": pcfg.train.seeds,
        },
        "recommendation": recommend(pcfg, pdir),
        "proxy_flops": study_flops(pdir),
        "proxy_seconds": study_seconds(pdir),
    }
    target = Path(cfg.output_dir)
    if (target / "trials").is_dir() and (target / "study.json").exists():
        out["transfer"] = transfer(cfg, target, out["recommendation"])
        full = study_flops(target)
        out["target_flops"] = full
        out["compute_ratio"] = out["proxy_flops"] / full if full and out["proxy_flops"] is not None else None
        out["target_seconds"] = study_seconds(target)
        out["seconds_ratio"] = out["proxy_seconds"] / out["target_seconds"] if out["target_seconds"] else None
    else:
        out["transfer"] = None
        out["why_no_transfer"] = f"no target results in {target} (run `lorasweep run` on the target config)"
    results.atomic_write_json(pdir / "proxy.json", out)
    if out["transfer"] is not None:  # the target's report gains its proxy section
        from lorasweep.report.insight import PROXY_FILE
        from lorasweep.report.render import build_report

        (target / PROXY_FILE).parent.mkdir(parents=True, exist_ok=True)
        results.atomic_write_json(target / PROXY_FILE, out)
        log(f"target report updated: {build_report(target, cfg)}")
    for m, r in out["recommendation"].items():
        t = (out["transfer"] or {}).get(m, {})
        verdict = "" if not t else f"; target: transferred={t.get('transferred')}"
        log(f"{m:<8} recommended B={r['batch_size']} LR={r['lr']:g}{verdict}")
    if out.get("compute_ratio") is not None:
        log(
            f"proxy compute / target compute = {out['compute_ratio']:.2f} (training FLOPs), "
            f"{out['seconds_ratio']:.2f} (trial seconds, training and evaluation)"
        )
    return out
