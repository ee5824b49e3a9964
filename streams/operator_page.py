"""The operator page served at ``GET /`` by every worker: plain HTML with a small inline script
that polls this worker's JSON endpoints (``/stats``, ``/readyz``, ``/ops/recent``, and the user
reads). No build step and no external asset: it works on a machine with no network."""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CoursePulse worker</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 16px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
.ok{color:#3fb950}.bad{color:#f85149}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:12px;padding:12px}
section{background:#fff;border-radius:6px;padding:10px 12px;box-shadow:0 1px 2px #0002;overflow:auto}
section.wide{grid-column:1/-1}
h2{font-size:14px;margin:0 0 6px;color:#44506a;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;width:100%}td,th{padding:2px 6px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#8a93a6}code{font-size:12px}
form{display:flex;gap:6px;margin-bottom:8px}input{flex:1;padding:4px 6px}
#dlq td,#dlq th,#alerts td,#alerts th{text-align:left}
#dlq{table-layout:fixed}#dlq td{word-break:break-word}#dlq code{word-break:break-all}
pre{white-space:pre-wrap;font-size:12px;margin:4px 0;background:#f5f6f8;padding:6px;border-radius:4px;max-height:280px;overflow:auto}
</style></head>
<body>
<header><h1>CoursePulse worker</h1>
<span>app <b id="app">?</b></span><span>uptime <b id="uptime">?</b></span>
<span>ready <b id="ready">?</b></span><span class="muted" id="updated"></span></header>
<main>
<section><h2>Throughput by input topic</h2><table id="throughput"></table></section>
<section><h2>Outputs by topic</h2><table id="outputs"></table></section>
<section><h2>Consumer lag by input partition</h2><table id="lag"></table>
<p class="muted">Internal topics (course-cooc, referral-links, ...): <span id="otherlag">&ndash;</span> records behind.</p></section>
<section><h2>Event &rarr; output latency</h2><table id="latency"></table></section>
<section><h2>Model quality</h2><table id="quality"></table></section>
<section><h2>Profiles by segment</h2><table id="segments"></table></section>
<section><h2>Redis serving copy</h2><table id="redis"></table></section>
<section><h2>Dead letters by kind</h2><table id="dlqkinds"></table></section>
<section class="wide"><h2>Latest dead letters</h2><table id="dlq"><colgroup><col style="width:9%"><col style="width:17%">
<col style="width:30%"><col style="width:36%"><col style="width:8%"></colgroup></table></section>
<section class="wide"><h2>Recent churn alerts</h2><table id="alerts"></table></section>
<section class="wide"><h2>User lookup</h2>
<form id="lookup"><input id="uid" placeholder="user id, e.g. u00042" aria-label="user id"><button>Look up</button></form>
<div id="user" class="muted">Profile, recommendations and churn risk of a user.</div></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const fmt = (v, d) => v === null || v === undefined || Number.isNaN(v) ? "&ndash;" :
  (typeof v === "number" ? v.toLocaleString(undefined, {maximumFractionDigits: d === undefined ? 1 : d}) : esc(v));
const obj = (v) => (v && typeof v === "object") ? v : (v === undefined ? {} : {"": v});
let prev = null;
function rows(id, head, body) {
  $(id).innerHTML = "<tr>" + head.map((h, i) => `<th class="${i ? "n" : ""}">${h}</th>`).join("") + "</tr>" +
    (body.length ? body.map((r) => "<tr>" + r.map((c, i) => `<td class="${i ? "n" : ""}">${c}</td>`).join("") + "</tr>").join("")
                 : `<tr><td class="muted" colspan="${head.length}">none yet</td></tr>`);
}
function byLabel(id, s, name, dt, head, group) {
  const m = obj(s[name]), p = obj(prev ? prev[name] : undefined), total = {}, before = {};
  for (const k of Object.keys(m)) {
    const g = group ? group(k) : k;
    total[g] = (total[g] || 0) + m[k]; before[g] = (before[g] || 0) + (p[k] || 0);
  }
  rows(id, head, Object.keys(total).sort().map((k) => [esc(k || "(none)"),
    fmt(prev && dt ? Math.max(0, (total[k] - before[k]) / dt) : null), fmt(total[k], 0)]));
}
const INPUTS = ["views", "purchases", "shares"];
function render(s) {
  const dt = prev ? s.uptime_s - prev.uptime_s : 0;
  $("uptime").textContent = Math.round(s.uptime_s) + " s";
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  byLabel("throughput", s, "events_in", dt, ["topic", "events/s", "total"]);
  byLabel("outputs", s, "records_sent", dt, ["topic", "records/s", "total"],
          (k) => k.endsWith("-changelog") ? "(table changelogs)" : k);
  byLabel("dlqkinds", s, "dlq", dt, ["kind", "per s", "total"]);
  byLabel("segments", s, "profiles_published", dt, ["segment", "per s", "total"]);
  const lag = obj(s.consumer_lag), end = obj(s.consumer_end_offset), wm = obj(s.watermark_ms);
  const isInput = (k) => INPUTS.includes(k.split(":")[0]);
  $("otherlag").textContent = Object.keys(lag).filter((k) => !isInput(k)).reduce((a, k) => a + lag[k], 0).toLocaleString();
  rows("lag", ["topic:partition", "lag", "end offset", "watermark"], Object.keys(lag).filter(isInput).sort((a, b) => {
    const [ta, pa] = a.split(":"), [tb, pb] = b.split(":"); return ta === tb ? pa - pb : (ta < tb ? -1 : 1);
  }).map((k) => {
    const p = k.split(":")[1], w = wm[p];
    return [esc(k), fmt(lag[k], 0), fmt(end[k], 0), w ? new Date(w).toISOString().slice(0, 19).replace("T", " ") : "&ndash;"];
  }));
  const lat = obj(s.event_output_latency_seconds);
  rows("latency", ["topic", "events", "p50 &le; s", "p95 &le; s", "p99 &le; s"],
       Object.keys(lat).sort().map((k) => [esc(k), fmt(lat[k].count, 0), fmt(lat[k].p50, 3), fmt(lat[k].p95, 3), fmt(lat[k].p99, 3)]));
  const mean = (m) => { const v = Object.values(obj(m)); return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null; };
  rows("quality", ["figure", "value"], [
    ["recommendation HR@N (online)", fmt(s.rec_hit_rate, 3)],
    ["discoveries / hits", fmt(s.rec_discoveries, 0) + " / " + fmt(s.rec_discovery_hits, 0)],
    ["click-through (views per list)", fmt(s.rec_click_through, 4)],
    ["conversion (purchases per list)", fmt(s.rec_conversion, 4)],
    ["churn AUC (resolved labels, mean of partitions)", fmt(mean(s.churn_model_auc), 3)],
    ["churn labels learned", fmt(Object.values(obj(s.churn_model_labels)).reduce((a, b) => a + b, 0), 0)],
    ["referral AUC (mean of partitions)", fmt(mean(s.referral_model_auc), 3)],
    ["lists published", fmt(s.recommendations_published, 0)],
  ]);
  rows("redis", ["figure", "value"], [
    ["values owed (redis_behind)", fmt(s.redis_behind, 0)], ["re-sync needed", fmt(s.redis_resync_needed, 0)],
    ["write errors", fmt(s.redis_errors, 0)], ["re-syncs", fmt(s.redis_resyncs, 0)],
  ]);
  prev = s;
}
async function getJSON(path) {
  const r = await fetch(path, {cache: "no-store"});
  return {status: r.status, body: await r.json().catch(() => null)};
}
async function poll() {
  try { render((await getJSON("/stats")).body); } catch (e) { $("updated").textContent = "worker unreachable"; }
  try {
    const r = await getJSON("/readyz");
    $("ready").innerHTML = r.status === 200 ? '<span class="ok">yes</span>' :
      '<span class="bad">no</span> <span class="muted">' + esc(((r.body || {}).reasons || []).join("; ")) + "</span>";
  } catch (e) { $("ready").innerHTML = '<span class="bad">?</span>'; }
}
async function pollRecent() {
  try {
    const r = (await getJSON("/ops/recent?n=15")).body;
    $("app").textContent = r.app_id;
    rows("dlq", ["kind", "source", "error", "original", "at"], r.dlq.map((d) => [
      esc(d.record.error_kind), esc(d.record.source_topic + "[" + d.record.partition + "]@" + d.record.offset),
      esc(d.record.error), "<code>" + esc(d.record.original_text || "(binary)") + "</code>",
      new Date(d.sent_at * 1000).toLocaleTimeString()]));
    rows("alerts", ["user", "risk", "days inactive", "segment", "action", "top factor"], r.alerts.map((a) => [
      `<a href="#" data-user="${esc(a.record.user_id)}">${esc(a.record.user_id)}</a>`, fmt(a.record.risk, 3),
      fmt(a.record.days_inactive, 1), esc(a.record.segment), esc(a.record.action),
      esc(((a.record.factors || [])[0] || {}).name || "")]));
  } catch (e) { /* the next poll tries again */ }
}
async function lookup(uid) {
  const [p, r, c] = await Promise.all(["/profiles/", "/recommendations/", "/churn/"].map((x) => getJSON(x + encodeURIComponent(uid))));
  let html = "";
  if (p.status === 200) {
    const q = p.body;
    html += `<p id="user-profile"><b>${esc(q.user_id)}</b>: segment <b>${esc(q.segment)}</b>, ${fmt(q.views, 0)} views, ` +
      `${fmt(q.purchases, 0)} purchases, ${fmt(q.shares, 0)} shares, spend ${fmt(q.spend, 2)}, ` +
      `churn risk ${fmt((q.extra || {}).churn_risk, 3)}</p>`;
  } else html += `<p id="user-profile" class="muted">no profile for ${esc(uid)}</p>`;
  if (r.status === 200) {
    html += '<table id="user-recs"><tr><th>#</th><th>course</th><th class="n">score</th><th>reason</th></tr>' +
      r.body.items.map((it, i) => `<tr><td>${i + 1}</td><td>${esc(it.course_id)}</td><td class="n">${fmt(it.score, 3)}</td><td>${esc(it.reason)}</td></tr>`).join("") +
      `</table><p class="muted">list ${esc(r.body.rec_id)}</p>`;
  } else html += '<p id="user-recs" class="muted">no recommendations</p>';
  if (c.status === 200) {
    html += `<p>churn risk on the owning worker: <b>${fmt(c.body.risk, 3)}</b> &mdash; ` +
      (c.body.factors || []).map((f) => esc(f.name)).join(", ") + "</p>";
  } else html += `<p class="muted">churn: ${esc((c.body || {}).error || c.status)}</p>`;
  $("user").classList.remove("muted");
  $("user").innerHTML = html;
}
$("lookup").addEventListener("submit", (e) => { e.preventDefault(); const u = $("uid").value.trim(); if (u) lookup(u); });
document.addEventListener("click", (e) => {
  const u = e.target.dataset && e.target.dataset.user;
  if (u) { e.preventDefault(); $("uid").value = u; lookup(u); }
});
poll(); pollRecent();
setInterval(poll, 2000); setInterval(pollRecent, 5000);
</script></body></html>
"""
