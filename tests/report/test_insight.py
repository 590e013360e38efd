"""The report beyond the claims: LR-vs-batch power law, cost frontier and recommendation (pure), and
the whole report (Markdown, summary.json, report.html) on a synthetic bracketed study."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lorasweep.analysis import lr_batch
from lorasweep.report import cost
from lorasweep.report.stats import Estimate, diff_interval


@pytest.mark.parametrize(
    "p, dof, expected", [(0.975, 1, 12.706), (0.975, 4, 2.776), (0.975, 30, 2.042), (0.95, 10, 1.812)]
)
def test_t_quantiles_match_the_tables(p, dof, expected):
    assert lr_batch.t_quantile(p, dof) == pytest.approx(expected, abs=2e-3)


def test_power_law_recovers_an_exact_exponent_and_its_interval_covers_a_noisy_one():
    exact = lr_batch.fit_power_law([(b, 2e-4 * b**0.7) for b in (4, 8, 16, 64)])
    assert exact.exponent == pytest.approx(0.7) and exact.predict(32) == pytest.approx(2e-4 * 32**0.7)
    assert exact.hi - exact.lo < 1e-9 and exact.rms_log10 < 1e-12
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(200):
        pts = [(b, 1e-3 * b**0.5 * 10 ** rng.normal(0, 0.1)) for b in (2, 4, 8, 16, 32, 64)]
        f = lr_batch.fit_power_law(pts, 0.95)
        covered += f.lo <= 0.5 <= f.hi
    assert 180 <= covered <= 199  # ~95 % coverage


def test_power_law_needs_two_batch_sizes_and_gives_no_interval_from_two():
    assert lr_batch.fit_power_law([(8, 1e-3)]) is None
    assert lr_batch.fit_power_law([(8, 1e-3), (8, 2e-3)]) is None
    two = lr_batch.fit_power_law([(8, 1e-3), (32, 2e-3)])
    assert two.exponent == pytest.approx(0.5) and two.lo is None and two.excludes(0.5) is None


def point(b: int, val: float, p: float, steps: int, seed: int = 0) -> cost.CostPoint:
    m = 100.0 * (np.random.default_rng(seed).random((2, 400)) < p)
    e = Estimate(float(m.mean()), float(m.mean()) - 3, float(m.mean()) + 3)
    return cost.CostPoint("lora", b, 1e-3, val, e, m, steps, 1000, steps * 0.5, 1e12)


def diff(x, y):
    return diff_interval(x, y, 0.95, 500)


def test_recommendation_is_the_cheapest_within_tolerance_on_validation():
    pts = [
        point(4, 70.0, 0.7, 512, 1),
        point(16, 71.0, 0.7, 128, 2),
        point(64, 69.5, 0.6, 32, 3),
        point(128, 50.0, 0.5, 16, 4),
    ]
    rec = cost.recommend(pts, tolerance=2.0, axis="steps", diff=diff)
    assert (rec.best.batch_size, rec.chosen.batch_size) == (16, 64)  # 69.5 >= 71 - 2; 128 is too far
    assert rec.saving == pytest.approx(4.0)  # 128 steps / 32 steps
    assert rec.difference.lo < rec.difference.mean < rec.difference.hi < 0  # test: 0.6 vs 0.7
    strict = cost.recommend(pts, tolerance=0.0, axis="steps", diff=diff)
    assert strict.chosen.batch_size == 16 and strict.saving == 1.0
    d = strict.difference  # the best batch size against itself: exactly zero, no width
    assert (d.mean, d.lo, d.hi) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown cost axis"):
        cost.recommend(pts, 1.0, "joules", diff)


def test_frontier_drops_points_that_cost_more_for_less():
    pts = [point(4, 70.0, 0.7, 512), point(16, 72.0, 0.7, 128), point(64, 69.0, 0.6, 32)]
    assert [p.batch_size for p in cost.frontier(pts, "steps")] == [64, 16]


def test_flops_formula():
    assert cost.train_flops(1000, 1e6, 1e4) == 1000 * (4e6 + 6e4)
    assert cost.train_flops(None, 1e6, 1e4) is None


# ---------------------------------------------------------------- the whole report, synthetic study
# (the ``study`` fixture: tests/report/conftest.py)


def test_summary_has_every_insight(study):
    cfg, run_dir, _ = study
    s = json.loads((run_dir / "report" / "summary.json").read_text())["insight"]
    fit = s["lr_vs_batch"]["lora"]
    # optima scale exactly linearly (x4 per x4); the search lands within a quarter decade of each
    assert fit["cells"] == 3 and abs(fit["exponent"] - 1.0) < 0.25
    assert fit["interval"][0] <= fit["exponent"] <= fit["interval"][1]
    assert s["best_batch_size"] == {"lora": 8, "pissa": 8}  # B=8's optimum lies on the LR lattice
    rec = s["cost"]["recommendation"]["lora"]
    assert rec["batch_size"] == 128 and rec["axis"] == "steps"  # tolerance 100: the fewest steps
    assert set(rec["difference"]) == {"mean", "lo", "hi"}
    flops = {p["batch_size"]: p["flops"] for p in s["cost"]["points"] if p["method"] == "lora"}
    assert flops[8] == 1000 * (4 * 100000 + 6 * 1000)
    assert s["same_step"]["shared_steps"] == [1, 2, 3, 4, 8]
    noise = {(n["method"], n["batch_size"]): n for n in s["noise_scale"]}
    assert noise[("lora", 32)]["b_simple"] == pytest.approx(44.0)
    assert noise[("lora", 8)]["b_simple"] is None and "one micro-batch" in noise[("lora", 8)]["reason"]


def test_markdown_has_the_sections_and_figures(study):
    _, run_dir, path = study
    text = path.read_text()
    for heading in (
        "## Why batch size matters",
        "## Curvature at initialisation",
        "## Best learning rate",
        "## Cost frontier",
    ):
        assert heading in text
    assert "lorasweep curvature CONFIG" in text  # not computed: says how
    assert (run_dir / "report" / "lr_vs_batch.png").stat().st_size > 5000
    assert (run_dir / "report" / "cost_frontier.png").stat().st_size > 5000


def test_html_is_self_contained_with_claims_first(study):
    _, run_dir, _ = study
    page = (run_dir / "report" / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    assert page.index('id="claims"') < page.index('id="fig-accuracy"')
    data = page.split('<script type="application/json" id="report-data">')[1].split("</script>")[0]
    d = json.loads(data)
    assert d["methods"] == ["lora", "pissa"] and len(d["tuned"]) == 6
    assert all({"mean", "lo", "hi"} <= set(t["test"]) for t in d["tuned"])
    assert 'data-toggle="method" value="pissa"' in page and 'data-toggle="seed" value="1"' in page
