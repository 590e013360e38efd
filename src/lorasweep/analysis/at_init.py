"""``lorasweep curvature CONFIG``: λmax at initialisation for every method of a study, written to
``<output_dir>/analysis/curvature.json`` where the report finds it (``report/insight.py``).

Each method is attached to a freshly loaded base model with the study's adapter settings and the
seed of ``seed``; the loss is the training loss over the first ``examples`` training examples of the
study's data (the same rows and tokenisation the trials train on).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from lorasweep import results
from lorasweep.config import StudyConfig

FILE = Path("analysis") / "curvature.json"


def curvature_at_init(
    cfg: StudyConfig,
    examples: int = 256,
    iters: int = 40,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Path:
    from lorasweep import adapters, models
    from lorasweep.analysis.curvature import adapter_top_eigenvalue
    from lorasweep.data.cache import encoded_train

    train_set = list(encoded_train(cfg))[:examples]
    out = {"examples": len(train_set), "requested": examples, "iters": iters, "seed": seed, "methods": {}}
    for method in cfg.adapter.methods:
        t = time.perf_counter()
        torch.manual_seed(seed)
        model, tok = models.load_base(cfg.model.source, cfg.model.dtype, num_layers=cfg.model.num_layers)
        spec = adapters.AdapterSpec.of(cfg.adapter, seed)
        model = adapters.attach(method, model, spec)
        top = adapter_top_eigenvalue(model, train_set, tok.pad_token_id, cfg.train.max_micro_batch, iters)
        out["methods"][method] = {
            "lambda_max": top.value,
            "iterations": top.iterations,
            "converged": top.converged,
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "seconds": time.perf_counter() - t,
        }
        state = "converged" if top.converged else "not converged"
        log(f"{method:<8} lambda_max {top.value:.4g}  ({top.iterations} Lanczos iterations, {state})")
    path = Path(cfg.output_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    results.atomic_write_json(path, out)
    return path


def ensure_curvature(cfg: StudyConfig, log: Callable[[str], None] = print) -> Path | None:
    """At study time (``report.curvature_examples > 0``): compute λmax per method unless the run
    directory already holds it for the same examples, iterations and methods (a resumed study)."""
    n = cfg.report.curvature_examples
    if n == 0:
        return None
    path = Path(cfg.output_dir) / FILE
    if path.exists():
        done = results.read_json(path)
        # ``examples`` on disk is what the data held; a study with fewer rows than asked matches too
        if (
            done.get("iters") == cfg.report.curvature_iters
            and done.get("requested", done.get("examples")) == n
            and set(done.get("methods", {})) == set(cfg.adapter.methods)
        ):
            return path
    log(f"curvature at init: lambda_max per method on (up to) {n} training examples")
    # as many torch threads as one trial uses: more collapse when other work holds the other cores
    saved = torch.get_num_threads()
    torch.set_num_threads(cfg.sweep.threads_per_worker)
    try:
        return curvature_at_init(cfg, n, cfg.report.curvature_iters, log=log)
    finally:
        torch.set_num_threads(saved)
