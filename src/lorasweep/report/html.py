"""``report/report.html``: the report as one self-contained page, beside ``report.md``.

No network: the page inlines its style, its script (``assets/report/report.js``, which draws every
figure as SVG from the JSON embedded in the page) and its data.  The claims table comes first; points
show their values on hover; check boxes hide a method or a seed everywhere (figures and tables).
Every test value is printed with its interval.  ``browser.py`` opens it in headless Chromium.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from pathlib import Path

from lorasweep import results
from lorasweep.analysis import lr_batch
from lorasweep.config import StudyConfig
from lorasweep.report.insight import Insight
from lorasweep.report.load import unit
from lorasweep.report.stats import Estimate
from lorasweep.report.tuned import StudyResults


def _asset(name: str) -> str:
    return resources.files("lorasweep").joinpath("assets", "report", name).read_text()


def _e(x) -> str:
    return html.escape(str(x))


def _iv(e, digits: int = 1) -> str:
    return "—" if e is None else _e(e.fmt(digits))


def _fit(f: lr_batch.PowerLaw | None) -> dict | None:
    if f is None:
        return None
    return {"exponent": f.exponent, "lo": f.lo, "hi": f.hi, "log_c": f.log_c}


def _clean(x):
    """JSON-safe: non-finite floats become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def page_data(cfg: StudyConfig, res: StudyResults, ins: Insight) -> dict:
    seed_of = {row["id"]: row["seed"] for row in res.rows}
    tuned = []
    for (m, b), t in sorted(res.tuned.items(), key=lambda kv: (res.methods.index(kv[0][0]), kv[0][1])):
        c = t.best.cell
        per_seed = (
            {seed_of.get(i, k): v for k, (i, v) in enumerate(zip(c.ids, c.values, strict=False))} if c else {}
        )
        tuned.append(
            {
                "method": m,
                "batch_size": b,
                "lr": t.best.lr,
                "bracketed": t.best.bracketed,
                "test": t.estimate.as_dict() if t.estimate else None,
                "per_seed": per_seed,
            }
        )
    lr = {}
    for m, pts in ins.lr_points.items():
        ok = [(b, x) for b, x, br in pts if br]
        lr[m] = {
            "points": [{"batch_size": b, "lr": x, "bracketed": br} for b, x, br in pts],
            "fit": _fit(ins.lr_fit.get(m)),
            "sqrt": _fit(lr_batch.rule_line(ok, 0.5)) if len(ok) > 1 else None,
            "linear": _fit(lr_batch.rule_line(ok, 1.0)) if len(ok) > 1 else None,
        }
    reasons = [n.reason for n in ins.noise.values() if n.reason]
    return _clean(
        {
            "metric": res.metric,
            "unit": unit(res.metric),
            "methods": res.methods,
            "seeds": list(cfg.train.seeds),
            "batches": res.batches,
            "baseline": res.baseline.as_dict() if res.baseline else None,
            "tuned": tuned,
            "lr": lr,
            "cost": [p.as_dict() for pts in ins.cost.values() for p in pts],
            "noise": [
                {
                    "method": m,
                    "batch_size": b,
                    "b_simple": sum(n.values) / len(n.values) if n.values else None,
                    "per_seed": n.values,
                }
                for (m, b), n in ins.noise.items()
            ],
            "noise_reason": reasons[0] if reasons else None,
            "same_step": [
                {"method": m, "batch_size": b, "steps": {str(k): sum(v) / len(v) for k, v in cell.items()}}
                for (m, b), cell in (ins.same_step.per_cell.items() if ins.same_step else [])
            ],
        }
    )


def render(cfg: StudyConfig, res: StudyResults, ins: Insight, title: str) -> str:
    level = f"{cfg.report.confidence:.0%}"
    data = json.dumps(page_data(cfg, res, ins)).replace("</", "<\\/")
    boxes = " ".join(
        f'<label><input type="checkbox" data-toggle="method" value="{_e(m)}" checked> {_e(m)}</label>'
        for m in res.methods
    )
    seeds = " ".join(
        f'<label><input type="checkbox" data-toggle="seed" value="{s}" checked> seed {s}</label>'
        for s in cfg.train.seeds
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_asset('report.css')}</style>",
        '<style id="toggle-style"></style></head><body>',
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">Choices (LR per batch size, best batch size) on validation rows; every number on test '
        f"rows with its {level} bootstrap interval over test items and seeds (brackets). Hover a point for its "
        "values.</p>",
        f'<div id="controls">Methods: {boxes} &nbsp; Per-seed points: {seeds}</div>',
        '<h2 id="claims">Claims of the study</h2>',
        _claims(res),
        "<h2>Accuracy vs batch size</h2>",
        '<div class="figs"><div class="fig" id="fig-accuracy"></div><div class="fig" id="fig-noise"></div></div>',
        _tuned(res, level),
        "<h2>Best learning rate vs batch size</h2>",
        '<div class="figs"><div class="fig" id="fig-lr"></div></div>',
        _lr_table(ins),
        "<h2>Cost frontier (fixed data budget)</h2>",
        '<div class="figs">'
        + "".join(
            f'<div class="fig" id="fig-cost-{a}"></div>' for a in ("steps", "seconds", "flops", "tokens")
        )
        + "</div>",
        _recommendation(ins, res),
        "<h2>Same-step view</h2>",
        '<div class="figs"><div class="fig" id="fig-same-step"></div><div class="fig" id="fig-same-data"></div></div>',
        _curvature(ins),
        _proxy(ins),
        '<div id="tooltip"></div>',
        f'<script type="application/json" id="report-data">{data}</script>',
        f"<script>{_asset('report.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _claims(res: StudyResults) -> str:
    rows = "".join(
        f'<tr><td>({_e(c.key)}) {_e(c.text)}</td><td class="verdict-{_e(c.verdict)}">{_e(c.verdict)}</td>'
        f"<td>{'<br>'.join(_e(x) for x in c.evidence)}</td></tr>"
        for c in res.claims
    )
    return f"<table><tr><th>claim</th><th>verdict</th><th>evidence (test, with intervals)</th></tr>{rows}</table>"


def _tuned(res: StudyResults, level: str) -> str:
    head = "".join(f"<th>B={b}</th>" for b in res.batches)
    rows = []
    for m in res.methods:
        cells = []
        for b in res.batches:
            t = res.tuned.get((m, b))
            if t is None or t.estimate is None:
                cells.append(f"<td>{_e(t.best.reason) if t else '—'}</td>")
                continue
            warn = "" if t.best.bracketed else f" ⚠ not bracketed: {_e(t.best.reason)}"
            cells.append(f"<td>{_iv(t.estimate)} @ {t.best.lr:g}{warn}</td>")
        rows.append(f'<tr data-method="{_e(m)}"><td>{_e(m)}</td>{"".join(cells)}</tr>')
    base = f"<p>Untrained base model: {_iv(res.baseline)}</p>" if res.baseline else ""
    return (
        f"<p>Test value, mean [{level} interval] @ LR chosen on validation.</p>"
        f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>{base}"
    )


def _lr_table(ins: Insight) -> str:
    rows = []
    for m, pts in ins.lr_points.items():
        f = ins.lr_fit.get(m)
        n_ok = sum(1 for *_, ok in pts if ok)
        if f is None:
            k = "— (needs two bracketed cells)"
        elif f.lo is None:
            k = f"{f.exponent:.2f} [no interval from two cells]"
        else:
            k = f"{f.exponent:.2f} [{f.lo:.2f}, {f.hi:.2f}]"
        rows.append(
            f'<tr data-method="{_e(m)}"><td>{_e(m)}</td><td>{len(pts)} ({n_ok})</td><td>{_e(k)}</td></tr>'
        )
    return (
        "<table><tr><th>method</th><th>cells (bracketed)</th><th>exponent k [interval]</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _recommendation(ins: Insight, res: StudyResults) -> str:
    rows = []
    for m, r in ins.recommendation.items():
        if r is None:
            continue
        saved = f"{r.saving:.2g}x" if r.saving else "—"
        rows.append(
            f'<tr data-method="{_e(m)}"><td>{_e(m)}</td><td>{r.chosen.batch_size}</td><td>{_iv(r.chosen.test)}</td>'
            f"<td>{r.best.batch_size}</td><td>{_iv(r.best.test)}</td><td>{_iv(r.difference)}</td><td>{saved}</td></tr>"
        )
    return (
        f"<p>Cheapest batch size (by {_e(ins.axis)}) whose validation score is within {ins.tolerance:g} points "
        "of the method's best; test values and the paired test difference with intervals.</p>"
        "<table><tr><th>method</th><th>recommended B</th><th>test</th><th>best B</th><th>test</th>"
        f"<th>difference</th><th>{_e(ins.axis)} saved</th></tr>{''.join(rows)}</table>"
    )


def _curvature(ins: Insight) -> str:
    cur = ins.curvature
    if not cur:
        return "<h2>Curvature at initialisation</h2><p class='empty'>Not computed (lorasweep curvature CONFIG).</p>"
    rows = "".join(
        f'<tr data-method="{_e(m)}"><td>{_e(m)}</td><td>{c["lambda_max"]:.4g}</td><td>{c["iterations"]}</td></tr>'
        for m, c in cur["methods"].items()
    )
    return (
        "<h2>Curvature at initialisation</h2>"
        f"<table><tr><th>method</th><th>λmax</th><th>Lanczos iterations</th></tr>{rows}</table>"
    )


def _proxy(ins: Insight) -> str:
    px = ins.proxy
    if not px or not px.get("transfer"):
        return "<h2>Proxy tuning</h2><p class='empty'>Not run (lorasweep proxy CONFIG).</p>"

    rows = []
    for m, rec in px["recommendation"].items():
        t = px["transfer"].get(m) or {}
        if t.get("transferred") is None:
            continue
        rows.append(
            f'<tr data-method="{_e(m)}"><td>{_e(m)}</td><td>{rec["batch_size"]} ({rec["lr"]:.3g})</td>'
            f"<td>{Estimate(**t['target_test_at_recommended']).fmt()}</td><td>{t['target_best_batch_size']}</td>"
            f"<td>{Estimate(**t['target_best_test']).fmt()}</td><td>{'yes' if t['transferred'] else 'no'}</td></tr>"
        )
    p, ratio = px["proxy"], px.get("compute_ratio")
    cost = f"{ratio:.0%} of the training FLOPs" if ratio is not None else "compute not known"
    return (
        "<h2>Proxy tuning</h2>"
        f"<p>Proxy: rank {p['rank']}, model {_e(str(p['model']))}"
        + (f" (first {p['layers']} layers)" if p.get("layers") else "")
        + f", seeds {_e(str(p['seeds']))}; {cost}.</p>"
        "<table><tr><th>method</th><th>proxy's B (LR)</th><th>test here at that B</th><th>best B here</th>"
        f"<th>test at best B</th><th>transferred</th></tr>{''.join(rows)}</table>"
    )


def write(path: Path, cfg: StudyConfig, res: StudyResults, ins: Insight) -> None:
    title = f"lorasweep report: {path.parent.parent.name}"
    results.atomic_write_text(path, render(cfg, res, ins, title))
