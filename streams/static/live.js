// CX Pulse live page: polls /api/scores every 2 s and redraws. No build step, no dependencies.
// Every value from the API goes into the DOM through textContent or numeric SVG attributes.
"use strict";

(function () {
  const POLL_MS = 2000;
  const TILE_METRICS = ["nps", "csat", "ces", "churn_rate", "first_response_p90_s"];
  const BREAKDOWNS = ["segment", "channel", "region", "plan", "touchpoint"];
  const DEFAULT_WINDOWS = ["5m", "1h", "24h", "7d", "30d"];
  const MAX_ROWS = 8;
  const SVG_NS = "http://www.w3.org/2000/svg";

  function duration(s) {
    if (s < 10) return (s === 0 ? "0" : s.toFixed(1)) + " s";
    const r = Math.round(s);
    if (r < 60) return r + " s";
    if (r < 3600) return Math.floor(r / 60) + "m " + String(r % 60).padStart(2, "0") + "s";
    const m = Math.round(r / 60);
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }
  const signed = (v, d) => (v > 0 ? "+" : v < 0 ? "\u2212" : "") + Math.abs(v).toFixed(d);
  const generic = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3));

  const METRICS = {
    nps: { label: "NPS", fmt: (v) => signed(v, 1), domain: [-100, 100], color: "#38bdf8",
      hint: "promoters \u2212 detractors" },
    csat: { label: "CSAT", fmt: (v) => v.toFixed(1) + "%", domain: [0, 100], color: "#a78bfa",
      hint: "top-2-box share" },
    ces: { label: "CES", fmt: (v) => v.toFixed(2), unit: "/ 7", domain: [1, 7], color: "#34d399",
      hint: "customer effort, higher = easier" },
    churn_rate: { label: "Churn rate", fmt: (v) => (100 * v).toFixed(2) + "%", domain: [0, 1],
      color: "#fb923c", hint: "cancelled / active at start" },
    first_response_p90_s: { label: "First response p90", fmt: duration, domain: [0, Infinity],
      color: "#f472b6", hint: "opened \u2192 first reply" },
  };
  function info(metric) {
    return METRICS[metric] || { label: metric, fmt: generic, domain: [-Infinity, Infinity], color: "#94a3b8", hint: "" };
  }
  const isNum = (v) => typeof v === "number" && isFinite(v);

  // --- state -------------------------------------------------------------------------------
  const params = new URLSearchParams(location.hash.slice(1));
  const state = {
    window: params.get("window") || "1h",
    dimension: params.get("dimension") || "segment",
    data: null,
    failures: 0,
    timer: null,
    seq: 0,
  };

  // --- DOM helpers -------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) el.append(c);
    return el;
  }
  function s(tag, attrs) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }
  function clock(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return "?";
    return d.toISOString().slice(11, 19);
  }
  function ago(ms) {
    const sec = Math.max(0, Math.round(ms / 1000));
    if (sec < 90) return sec + " s";
    if (sec < 5400) return Math.round(sec / 60) + " min";
    if (sec < 172800) return Math.round(sec / 3600) + " h";
    return Math.round(sec / 86400) + " d";
  }
  const num = (n) => (isNum(n) ? n.toLocaleString("en-US") : "\u2014");

  // --- sparkline: CI band + line + last point, y auto-scaled to the history --------------
  function sparkline(history, color) {
    const W = 300, H = 64, PAD = 6;
    const svg = s("svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
    const pts = (history || []).filter((p) => Array.isArray(p));
    const ys = [];
    for (const p of pts) for (const v of p.slice(1)) if (isNum(v)) ys.push(v);
    if (!ys.length) return svg;
    let lo = Math.min(...ys), hi = Math.max(...ys);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const x = (i) => (pts.length === 1 ? W / 2 : (i / (pts.length - 1)) * W);
    const y = (v) => H - PAD - ((v - lo) / (hi - lo)) * (H - 2 * PAD);
    // band: one polygon per run of points that have both bounds
    let run = [];
    const flushBand = () => {
      if (run.length > 1) {
        const top = run.map(([i, p]) => `${x(i).toFixed(1)},${y(p[3]).toFixed(1)}`);
        const bottom = run.slice().reverse().map(([i, p]) => `${x(i).toFixed(1)},${y(p[2]).toFixed(1)}`);
        svg.append(s("polygon", { points: top.concat(bottom).join(" "), fill: color, "fill-opacity": 0.16 }));
      }
      run = [];
    };
    pts.forEach((p, i) => (isNum(p[2]) && isNum(p[3]) ? run.push([i, p]) : flushBand()));
    flushBand();
    let d = "", pen = false, last = null;
    pts.forEach((p, i) => {
      if (!isNum(p[1])) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)} ${y(p[1]).toFixed(1)} `;
      pen = true;
      last = [x(i), y(p[1])];
    });
    if (d) {
      svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 2.5,
        "stroke-linejoin": "round", "vector-effect": "non-scaling-stroke" }));
    }
    if (last) {
      // A zero-length segment with round caps and a non-scaling stroke stays a circle even
      // though the viewBox is stretched (preserveAspectRatio=none).
      svg.append(s("path", { d: `M${last[0]} ${last[1]} L${last[0]} ${last[1]}`, stroke: color,
        "stroke-width": 9, "stroke-linecap": "round", "vector-effect": "non-scaling-stroke" }));
    }
    return svg;
  }

  // --- tiles -------------------------------------------------------------------------------
  function tile(metric, rec, minSample) {
    const m = info(metric);
    const st = !rec ? "missing" : isNum(rec.value) ? "ok" : "low";
    const el = h("article", { class: "tile " + st, "data-metric": metric, "data-state": st,
      "data-value": st === "ok" ? String(rec.value) : null, style: `--accent:${m.color}` });
    el.append(h("header", {}, h("span", { class: "label", text: m.label }),
      h("span", { class: "win", text: state.window })));
    if (st === "ok") {
      el.append(h("div", { class: "value" }, h("span", { class: "num", text: m.fmt(rec.value) }),
        m.unit ? h("span", { class: "unit", text: m.unit }) : null));
      el.append(h("div", { class: "ci", text: isNum(rec.ci95_low) && isNum(rec.ci95_high)
        ? `95% CI ${m.fmt(rec.ci95_low)} \u2026 ${m.fmt(rec.ci95_high)}` : m.hint }));
    } else if (st === "low") {
      el.append(h("div", { class: "value" }, h("span", { class: "num muted",
        text: "n < " + (isNum(minSample) ? minSample : "min") })));
      el.append(h("div", { class: "ci", text: "too few answers for a score" }));
    } else {
      el.append(h("div", { class: "value" }, h("span", { class: "num muted", text: "\u2014" })));
      el.append(h("div", { class: "ci", text: "no data yet" }));
    }
    el.append(h("div", { class: "n", text: rec ? "n = " + num(rec.n) : "\u00a0" }));
    el.append(sparkline(rec && rec.history, m.color));
    return el;
  }

  // --- breakdown tables with CI bars ---------------------------------------------------
  function extent(recs, metric) {
    const m = info(metric);
    const vs = [];
    for (const r of recs) for (const v of [r.value, r.ci95_low, r.ci95_high]) if (isNum(v)) vs.push(v);
    if (!vs.length) return null;
    let lo = Math.min(...vs), hi = Math.max(...vs);
    const pad = Math.max((hi - lo) * 0.08, Math.abs(hi) * 0.02, 1e-6);
    lo = Math.max(m.domain[0], lo - pad);
    hi = Math.min(m.domain[1], hi + pad);
    if (metric === "churn_rate" || metric === "first_response_p90_s") lo = Math.max(0, lo);
    return hi > lo ? [lo, hi] : [lo - 1, hi + 1];
  }
  function ciBar(rec, ext, overall, color) {
    const svg = s("svg", { class: "bar", viewBox: "0 0 100 20", preserveAspectRatio: "none" });
    svg.append(s("line", { x1: 0, x2: 100, y1: 10, y2: 10, class: "track", "vector-effect": "non-scaling-stroke" }));
    if (!ext) return svg;
    const x = (v) => Math.max(0, Math.min(100, ((v - ext[0]) / (ext[1] - ext[0])) * 100));
    if (overall && isNum(overall.value)) {
      const ox = x(overall.value);
      svg.append(s("line", { x1: ox, x2: ox, y1: 0, y2: 20, class: "overall", "vector-effect": "non-scaling-stroke" }));
    }
    if (!rec || !isNum(rec.value)) return svg;
    if (isNum(rec.ci95_low) && isNum(rec.ci95_high)) {
      const a = x(rec.ci95_low), b = x(rec.ci95_high);
      svg.append(s("rect", { x: a, y: 5, width: Math.max(0.5, b - a), height: 10, rx: 0, fill: color, "fill-opacity": 0.35 }));
    }
    const vx = x(rec.value);
    svg.append(s("line", { x1: vx, x2: vx, y1: 2, y2: 18, stroke: color, "stroke-width": 4, "vector-effect": "non-scaling-stroke" }));
    return svg;
  }
  function memberOrder(a, b) {
    const tail = (r) => (r.member === "other" || r.member === "unknown" ? 1 : 0);
    // A stable order (not by value or n) so rows do not jump between refreshes on a wall screen.
    return tail(a) - tail(b) || String(a.member).localeCompare(String(b.member));
  }
  function table(metric, rows, overall, minSample) {
    const m = info(metric);
    rows = rows.slice().sort(memberOrder);
    const shown = rows.slice(0, MAX_ROWS);
    const ext = extent(shown.concat(overall ? [overall] : []), metric);
    const card = h("section", { class: "card", "data-metric": metric, style: `--accent:${m.color}` });
    card.append(h("header", {}, h("h3", { text: `${m.label} by ${state.dimension}` }),
      h("span", { class: "win", text: state.window })));
    if (!rows.length) {
      card.append(h("div", { class: "empty", text: "no data yet" }));
      return card;
    }
    const body = h("div", { class: "rows" });
    for (const r of shown) {
      const ok = isNum(r.value);
      const ci = ok && isNum(r.ci95_low) && isNum(r.ci95_high) ? `95% CI ${m.fmt(r.ci95_low)} \u2026 ${m.fmt(r.ci95_high)}` : "";
      body.append(h("div", { class: "row" + (ok ? "" : " low"), title: ci, "data-member": r.member },
        h("span", { class: "member", text: r.member }),
        ciBar(r, ext, overall, m.color),
        h("span", { class: "val", text: ok ? m.fmt(r.value) : "n < " + (isNum(minSample) ? minSample : "min") }),
        h("span", { class: "rn", text: num(r.n) })));
    }
    card.append(body);
    const foot = h("footer", {});
    if (ext) {
      foot.append(h("span", { text: m.fmt(ext[0]) }),
        h("span", { class: "legend", text: overall && isNum(overall.value)
          ? `\u2506 all ${m.fmt(overall.value)} \u00b7 bar = 95% CI` : "bar = 95% CI" }),
        h("span", { text: m.fmt(ext[1]) }));
    }
    if (rows.length > shown.length) foot.append(h("span", { class: "more", text: `+${rows.length - shown.length} more` }));
    card.append(foot);
    return card;
  }

  // --- alerts ------------------------------------------------------------------------------
  function alertCard(a, nowMs) {
    const m = info(a.metric);
    const sev = String(a.severity || "warning");
    const el = h("div", { class: "alert sev-" + sev.replace(/[^a-z0-9_-]/gi, "") });
    const started = a.started_at ? new Date(a.started_at).getTime() : NaN;
    el.append(h("div", { class: "alert-head" },
      h("span", { class: "sev", text: sev }),
      h("span", { class: "rule", text: a.rule || "alert" }),
      h("span", { class: "since", text: isNaN(started) ? "" : `since ${clock(a.started_at)} \u00b7 ${ago(nowMs - started)}` })));
    const where = [m.label, a.window, a.dimension && a.dimension !== "all" ? `${a.dimension} = ${a.member}` : "overall"]
      .filter(Boolean).join(" \u00b7 ");
    el.append(h("div", { class: "alert-where", text: where }));
    if (a.summary) el.append(h("div", { class: "alert-summary", text: a.summary }));
    const cur = a.current || {}, base = a.baseline || {};
    if (isNum(cur.value) || isNum(base.value)) {
      const parts = [];
      if (isNum(cur.value)) parts.push(`now ${m.fmt(cur.value)}` + (isNum(cur.n) ? ` (n ${num(cur.n)})` : ""));
      if (isNum(base.value)) parts.push(`baseline ${m.fmt(base.value)}` + (base.window ? ` (${base.window})` : ""));
      el.append(h("div", { class: "alert-values", text: parts.join("  vs  ") }));
    }
    return el;
  }

  // --- render ------------------------------------------------------------------------------
  function toggles(container, values, current, onPick) {
    container.replaceChildren(...values.map((v) => h("button", {
      class: v === current ? "on" : "", text: v, type: "button", onclick: () => onPick(v) })));
  }
  function setHash() {
    history.replaceState(null, "", `#window=${encodeURIComponent(state.window)}&dimension=${encodeURIComponent(state.dimension)}`);
  }
  function pickWindow(w) { state.window = w; setHash(); render(); refresh(); }
  function pickDimension(d) { state.dimension = d; setHash(); render(); refresh(); }

  function render() {
    const data = state.data || { scores: [], alerts: [], windows: DEFAULT_WINDOWS, dimensions: [] };
    const windows = data.windows && data.windows.length ? data.windows : DEFAULT_WINDOWS;
    toggles(document.getElementById("windows"), windows, state.window, pickWindow);
    const dims = BREAKDOWNS.filter((d) => d === state.dimension || (data.dimensions || []).includes(d));
    toggles(document.getElementById("dimensions"), dims.length ? dims : ["segment"], state.dimension, pickDimension);

    const scores = (data.scores || []).filter((r) => r && r.window === state.window);
    const overall = {};
    const byMetric = {};
    for (const r of scores) {
      if (r.dimension === "all") overall[r.metric] = r;
      else if (r.dimension === state.dimension) (byMetric[r.metric] = byMetric[r.metric] || []).push(r);
    }
    document.getElementById("tiles").replaceChildren(...TILE_METRICS.map((m) => tile(m, overall[m], data.min_sample)));
    document.getElementById("tables").replaceChildren(
      ...TILE_METRICS.map((m) => table(m, byMetric[m] || [], overall[m], data.min_sample)));

    const nowMs = data.generated_at ? new Date(data.generated_at).getTime() : Date.now();
    const alerts = data.alerts || [];
    document.getElementById("alert-count").textContent = String(alerts.length);
    document.getElementById("alert-count").className = "count" + (alerts.length ? " hot" : "");
    const pill = document.getElementById("firing-pill");
    pill.hidden = !alerts.length;
    pill.textContent = alerts.length === 1 ? "1 alert firing" : `${alerts.length} alerts firing`;
    document.getElementById("alert-list").replaceChildren(...(alerts.length
      ? alerts.map((a) => alertCard(a, nowMs))
      : [h("div", { class: "all-clear" }, h("span", { class: "check", text: "\u2713" }), h("span", { text: "No firing alerts" }))]));

    const asOf = document.getElementById("as-of");
    if (data.as_of) {
      const lag = nowMs - new Date(data.as_of).getTime();
      asOf.replaceChildren(h("span", { class: "muted", text: "as of " }),
        h("strong", { text: data.as_of.slice(0, 10) + " " + clock(data.as_of) + " UTC" }),
        h("span", { class: "muted", text: isNum(lag) && lag > 5000 ? `  \u00b7  ${ago(lag)} behind` : "  \u00b7  live" }));
    } else {
      asOf.textContent = state.data ? "no scores yet: is the generator running?" : "waiting for scores\u2026";
    }
    const dot = document.getElementById("live-dot");
    const feedOk = state.data && state.data.feed && state.data.feed.connected;
    dot.className = "dot " + (state.failures > 1 ? "down" : feedOk ? "up" : "stale");
    dot.title = state.failures > 1 ? "page cannot reach the worker" : feedOk ? "live" : "worker not connected to cx.scores";
  }

  async function refresh() {
    clearTimeout(state.timer);
    const seq = ++state.seq;
    const url = `/api/scores?window=${encodeURIComponent(state.window)}&dimension=${encodeURIComponent("all," + state.dimension)}`;
    let data = null;
    try {
      const resp = await fetch(url, { cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      data = await resp.json();
    } catch (err) {
      data = null;
    }
    if (seq !== state.seq) return; // a newer request (a window was picked) owns the loop
    if (data) {
      state.data = data;
      state.failures = 0;
      const known = data.windows || [];
      if (known.length && !known.includes(state.window)) {
        state.window = known.includes("1h") ? "1h" : known[0];
        setHash();
        refresh();
        return;
      }
    } else {
      state.failures += 1;
    }
    try {
      render();
    } finally {
      state.timer = setTimeout(refresh, POLL_MS);
    }
  }

  render();
  refresh();
})();
