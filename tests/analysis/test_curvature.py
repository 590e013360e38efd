"""λmax at init: Lanczos on Hessian-vector products against the dense Hessian (issue 11)."""

from __future__ import annotations

import json

import pytest
import torch

from lorasweep.adapters import AdapterSpec, attach
from lorasweep.analysis import curvature
from lorasweep.cli import main
from tests.conftest import micro_llama
from tests.train.test_accumulation import variable_examples


def test_lanczos_finds_the_largest_algebraic_eigenvalue():
    """A spectrum whose largest magnitude is negative: power iteration would return -9."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([4.0, 3.9, -9.0]), torch.linspace(-2, 2, 57)]).double()
    a = q @ torch.diag(spectrum) @ q.T
    top = curvature.lanczos_top(lambda v: a @ v, 60, iters=60, tol=1e-10)
    assert top.value == pytest.approx(4.0, rel=1e-8)
    assert top.converged and top.iterations <= 60
    assert len(top.history) == top.iterations


def tiny_adapter(method: str):
    spec = AdapterSpec(rank=1, alpha=2.0, dropout=0.0, target_modules=("v_proj",), seed=0)
    return attach(method, micro_llama(), spec)


@pytest.mark.parametrize("method", ["lora", "pissa"])
def test_iterative_estimate_agrees_with_the_dense_hessian_within_1_percent(method):
    """Acceptance (issue 11): the Lanczos estimate vs the top eigenvalue of the full Hessian."""
    model = tiny_adapter(method)
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    dim = sum(p.numel() for p in params)
    assert dim == 128  # 2 layers x (A 1x32 + B 32x1)
    terms = curvature.adapter_loss_terms(model, variable_examples(6), pad_id=0, micro=6)
    matvec = curvature.flat_hvp(terms, params)
    dense = torch.linalg.eigvalsh(curvature.dense_hessian(matvec, dim))[-1].item()
    top = curvature.adapter_top_eigenvalue(model, variable_examples(6), pad_id=0, micro=6, iters=60)
    assert dense > 0
    assert abs(top.value / dense - 1) < 0.01, (top, dense)
    assert top.converged


def test_micro_batching_does_not_change_the_hessian():
    model = tiny_adapter("lora")
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(1)).double()
    one = curvature.flat_hvp(curvature.adapter_loss_terms(model, variable_examples(8), 0, 8), params)(v)
    four = curvature.flat_hvp(curvature.adapter_loss_terms(model, variable_examples(8), 0, 2), params)(v)
    torch.testing.assert_close(one, four, rtol=1e-4, atol=1e-7)


def test_cli_writes_curvature_per_method(tmp_path):
    out = tmp_path / "run"
    args = [
        "curvature",
        "configs/demo.yaml",
        f"output_dir={out}",
        "adapter.methods=[lora,pissa]",
        "data.num_train=64",
    ]
    assert main([*args, "--examples", "16", "--iters", "8"]) == 0
    data = json.loads((out / "analysis" / "curvature.json").read_text())
    assert data["examples"] == 16 and set(data["methods"]) == {"lora", "pissa"}
    for m in ("lora", "pissa"):
        assert data["methods"][m]["lambda_max"] > 0 and 1 <= data["methods"][m]["iterations"] <= 8


def test_cli_rejects_a_bad_count(tmp_path, capsys):
    assert main(["curvature", "configs/demo.yaml", f"output_dir={tmp_path}", "--iters", "0"]) == 2
    assert "--iters" in capsys.readouterr().err


def test_a_study_computes_curvature_once_and_reports_it(tmp_path):
    """``report.curvature_examples`` > 0: the run writes λmax per method before training, the report
    shows it beside the chosen LR, and a re-run (resume) does not compute it again."""
    from tests.conftest import TINY_STUDY

    out = tmp_path / "run"
    args = ["run", "configs/demo.yaml", f"output_dir={out}", *TINY_STUDY]
    args += ["report.curvature_examples=8", "report.curvature_iters=6"]
    assert main(args) == 0
    path = out / "analysis" / "curvature.json"
    data = json.loads(path.read_text())
    assert data["examples"] == 8 and data["iters"] == 6 and set(data["methods"]) == {"lora"}
    assert data["methods"]["lora"]["lambda_max"] > 0
    report = (out / "report" / "report.md").read_text()
    assert "λmax" in report and "lorasweep curvature CONFIG" not in report
    before = path.stat().st_mtime_ns
    assert main(args) == 0
    assert path.stat().st_mtime_ns == before  # resumed: not recomputed
    assert main([*args[:-1], "report.curvature_iters=7"]) == 0  # a report setting: recomputed
    assert json.loads(path.read_text())["iters"] == 7
