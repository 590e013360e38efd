// lorasweep interactive report: draws every figure as inline SVG from the JSON embedded in the page.
// No network, no libraries. Records what it drew in <body data-rendered> and any error in
// <body data-errors> (the browser test reads both).
"use strict";
(function () {
  const errors = [];
  window.addEventListener("error", (e) => {
    errors.push(String(e.message));
    document.body.dataset.errors = errors.join(" | ");
  });
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
  const color = (m) => COLORS[Math.max(0, D.methods.indexOf(m)) % COLORS.length];
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  const fmt = (v, d) => (v === null || v === undefined ? "—" : Number(v).toFixed(d === undefined ? 1 : d));
  const fmtG = (v) => (v === null || v === undefined ? "—" : Number(v).toPrecision(3));
  const iv = (e, d) => (e ? `${fmt(e.mean, d)} [${fmt(e.lo, d)}, ${fmt(e.hi, d)}]` : "—");

  // ------------------------------------------------------------ one chart
  function chart(id, o) {
    const el = document.getElementById(id);
    if (!el) return 0;
    const W = 560, H = 320, L = 64, R = 16, T = 28, B = 44;
    const pts = o.series.flatMap((s) => s.points);
    const ys = pts.flatMap((p) => [p.y, p.lo, p.hi]).filter((v) => v !== null && v !== undefined && isFinite(v) && (!o.ylog || v > 0));
    const xs = pts.map((p) => p.x).filter((v) => isFinite(v) && (!o.xlog || v > 0));
    if (!xs.length || !ys.length) {
      el.innerHTML = `<p class="empty">${esc(o.title)}: nothing to draw.</p>`;
      return 0;
    }
    const tx = (v) => (o.xlog ? Math.log(v) : v), ty = (v) => (o.ylog ? Math.log(v) : v);
    let [x0, x1] = [Math.min(...xs.map(tx)), Math.max(...xs.map(tx))];
    let [y0, y1] = [Math.min(...ys.map(ty)), Math.max(...ys.map(ty))];
    if (o.y0 !== undefined) y0 = Math.min(y0, o.y0);
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { y0 -= 1; y1 += 1; }
    const padx = (x1 - x0) * 0.06, pady = (y1 - y0) * 0.08;
    x0 -= padx; x1 += padx; y0 -= pady; y1 += pady;
    const sx = (v) => L + ((tx(v) - x0) / (x1 - x0)) * (W - L - R);
    const sy = (v) => H - B - ((ty(v) - y0) / (y1 - y0)) * (H - T - B);
    const out = [`<svg viewBox="0 0 ${W} ${H}" class="chart" role="img" aria-label="${esc(o.title)}">`];
    out.push(`<text x="${W / 2}" y="16" class="title">${esc(o.title)}</text>`);
    let xt = o.xticks || [...new Set(xs)].sort((a, b) => a - b);
    if (xt.length > 8) xt = xt.filter((_, i) => i % Math.ceil(xt.length / 8) === 0);
    let lastLabel = -Infinity; // a label closer than 36 px to the previous one is left out (its grid line stays)
    for (const v of xt) {
      out.push(`<line x1="${sx(v)}" x2="${sx(v)}" y1="${T}" y2="${H - B}" class="grid"/>`);
      if (sx(v) - lastLabel < 36) continue;
      lastLabel = sx(v);
      out.push(`<text x="${sx(v)}" y="${H - B + 14}" class="tick">${esc(o.xfmt ? o.xfmt(v) : v)}</text>`);
    }
    for (let i = 0; i <= 4; i++) {
      const v = o.ylog ? Math.exp(y0 + ((y1 - y0) * i) / 4) : y0 + ((y1 - y0) * i) / 4;
      out.push(`<line x1="${L}" x2="${W - R}" y1="${sy(v)}" y2="${sy(v)}" class="grid"/>`);
      out.push(`<text x="${L - 4}" y="${sy(v) + 4}" class="tick y">${esc(o.ylog ? fmtG(v) : fmt(v, 1))}</text>`);
    }
    out.push(`<text x="${W / 2}" y="${H - 6}" class="label">${esc(o.xlabel)}</text>`);
    out.push(`<text transform="translate(14 ${H / 2}) rotate(-90)" class="label">${esc(o.ylabel)}</text>`);
    let marks = 0;
    for (const s of o.series) {
      const attrs = `data-method="${esc(s.method || "")}"` + (s.seed !== undefined ? ` data-seed="${s.seed}"` : "");
      const c = s.color || color(s.method);
      const ok = s.points.filter((p) => p.y !== null && isFinite(p.y) && (!o.xlog || p.x > 0) && (!o.ylog || p.y > 0));
      if (s.line && ok.length > 1) {
        const d = [...ok].sort((a, b) => a.x - b.x).map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join("");
        out.push(`<path d="${d}" ${attrs} class="line" stroke="${c}" ${s.dash ? `stroke-dasharray="${s.dash}"` : ""} opacity="${s.opacity || 1}"/>`);
      }
      for (const p of ok) {
        if (p.lo !== undefined && p.lo !== null && (!o.ylog || p.lo > 0)) {
          out.push(`<line x1="${sx(p.x)}" x2="${sx(p.x)}" y1="${sy(p.lo)}" y2="${sy(p.hi)}" ${attrs} class="err" stroke="${c}"/>`);
        }
        if (s.marker === false) continue;
        const fill = p.hollow ? "white" : c;
        out.push(`<circle cx="${sx(p.x)}" cy="${sy(p.y)}" r="${s.small ? 2.5 : 4}" ${attrs} class="pt" fill="${fill}" stroke="${c}" data-tip="${esc(p.tip || "")}"><title>${esc(p.tip || "")}</title></circle>`);
        marks++;
      }
    }
    if (o.hline !== undefined && o.hline !== null) {
      out.push(`<line x1="${L}" x2="${W - R}" y1="${sy(o.hline)}" y2="${sy(o.hline)}" class="base"/>`);
    }
    const legend = [...new Set(o.series.filter((s) => s.method).map((s) => s.method))];
    legend.forEach((m, i) => {
      const y = T + 6 + i * 14;
      out.push(`<g data-method="${esc(m)}"><rect x="${W - R - 70}" y="${y - 8}" width="10" height="10" fill="${color(m)}"/><text x="${W - R - 56}" y="${y + 1}" class="legend">${esc(m)}</text></g>`);
    });
    out.push("</svg>");
    el.innerHTML = out.join("");
    el.dataset.marks = marks;
    return marks > 0 ? 1 : 0;
  }

  // ------------------------------------------------------------ figures from the data
  const tuned = D.tuned.filter((t) => t.test);
  const byMethod = (rows, m) => rows.filter((r) => r.method === m);
  let drawn = 0;
  const accSeries = [];
  for (const m of D.methods) {
    const rows = byMethod(tuned, m);
    accSeries.push({ method: m, line: true, points: rows.map((t) => ({ x: t.batch_size, y: t.test.mean, lo: t.test.lo, hi: t.test.hi, hollow: !t.bracketed, tip: `${m}, B=${t.batch_size}, LR ${fmtG(t.lr)}: ${iv(t.test)} ${D.unit}${t.bracketed ? "" : " (LR not bracketed)"}` })) });
    for (const s of D.seeds) {
      accSeries.push({ method: m, seed: s, small: true, points: rows.filter((t) => t.per_seed[s] !== undefined).map((t) => ({ x: t.batch_size, y: t.per_seed[s], tip: `${m}, B=${t.batch_size}, seed ${s}: ${fmt(t.per_seed[s])} ${D.unit}` })) });
    }
  }
  drawn += chart("fig-accuracy", { title: `${D.metric}, test, at the LR chosen on validation`, xlabel: "effective batch size", ylabel: `${D.metric} (${D.unit})`, xlog: true, xticks: D.batches, series: accSeries, hline: D.baseline ? D.baseline.mean : null });

  const lrSeries = [];
  for (const m of D.methods) {
    const lr = D.lr[m];
    if (!lr || !lr.points.length) continue;
    lrSeries.push({ method: m, points: lr.points.map((p) => ({ x: p.batch_size, y: p.lr, hollow: !p.bracketed, tip: `${m}, B=${p.batch_size}: LR ${fmtG(p.lr)}${p.bracketed ? "" : " (not bracketed)"}` })) });
    for (const [name, f, dash] of [["fit", lr.fit, ""], ["square-root rule", lr.sqrt, "6,3"], ["linear rule", lr.linear, "2,3"]]) {
      if (!f) continue;
      const tip = name === "fit" ? `${m}: LR = ${fmtG(Math.exp(f.log_c))}·B^${fmt(f.exponent, 2)}` + (f.lo !== null ? ` (k in [${fmt(f.lo, 2)}, ${fmt(f.hi, 2)}])` : "") : `${m}: ${name}`;
      lrSeries.push({ method: m, line: true, dash, opacity: name === "fit" ? 1 : 0.45, small: true, points: D.batches.map((b) => ({ x: b, y: Math.exp(f.log_c + f.exponent * Math.log(b)), tip })) });
    }
  }
  drawn += chart("fig-lr", { title: "Best LR vs batch size (dashed: square-root rule, dotted: linear)", xlabel: "effective batch size", ylabel: "LR chosen on validation", xlog: true, ylog: true, xticks: D.batches, series: lrSeries });

  for (const axis of ["steps", "seconds", "flops", "tokens"]) {
    const series = D.methods.map((m) => ({ method: m, line: true, points: byMethod(D.cost, m).filter((p) => p[axis] !== null).map((p) => ({ x: p[axis], y: p.test.mean, lo: p.test.lo, hi: p.test.hi, tip: `${m}, B=${p.batch_size}: ${iv(p.test)} ${D.unit} at ${fmtG(p[axis])} ${axis}` })) }));
    drawn += chart(`fig-cost-${axis}`, { title: `test ${D.metric} vs ${axis} of one trial`, xlabel: axis, ylabel: `${D.metric} (${D.unit})`, xlog: true, xfmt: fmtG, series });
  }

  const noise = D.noise.filter((n) => n.b_simple !== null);
  if (noise.length) {
    const series = D.methods.map((m) => ({ method: m, line: true, points: byMethod(noise, m).map((n) => ({ x: n.batch_size, y: n.b_simple, lo: Math.min(...n.per_seed), hi: Math.max(...n.per_seed), tip: `${m}, B=${n.batch_size}: B_simple ${fmtG(n.b_simple)} [${fmtG(Math.min(...n.per_seed))}, ${fmtG(Math.max(...n.per_seed))}] over seeds` })) }));
    drawn += chart("fig-noise", { title: "Gradient noise scale B_simple (examples) at each tuned cell", xlabel: "effective batch size", ylabel: "B_simple", xlog: true, ylog: true, xticks: D.batches, series });
  } else {
    const el = document.getElementById("fig-noise");
    if (el) el.innerHTML = `<p class="empty">Noise scale not estimable in this run: ${esc(D.noise_reason || "no trial logged it")}.</p>`;
  }

  for (const [id, view] of [["fig-same-step", "step"], ["fig-same-data", "data"]]) {
    const series = D.same_step.map((c) => {
      const steps = Object.keys(c.steps).map(Number).sort((a, b) => a - b);
      const shade = 0.35 + (0.65 * (D.batches.indexOf(c.batch_size) + 1)) / D.batches.length;
      return { method: c.method, line: true, small: true, opacity: shade, points: steps.map((s) => ({ x: view === "step" ? s : s * c.batch_size, y: c.steps[s], tip: `${c.method}, B=${c.batch_size}, step ${s} (${s * c.batch_size} examples): held-out loss ${fmt(c.steps[s], 3)}` })) };
    });
    const label = view === "step" ? "optimizer step" : "examples seen (step × B)";
    drawn += chart(id, { title: `Validation held-out loss at equal ${view === "step" ? "steps" : "data"} (darker: larger B)`, xlabel: label, ylabel: "held-out loss", xlog: true, xfmt: fmtG, series });
  }

  // ------------------------------------------------------------ hover and toggles
  const tip = document.getElementById("tooltip");
  document.addEventListener("mouseover", (e) => {
    const t = e.target.closest && e.target.closest("[data-tip]");
    if (!t || !t.dataset.tip) return;
    tip.textContent = t.dataset.tip;
    tip.style.display = "block";
  });
  document.addEventListener("mousemove", (e) => {
    tip.style.left = e.pageX + 12 + "px";
    tip.style.top = e.pageY + 12 + "px";
  });
  document.addEventListener("mouseout", (e) => {
    if (e.target.closest && e.target.closest("[data-tip]")) tip.style.display = "none";
  });
  const style = document.getElementById("toggle-style");
  function applyToggles() {
    const rules = [];
    document.querySelectorAll("input[data-toggle]").forEach((box) => {
      if (!box.checked) rules.push(`[data-${box.dataset.toggle}="${box.value}"]{display:none}`);
    });
    style.textContent = rules.join("\n");
  }
  document.querySelectorAll("input[data-toggle]").forEach((box) => box.addEventListener("change", applyToggles));
  applyToggles();
  document.body.dataset.rendered = String(drawn);
})();
