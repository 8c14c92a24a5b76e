// The cache dashboard at /stats: polls /v1/stats (the server's own counters) every second
// and plots, over the last five minutes, the plots /ui/plots.js lists (made on the server
// from the counter tables: hits per tier, origin requests and bytes, decodes, evictions,
// each tier's usage against its capacity, HTTP requests), with the current figures beside
// each plot. Drawn on canvases by this file: no external script.
//
// For tests, each <canvas> carries data-points (samples plotted), data-last (the last
// value of each series, JSON) and data-peak (the highest value plotted); each figure's element carries data-total (the counter, or
// the bytes held); body[data-polls] counts the answers received.

import { api, auth } from "/ui/fetcher.js";
import { PLOTS } from "/ui/plots.js";

const POLL_MS = 1000;
const WINDOW_S = 300;
const COLORS = ["#4fa3ff", "#f5a623", "#7ed321", "#e86bd1", "#50e3c2"];

// Each series is the sum of the values at its paths in the /v1/stats answer; an object
// there (thumbnails by scale) counts as the sum of its values, a usage is {bytes, capacity}.
function value(plot, paths) {
  const at = (stats, path) => path.split(".").reduce((v, key) => v?.[key], stats);
  const sum = (v) => (v !== null && typeof v === "object" ? Object.values(v).reduce((a, b) => a + b, 0) : v ?? 0);
  if (plot.kind === "usage") return (stats) => at(stats, paths[0]);
  return (stats) => paths.reduce((total, path) => total + sum(at(stats, path)), 0);
}

for (const plot of PLOTS) plot.series = plot.series.map(({ name, paths }) => [name, value(plot, paths)]);

const samples = []; // [{t, stats}]
let polls = 0;

const $ = (id) => document.getElementById(id);

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
}

function number(n) {
  if (n >= 100) return Math.round(n).toLocaleString("en");
  return n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

// The plotted points of one series: per-second rates between polls, or usage in %.
function points(plot, get) {
  const out = [];
  if (plot.kind === "usage") {
    for (const { t, stats } of samples) {
      const u = get(stats);
      if (u.capacity > 0) out.push([t, (100 * u.bytes) / u.capacity]);
    }
    return out;
  }
  for (let i = 1; i < samples.length; i += 1) {
    const a = samples[i - 1], b = samples[i];
    const dt = (b.t - a.t) / 1000;
    if (dt > 0) out.push([b.t, Math.max(0, get(b.stats) - get(a.stats)) / dt]);
  }
  return out;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= v) return m * step;
  return 10 * step;
}

function build() {
  for (const plot of PLOTS) {
    const box = document.createElement("section");
    box.className = "plot";
    const title = document.createElement("h2");
    title.textContent = plot.title;
    const canvas = document.createElement("canvas");
    canvas.id = `plot-${plot.id}`;
    const numbers = document.createElement("div");
    numbers.className = "numbers";
    numbers.id = `numbers-${plot.id}`;
    plot.series.forEach(([name], i) => {
      const row = document.createElement("div");
      row.dataset.series = name;
      row.innerHTML = `<span class="swatch" style="background:${COLORS[i % COLORS.length]}"></span><span><span class="name"></span> <b></b><small></small></span>`;
      row.querySelector(".name").textContent = name;
      numbers.append(row);
    });
    box.append(title, canvas, numbers);
    $("plots").append(box);
    plot.canvas = canvas;
    plot.numbers = numbers;
  }
}

function draw(plot, now) {
  const canvas = plot.canvas;
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  const left = 44, right = 6, top = 6, bottom = 18;
  const series = plot.series.map(([, get]) => points(plot, get));
  const highest = Math.max(plot.bytes ? 1000 : 0, ...series.flat().map((p) => p[1]));
  const peak = plot.kind === "usage" ? 100 : niceMax(highest);
  // The time axis grows with the samples held, up to the whole window.
  const span = Math.min(WINDOW_S * 1000, Math.max(15_000, now - samples[0].t));
  const x = (t) => left + ((t - (now - span)) / span) * (width - left - right);
  const y = (v) => top + (1 - v / peak) * (height - top - bottom);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#9aa0a6";
  g.strokeStyle = "#33383e";
  g.lineWidth = 1;
  for (let k = 0; k <= 4; k += 1) {
    const v = (peak * k) / 4;
    g.beginPath();
    g.moveTo(left, Math.round(y(v)) + 0.5);
    g.lineTo(width - right, Math.round(y(v)) + 0.5);
    g.stroke();
    const label = plot.bytes ? bytes(v) : plot.kind === "usage" ? `${v}%` : number(v);
    g.textAlign = "right";
    g.fillText(label, left - 4, y(v) + 4);
  }
  g.textAlign = "center";
  const step = [5, 10, 15, 30, 60].find((sec) => span / 1000 / sec <= 6) || 60;
  for (let ago = 0; ago * 1000 <= span; ago += step) {
    const label = ago === 0 ? "now" : ago % 60 === 0 ? `−${ago / 60} min` : `−${ago} s`;
    g.fillText(label, Math.min(width - 14, Math.max(left + 14, x(now - ago * 1000))), height - 4);
  }
  series.forEach((pts, i) => {
    if (pts.length === 0) return;
    g.strokeStyle = COLORS[i % COLORS.length];
    g.lineWidth = 1.6;
    g.beginPath();
    pts.forEach(([t, v], k) => (k === 0 ? g.moveTo(x(t), y(v)) : g.lineTo(x(t), y(v))));
    if (pts.length === 1) g.arc(x(pts[0][0]), y(pts[0][1]), 1.5, 0, 2 * Math.PI);
    g.stroke();
  });
  canvas.dataset.points = String(Math.max(0, ...series.map((p) => p.length)));
  canvas.dataset.peak = String(Math.max(0, ...series.flat().map((p) => p[1])));
  canvas.dataset.last = JSON.stringify(series.map((p) => (p.length ? p[p.length - 1][1] : null)));
  figures(plot, series);
}

function figures(plot, series) {
  const latest = samples[samples.length - 1].stats;
  plot.series.forEach(([, get], i) => {
    const row = plot.numbers.children[i];
    const pts = series[i];
    const now = pts.length ? pts[pts.length - 1][1] : 0;
    const value = get(latest);
    if (plot.kind === "usage") {
      row.dataset.total = String(value.bytes);
      row.querySelector("b").textContent = value.capacity > 0 ? `${now.toFixed(1)}%` : "off";
      row.querySelector("small").textContent = value.capacity > 0 ? `${bytes(value.bytes)} of ${bytes(value.capacity)}` : "";
    } else {
      row.dataset.total = String(value);
      row.querySelector("b").textContent = plot.bytes ? `${bytes(now)}/s` : `${number(now)}/s`;
      row.querySelector("small").textContent = `total ${plot.bytes ? bytes(value) : value.toLocaleString("en")}`;
    }
  });
}

async function poll() {
  try {
    const stats = await (await api("/v1/stats", { cache: "no-store" })).json();
    const t = Date.now();
    samples.push({ t, stats });
    while (samples.length > 2 && samples[0].t < t - WINDOW_S * 1000) samples.shift();
    polls += 1;
    document.body.dataset.polls = String(polls);
    for (const plot of PLOTS) draw(plot, t);
    setStatus(`up ${Math.round(stats.http.uptime_seconds)} s · polled every ${POLL_MS / 1000} s`);
  } catch (err) {
    setStatus(err.message, true);
  }
  setTimeout(poll, POLL_MS);
}

auth.onUnauthorized = () => ($("login").hidden = false);
$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  auth.set($("token").value.trim());
  $("login").hidden = true;
});
build();
poll();
