"""lorasweep proxy: the proxy config, the transfer verdict and the compute ratio."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lorasweep import proxy
from lorasweep.cli import main
from lorasweep.config import load_config
from lorasweep.errors import UserError
from tests.report.conftest import study  # noqa: F401  (the synthetic bracketed study)
from tests.sweep.test_end_to_end import MICRO


def test_proxy_config_changes_rank_alpha_seeds_and_directory_only():
    cfg = load_config("configs/demo.yaml")
    p = proxy.proxy_config(cfg, rank=2, model=None)
    # alpha / sqrt(r) kept (rank-stable scale, arXiv 2312.03732): the LR optimum stays put
    assert p.adapter.rank == 2 and p.adapter.alpha == pytest.approx(
        cfg.adapter.alpha * (2 / cfg.adapter.rank) ** 0.5
    )
    assert p.adapter.alpha / 2**0.5 == pytest.approx(cfg.adapter.alpha / cfg.adapter.rank**0.5)
    rs = dataclasses.replace(cfg, adapter=dataclasses.replace(cfg.adapter, use_rslora=True))
    assert proxy.proxy_config(rs, 2, None).adapter.alpha == cfg.adapter.alpha  # already alpha / sqrt(r)
    assert p.train.seeds == cfg.train.seeds[:1] and p.train.batch_sizes == cfg.train.batch_sizes
    assert p.data == cfg.data and p.output_dir == f"{cfg.output_dir}-proxy-r2"
    assert proxy.proxy_config(cfg, 2, None, all_seeds=True).train.seeds == cfg.train.seeds
    # it only has to find the batch size: no refinement, no reference config, no curvature
    assert p.train.bracket.refine is False and p.report.reference_config is False
    assert p.report.curvature_examples == 0
    assert proxy.proxy_config(cfg, 2, None, refine=True).train.bracket.refine is True
    assert p.train.bracket.start_lr == cfg.train.bracket.start_lr and p.eval == cfg.eval
    with pytest.raises(UserError, match="--rank"):
        proxy.proxy_config(cfg, 0, None)


def test_transfer_compares_with_the_best_batch_sizes_interval(study):  # noqa: F811
    cfg, run_dir, _ = study
    best = json.loads((run_dir / "report" / "summary.json").read_text())["insight"]["best_batch_size"]
    out = proxy.transfer(cfg, run_dir, {"lora": {"batch_size": best["lora"], "lr": 1e-3}})
    assert out["lora"]["transferred"] is True  # the best batch size is inside its own interval
    assert "proxy_best_transferred" not in out["lora"]  # no proxy-best batch size given
    both = proxy.transfer(
        cfg, run_dir, {"lora": {"batch_size": 128, "lr": 1e-3, "best_batch_size": best["lora"]}}
    )
    assert both["lora"]["proxy_best_transferred"] is True
    assert out["lora"]["target_best_batch_size"] == best["lora"]
    missing = proxy.transfer(cfg, run_dir, {"lora": {"batch_size": 7, "lr": 1e-3}})
    assert missing["lora"]["transferred"] is None
    # FLOPs of every trial: tokens 1000 x (4 x 100000 + 6 x 1000) each
    n = len(list((run_dir / "trials").iterdir()))
    assert proxy.study_flops(run_dir) == pytest.approx(n * 1000 * 406000)


@pytest.mark.slow
def test_proxy_cli_end_to_end(tmp_path):
    target = [f"output_dir={tmp_path / 'run'}", *MICRO, "train.seeds=[0,1]", "adapter.methods=[lora]"]
    assert main(["run", "configs/demo.yaml", *target]) == 0
    assert main(["proxy", "configs/demo.yaml", *target, "--rank", "1"]) == 0
    out = json.loads((tmp_path / "run-proxy-r1" / "proxy.json").read_text())
    assert out["proxy"] == {"rank": 1, "model": "builtin:tinyworld", "seeds": [0]}
    assert out["recommendation"]["lora"]["batch_size"] in (4, 16)
    assert out["transfer"]["lora"]["transferred"] in (True, False)
    assert 0.15 < out["compute_ratio"] < 0.5  # one seed of two, a smaller adapter, no refinement


def test_the_targets_report_shows_the_proxy_check(study, tmp_path):  # noqa: F811
    """run_proxy writes its result into the target's analysis/proxy.json; the target's report (Markdown,
    HTML, summary.json) then carries a proxy section with the verdict and the compute ratio."""
    import shutil

    from lorasweep.report import render
    from lorasweep.report.insight import PROXY_FILE

    cfg, run_dir, _ = study
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    before = (target / "report" / "report.md").read_text()
    assert "## Proxy tuning" in before and "Not run: `lorasweep proxy CONFIG`" in before
    rec = {"lora": {"batch_size": 128, "lr": 1.6e-2, "best_batch_size": 8, "best_lr": 1e-3, "proxy_test": {}}}
    out = {
        "proxy": {"rank": 1, "model": "builtin:tinyworld", "seeds": [0]},
        "recommendation": rec,
        "transfer": proxy.transfer(cfg, target, rec),
        "compute_ratio": 0.31,
        "seconds_ratio": 0.28,
    }
    (target / PROXY_FILE).parent.mkdir(exist_ok=True)
    (target / PROXY_FILE).write_text(json.dumps(out))
    render.build_report(target, cfg)
    text = (target / "report" / "report.md").read_text()
    section = text.split("## Proxy tuning", 1)[1]
    assert "31% of the training FLOPs, 28% of the trial seconds" in section
    verdict = "yes" if out["transfer"]["lora"]["transferred"] else "**no**"
    assert "| lora | 128 (0.016) |" in section and f"| {verdict} |" in section
    html = (target / "report" / "report.html").read_text()
    assert "Proxy tuning" in html and "31% of the training FLOPs" in html
    summary = json.loads((target / "report" / "summary.json").read_text())
    assert summary["insight"]["proxy"]["compute_ratio"] == 0.31


def test_a_truncated_model_is_a_smaller_model_of_the_same_family():
    """model.num_layers / proxy --layers: the first N decoder layers; embedding, norm and head kept."""
    import torch

    from lorasweep import models

    full, tok = models.load_base("builtin:tinyworld")
    two, _ = models.load_base("builtin:tinyworld", num_layers=2)
    assert len(two.model.layers) == two.config.num_hidden_layers == 2 == len(full.model.layers) - 1
    assert torch.equal(two.model.layers[1].mlp.up_proj.weight, full.model.layers[1].mlp.up_proj.weight)
    ids = torch.tensor([tok("7 + 5 =")["input_ids"]])
    assert two(input_ids=ids).logits.shape == full(input_ids=ids).logits.shape
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 0.6 < params(two) / params(full) < 0.8
    with pytest.raises(UserError, match="between 1 and the model's 3 layers") as e:
        models.load_base("builtin:tinyworld", num_layers=4)
    assert e.value.where == "model.num_layers"
    cfg = load_config("configs/demo.yaml")
    p = proxy.proxy_config(cfg, 1, None, layers=2)
    assert p.model.num_layers == 2 and p.model.source == cfg.model.source
    assert p.output_dir == f"{cfg.output_dir}-proxy-r1-L2"
