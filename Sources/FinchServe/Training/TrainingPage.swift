/// The live training page: step counter, progress bar and ETA, charts of loss (training and held-out),
/// learning rate, gradient norm, throughput, memory and the run's accuracies, the settings, and the
/// sample answers of each evaluation. Self-contained (no CDN): the charts are SVG drawn by the page's
/// own script from `/api/run`, polled every second with only the new lines fetched.
enum TrainingPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Finch training</title>
<style>
  :root { --fg: #1d232a; --muted: #66707a; --line: #d9dee3; --bg: #f6f7f9; --card: #fff; --accent: #2f6f4f; --eval: #b5542c; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
  header .top { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  #run { color: var(--muted); font-size: 12px; }
  .badge { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #e7efe9; color: var(--accent); }
  .badge.failed { background: #f7e3dc; color: var(--eval); }
  .badge.interrupted, .badge.stale { background: #f3efd9; color: #7a6412; }
  .bar { height: 8px; background: #e8ebee; border-radius: 4px; margin: 10px 0 6px; overflow: hidden; }
  .bar div { height: 100%; width: 0; background: var(--accent); transition: width .3s; }
  .facts { display: flex; gap: 22px; color: var(--muted); flex-wrap: wrap; }
  .facts b { color: var(--fg); font-weight: 600; }
  main { max-width: 1280px; margin: 0 auto; padding: 16px 20px; }
  .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 14px; }
  .chart { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; }
  .chart h2 { font-size: 13px; margin: 0 0 4px; font-weight: 600; }
  .chart .legend { font-size: 11px; color: var(--muted); }
  .chart svg { width: 100%; height: 180px; display: block; }
  section { margin-top: 18px; }
  section h2 { font-size: 15px; margin: 0 0 8px; }
  .sample { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; margin-bottom: 8px; }
  .sample .prompt { color: var(--muted); white-space: pre-wrap; }
  .sample .answer { white-space: pre-wrap; margin-top: 4px; }
  table { border-collapse: collapse; background: var(--card); font-size: 12px; }
  td { border: 1px solid var(--line); padding: 3px 8px; vertical-align: top; }
  td:first-child { color: var(--muted); }
  .empty { color: var(--muted); }
</style>
</head>
<body>
<header>
  <div class="top"><h1>Finch training</h1><span id="status" class="badge">loading</span><span id="run"></span></div>
  <div class="bar"><div id="bar"></div></div>
  <div class="facts">
    <span>step <b id="step">0</b> / <b id="total">?</b></span>
    <span>loss <b id="loss">–</b></span>
    <span>eval loss <b id="eval_loss">–</b></span>
    <span>ETA <b id="eta">–</b></span>
    <span>elapsed <b id="elapsed">–</b></span>
    <span id="updated"></span>
  </div>
</header>
<main>
  <div class="charts" id="charts"></div>
  <section><h2>Sample answers <select id="sample_step" aria-label="evaluation step"></select></h2><div id="samples"><p class="empty">None yet: they appear at each evaluation when the run has --sample-prompts.</p></div></section>
  <section><h2>Settings</h2><div id="settings" class="empty">–</div></section>
</main>
<script>
"use strict";
const state = { metrics: [], samples: [], progress: null, settings: null, shownStep: null };
const CHARTS = [
  { id: "loss", title: "Loss", series: [{ key: "loss", label: "training", src: "train" }, { key: "eval_loss", label: "held-out", src: "eval", dots: true }] },
  { id: "lr", title: "Learning rate", series: [{ key: "lr", src: "train" }] },
  { id: "grad_norm", title: "Gradient norm (before clipping)", series: [{ key: "grad_norm", src: "train" }] },
  { id: "throughput", title: "Throughput (tokens/s)", series: [{ key: "tokens_per_s", src: "train" }] },
  { id: "memory", title: "Peak memory (MiB)", series: [{ key: "peak_rss_mib", src: "train" }] },
  { id: "accuracy", title: "Accuracy", optional: true, series: [
      { key: "mmlu_eval_accuracy", label: "MMLU", src: "eval", dots: true },
      { key: "eval_rewards/accuracies", label: "held-out reward accuracy", src: "eval", dots: true },
      { key: "rewards/accuracies", label: "reward accuracy", src: "train" }] },
];
const COLORS = ["#2f6f4f", "#b5542c", "#3b5b92"];

function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || ["path", "line", "text", "circle", "g"].includes(tag) ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(v) {
  if (v === undefined || v === null || !isFinite(v)) return "–";
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : (a >= 100 ? v.toFixed(0) : v.toPrecision(4));
}
function duration(s) {
  if (s === undefined || s === null || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${r}s` : `${r}s`;
}
function isEval(m) { return m.eval_tokens !== undefined; }

function drawChart(spec) {
  let box = document.getElementById("chart_" + spec.id);
  const series = spec.series.map((s, i) => ({ ...s, color: COLORS[i % COLORS.length],
    points: state.metrics.filter(m => (s.src === "eval") === isEval(m) && typeof m[s.key] === "number").map(m => [m.step, m[s.key]]) }));
  const total = series.reduce((n, s) => n + s.points.length, 0);
  if (spec.optional && total === 0) { if (box) box.remove(); return; }
  if (!box) {
    box = el("div", { class: "chart", id: "chart_" + spec.id });
    box.append(el("h2", {}, spec.title), el("div", { class: "legend" }), el("svg", { viewBox: "0 0 400 180", preserveAspectRatio: "none" }));
    document.getElementById("charts").append(box);
  }
  const svg = box.querySelector("svg"), legend = box.querySelector(".legend");
  svg.replaceChildren();
  svg.setAttribute("data-points", String(total));
  legend.replaceChildren(...series.filter(s => s.points.length).map(s => {
    const last = s.points[s.points.length - 1];
    const span = el("span", { style: `color:${s.color};margin-right:12px` }, `${s.label || spec.title.toLowerCase()}: ${fmt(last[1])} at step ${last[0]}`);
    return span;
  }));
  if (total === 0) { svg.append(el("text", { x: 200, y: 95, "text-anchor": "middle", fill: "#66707a", "font-size": 12 }, "no points yet")); return; }
  const all = series.flatMap(s => s.points);
  const maxStep = Math.max(1, state.progress ? state.progress.total_steps : 0, ...all.map(p => p[0]));
  let lo = Math.min(...all.map(p => p[1])), hi = Math.max(...all.map(p => p[1]));
  if (hi - lo < 1e-12) { lo -= Math.abs(lo) * 0.05 + 1e-9; hi += Math.abs(hi) * 0.05 + 1e-9; }
  const L = 48, R = 8, T = 8, B = 20, W = 400 - L - R, H = 180 - T - B;
  const x = s => L + W * s / maxStep, y = v => T + H * (1 - (v - lo) / (hi - lo));
  for (const v of [lo, (lo + hi) / 2, hi]) {
    svg.append(el("line", { x1: L, x2: L + W, y1: y(v), y2: y(v), stroke: "#e3e7eb", "stroke-width": 1 }));
    svg.append(el("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end", fill: "#66707a", "font-size": 9 }, fmt(v)));
  }
  svg.append(el("text", { x: L, y: 176, fill: "#66707a", "font-size": 9 }, "0"));
  svg.append(el("text", { x: L + W, y: 176, "text-anchor": "end", fill: "#66707a", "font-size": 9 }, `step ${maxStep}`));
  for (const s of series) {
    if (!s.points.length) continue;
    if (s.dots || s.points.length === 1) {
      const g = el("g", { class: "series", "data-key": s.key });
      for (const [a, b] of s.points) g.append(el("circle", { cx: x(a), cy: y(b), r: 3, fill: s.color }));
      svg.append(g);
    } else {
      const d = s.points.map(([a, b], i) => `${i ? "L" : "M"}${x(a).toFixed(1)},${y(b).toFixed(1)}`).join("");
      svg.append(el("path", { class: "series", "data-key": s.key, d, fill: "none", stroke: s.color, "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" }));
    }
  }
}

function drawHeader() {
  const p = state.progress, train = state.metrics.filter(m => !isEval(m)), evals = state.metrics.filter(isEval);
  const status = document.getElementById("status");
  let label = p ? p.status : (train.length ? "running" : "waiting");
  const age = p ? Date.now() / 1000 - p.updated_at : 0;
  if (p && p.status === "running" && age > 60) label = `no update for ${duration(age)}`;
  status.textContent = label;
  status.className = "badge " + (p ? (age > 60 && p.status === "running" ? "stale" : p.status) : "");
  if (p && p.error) status.title = p.error;
  const step = p ? p.step : (train.length ? train[train.length - 1].step : 0);
  document.getElementById("step").textContent = step;
  document.getElementById("total").textContent = p ? p.total_steps : "?";
  document.getElementById("bar").style.width = p && p.total_steps ? `${100 * step / p.total_steps}%` : "0";
  document.getElementById("loss").textContent = train.length ? fmt(train[train.length - 1].loss) : "–";
  const el2 = evals.filter(e => typeof e.eval_loss === "number");
  document.getElementById("eval_loss").textContent = el2.length ? fmt(el2[el2.length - 1].eval_loss) : "–";
  document.getElementById("eta").textContent = p && p.status === "running" ? duration(p.eta_seconds) : (p ? "done" : "–");
  document.getElementById("elapsed").textContent = p ? duration(p.updated_at - p.started_at) : "–";
  document.getElementById("updated").textContent = p ? `updated ${new Date(p.updated_at * 1000).toLocaleTimeString()}` : "";
}

function drawSamples() {
  const steps = [...new Set(state.samples.map(s => s.step))].sort((a, b) => a - b);
  const select = document.getElementById("sample_step");
  const following = state.shownStep === null || state.shownStep === Number(select.options[select.options.length - 1]?.value);
  select.replaceChildren(...steps.map(s => el("option", { value: s }, `step ${s}`)));
  if (!steps.length) return;
  if (following || !steps.includes(state.shownStep)) state.shownStep = steps[steps.length - 1];
  select.value = String(state.shownStep);
  const box = document.getElementById("samples");
  box.replaceChildren(...state.samples.filter(s => s.step === state.shownStep).map(s => {
    const d = el("div", { class: "sample", "data-step": s.step });
    d.append(el("div", { class: "prompt" }, s.prompt), el("div", { class: "answer" }, s.answer));
    return d;
  }));
}

function drawSettings() {
  if (!state.settings) return;
  const t = el("table");
  for (const [k, v] of Object.entries(state.settings)) {
    if (v === null) continue;
    const tr = el("tr");
    tr.append(el("td", {}, k), el("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v)));
    t.append(tr);
  }
  const box = document.getElementById("settings");
  box.className = ""; box.replaceChildren(t);
}

async function poll() {
  try {
    const r = await fetch(`/api/run?metrics_from=${state.metrics.length}&samples_from=${state.samples.length}`, { cache: "no-store" });
    const data = await r.json();
    if (data.metrics_total < state.metrics.length || data.samples_total < state.samples.length) {
      state.metrics = []; state.samples = [];   // a resumed run cut its metrics: read them again
      return poll();
    }
    state.metrics.push(...data.metrics); state.samples.push(...data.samples);
    const settingsChanged = JSON.stringify(data.settings) !== JSON.stringify(state.settings);
    state.progress = data.progress; state.settings = data.settings;
    document.getElementById("run").textContent = data.run;
    drawHeader();
    for (const c of CHARTS) drawChart(c);
    drawSamples();
    if (settingsChanged) drawSettings();
  } catch (e) {
    const s = document.getElementById("status");
    s.textContent = "the server is gone"; s.className = "badge failed";
  }
}
document.getElementById("sample_step").addEventListener("change", e => { state.shownStep = Number(e.target.value); drawSamples(); });
poll();
setInterval(poll, Number(new URLSearchParams(location.search).get("interval") || 1000));
</script>
</body>
</html>
"""#
}
