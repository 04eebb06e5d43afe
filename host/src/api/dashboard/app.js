// The epu dashboard: it logs in with the API token and then polls the same API as the CLI,
// once a second. No framework: the page, this script and the style are embedded in epu.
"use strict";

const GROUP_COLORS = ["#9ec5fe", "#ffc107", "#198754", "#dc3545", "#6c757d"];
const READING_COLORS = ["#0d6efd", "#6f42c1", "#fd7e14"];
const MARK_COLORS = { "failure": "#dc3545", "reconfigure": "#20c997", "engine swap": "#d63384", "quarantine": "#212529" };
const $ = (id) => document.getElementById(id);
let selected = null;
let eventsAfter = 0;
let recentEvents = [];
let historyOf = null;

function token() {
  return sessionStorage.getItem("epu-token");
}

// One API call; a non-2xx answer throws its `error` text. A 401 sends the user back to login.
async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let value;
  try { value = JSON.parse(text); } catch (_) { value = text; }
  if (resp.status === 401) {
    showLogin("the token was refused");
  }
  if (!resp.ok) {
    throw new Error((value && value.error) || text || resp.statusText);
  }
  return value;
}

function showLogin(why) {
  sessionStorage.removeItem("epu-token");
  $("app").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = why || "";
}

function showApp() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = "logged in";
}

// KEY=VALUE pairs, separated by commas or spaces; a value that is JSON is taken as JSON,
// anything else as a string (as `epu reconfigure` does).
function parseSettings(text) {
  const config = {};
  for (const item of text.split(/[\s,]+/).filter(Boolean)) {
    const at = item.indexOf("=");
    if (at <= 0) throw new Error(`'${item}' is not KEY=VALUE`);
    const raw = item.slice(at + 1);
    let value;
    try { value = JSON.parse(raw); } catch (_) { value = raw; }
    config[item.slice(0, at)] = value;
  }
  if (Object.keys(config).length === 0) throw new Error("give at least one KEY=VALUE");
  return config;
}

// "0.4s", "45s", "3m12s", "2h05m", "3d04h", as `epu status` says them.
function age(seconds) {
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)}s`;
  const r = Math.round(s);
  const two = (n) => String(n).padStart(2, "0");
  if (r < 60) return `${r}s`;
  if (r < 3600) return `${Math.floor(r / 60)}m${two(r % 60)}s`;
  if (r < 86400) return `${Math.floor(r / 3600)}h${two(Math.floor((r % 3600) / 60))}m`;
  return `${Math.floor(r / 86400)}d${two(Math.floor((r % 86400) / 3600))}h`;
}

// A UTC clock time; with tenths of a second when `fine`.
function clock(t, fine) {
  return new Date(t * 1000).toISOString().slice(11, fine ? 21 : 19);
}

// A fault's message in a line: a trap's cause is its last line, after the backtrace.
function faultLine(message) {
  const lines = String(message || "").split("\n").map((l) => l.trim()).filter(Boolean);
  return (lines.length > 1 && lines[0].startsWith("error while executing") ? lines[lines.length - 1] : lines[0]) || "";
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : (noun.endsWith("ch") ? "es" : "s")}`;
}

function cell(tr, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  tr.appendChild(td);
  return td;
}

// Why a domain is not where its engine wants it, a sentence each: quarantine, crash loop,
// what the budget or protections hold back, a stopped refresh, max_instances, a dry run.
function reasons(d) {
  const out = [];
  const c = d.controller;
  if (c.quarantined) {
    out.push(`Quarantined: the engine faulted ${c.faults_in_window} times in its last calls` +
      (c.last_fault ? ` (last: ${faultLine(c.last_fault)})` : "") +
      `; the ${d.limits.fallback} fallback runs until it is resumed or swapped.`);
  } else if (c.last_fault) {
    out.push(`The last decide failed: ${faultLine(c.last_fault)}`);
  }
  if (c.backoff_ms > 0) {
    out.push(`Crash loop: new workers fail as they start` +
      (c.last_failure ? ` (${c.last_failure})` : "") +
      `; a change waits ${c.backoff_ms} ms before it triggers a decide.`);
  }
  if (c.held) {
    for (const [id, why] of c.held.destroys || []) {
      const words = { "protected": "it is protected",
        "budget": "the budget's max_destroys is spent for the window",
        "min-healthy": "it would take the healthy instances below min_healthy_percent" }[why] || why;
      out.push(`Held back: the destroy of ${id}, because ${words}.`);
    }
    if (c.held.launches > 0) {
      out.push(`Held back: ${plural(c.held.launches, "launch")}, because the budget's max_launches is spent for the window.`);
    }
  }
  if (d.refresh && d.refresh.failed) out.push(`Refresh stopped: ${d.refresh.failed}`);
  if (c.desired != null && c.desired >= d.max_instances) {
    out.push(`At its limit: the engine wants ${c.desired}, and max_instances is ${d.max_instances}.`);
  }
  if (d.dry_run) out.push("Dry run: the engine's decisions are recorded, never carried out.");
  return out;
}

function renderRuns(runs) {
  $("runs-section").hidden = runs.length === 0;
  const body = $("runs").querySelector("tbody");
  body.innerHTML = "";
  for (const r of runs) {
    const tr = document.createElement("tr");
    tr.dataset.run = r.name;
    cell(tr, r.name);
    cell(tr, r.state + (r.error ? `: ${r.error}` : ""), r.state === "failed" ? "error" : "");
    const services = (r.services || []).map((s) => `${s.name} (level ${s.level}, ${s.state}${s.pid ? `, pid ${s.pid}` : ""})`);
    cell(tr, services.join("; ") || "-");
    cell(tr, (r.domains || []).join(", ") || "-");
    body.appendChild(tr);
  }
}

function renderDomains(domains) {
  const body = $("domains").querySelector("tbody");
  body.innerHTML = "";
  for (const d of domains) {
    const live = d.instances.filter((i) => !["terminating"].includes(i.state));
    const running = d.instances.filter((i) => i.state === "running").length;
    const tr = document.createElement("tr");
    tr.dataset.domain = d.name;
    tr.dataset.actual = String(live.length);
    tr.dataset.running = String(running);
    if (d.name === selected) tr.className = "selected";
    const why = reasons(d);
    const cells = [
      d.name + (d.dry_run ? " (dry run)" : "") + (d.owner ? ` @ ${d.owner}` : ""),
      `${d.engine} ${d.engine_sha.slice(0, 12)}`,
      d.controller.quarantined ? "QUARANTINED" : (d.controller.backoff_ms > 0 ? "CRASH LOOP" : (d.controller.engine_status || "-")),
      String(d.controller.desired ?? "-"),
      `${live.length} (${running} running)`,
      Object.entries(d.config).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" "),
      why.length ? why[0] : "",
    ];
    for (const [i, text] of cells.entries()) {
      const td = cell(tr, text);
      if (i === 0 && d.dry_run) td.className = "dry";
      if (i === 6 && why.length) td.className = "why";
    }
    tr.addEventListener("click", () => select(d.name));
    body.appendChild(tr);
  }
}

function renderDetail(d) {
  const list = $("reasons");
  list.innerHTML = "";
  for (const r of reasons(d)) {
    const li = document.createElement("li");
    li.textContent = r;
    list.appendChild(li);
  }
  $("resume").hidden = !d.controller.quarantined;
  renderConfigForm(d);
  $("engine-line").textContent = `${d.engine} (sha256 ${d.engine_sha.slice(0, 16)}…), config version ` +
    `${d.config_version}: ${JSON.stringify(d.config)}; ${plural(d.controller.decides, "decide")}` +
    (d.controller.last_decide ? `, the last ${age(Date.now() / 1000 - d.controller.last_decide)} ago` : "");
  const body = $("instances").querySelector("tbody");
  body.innerHTML = "";
  const now = Date.now() / 1000;
  for (const i of d.instances) {
    const tr = document.createElement("tr");
    tr.dataset.instance = i.id;
    tr.dataset.state = i.state;
    cell(tr, i.id);
    const state = i.drain_until ? `${i.state} (draining, ${Math.max(0, Math.round(i.drain_until - now))} s left)` : i.state;
    cell(tr, state);
    cell(tr, i.health, ["missing", "zombie", "failed"].includes(i.health) ? "error" : "");
    cell(tr, age(now - i.created));
    cell(tr, i.pid ? `pid ${i.pid}` : (i.cloud_id || "-"));
    cell(tr, i.protected ? "yes" : "no");
    const td = cell(tr, "");
    if (i.state !== "terminating") {
      const protect = document.createElement("button");
      protect.textContent = i.protected ? "Unprotect" : "Protect";
      protect.className = "protect";
      protect.addEventListener("click", () => act(protect.textContent.toLowerCase(), () =>
        api("POST", `/v1/domains/${encodeURIComponent(d.name)}/instances/${i.id}/protect`, { protected: !i.protected })));
      const destroy = document.createElement("button");
      destroy.textContent = "Destroy";
      destroy.className = "destroy";
      destroy.addEventListener("click", () => {
        if (confirm(`Destroy ${i.id}? The engine decides again at once.`)) {
          act("destroy", () => api("POST", `/v1/domains/${encodeURIComponent(d.name)}/instances/${i.id}/destroy`, {}));
        }
      });
      td.append(protect, destroy);
    }
    body.appendChild(tr);
  }
}

async function renderHistory(name) {
  const v = await api("GET", `/v1/domains/${encodeURIComponent(name)}/engine/history`);
  const body = $("history").querySelector("tbody");
  body.innerHTML = "";
  for (const e of v.versions.slice().reverse()) {
    const tr = document.createElement("tr");
    cell(tr, String(e.version));
    cell(tr, e.name);
    cell(tr, new Date(e.time * 1000).toISOString().replace("T", " ").slice(0, 19));
    cell(tr, e.sha.slice(0, 16) + "…");
    cell(tr, e.config_version == null ? "-" : String(e.config_version));
    body.appendChild(tr);
  }
  historyOf = `${name}:${v.versions.length}`;
}

function select(name) {
  if (name !== selected) {
    selected = name;
    eventsAfter = 0;
    recentEvents = [];
    historyOf = null;
    $("action-error").textContent = "";
    $("action-ok").textContent = "";
  }
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  refresh();
}

// Instances stacked by state over time with the engine's target (dashed) and marked events,
// sensor readings on a right-hand scale; the time axis reads UTC clock time.
function drawChart(series) {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  const left = 40, right = series.readings.length ? 60 : 20, topPad = 14, bottom = 34;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px sans-serif";
  const counts = series.counts;
  const targets = series.targets || [];
  // From the first thing there is to draw (at most the hour asked for), to now.
  const firsts = [counts[0], targets[0], (series.marks || [])[0], series.readings[0] && [series.readings[0][1]]]
    .filter(Boolean).map((p) => p[0]);
  const start = Math.max(series.since, firsts.length ? Math.min(...firsts) : series.now - 60);
  const span = Math.max(series.now - start, 1);
  const x = (t) => left + ((Math.max(t, start) - start) / span) * (w - left - right);
  const top = Math.max(1, ...counts.map(([, c]) => c.reduce((a, b) => a + b, 0)), ...targets.map((t) => t[1]));
  const scale = top * 1.2;
  const y = (v) => h - bottom - (v / scale) * (h - topPad - bottom);
  // The count axis: whole numbers only.
  ctx.strokeStyle = "#e5e7eb";
  ctx.fillStyle = "#222";
  const step = Math.max(1, Math.ceil(top / 6));
  for (let v = 0; v <= top; v += step) {
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
    ctx.fillText(String(v), 8, y(v) + 4);
  }
  ctx.fillText("instances", 4, topPad - 2);
  // The time axis: clock times.
  for (let k = 0; k <= 5; k++) {
    const t = start + (span * k) / 5;
    const px = x(t);
    ctx.beginPath(); ctx.moveTo(px, h - bottom); ctx.lineTo(px, h - bottom + 4); ctx.stroke();
    ctx.fillText(clock(t, span < 30), Math.min(px - 22, w - 60), h - bottom + 16);
  }
  ctx.fillText("time (UTC)", w / 2 - 25, h - 4);
  for (let g = series.groups.length - 1; g >= 0; g--) {
    ctx.beginPath();
    ctx.moveTo(x(start), y(0));
    let prev = 0;
    for (const [t, c] of counts) {
      const v = c.slice(0, g + 1).reduce((a, b) => a + b, 0);
      ctx.lineTo(x(t), y(prev));
      ctx.lineTo(x(t), y(v));
      prev = v;
    }
    ctx.lineTo(x(series.now), y(prev));
    ctx.lineTo(x(series.now), y(0));
    ctx.closePath();
    ctx.fillStyle = GROUP_COLORS[g];
    ctx.fill();
  }
  if (targets.length) {
    ctx.beginPath();
    ctx.setLineDash([8, 5]);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2;
    targets.forEach(([t, n], k) => {
      if (k === 0) ctx.moveTo(x(t), y(n)); else { ctx.lineTo(x(t), y(targets[k - 1][1])); ctx.lineTo(x(t), y(n)); }
    });
    ctx.lineTo(x(series.now), y(targets[targets.length - 1][1]));
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.lineWidth = 1;
  }
  const markCounts = {};
  for (const [t, kind] of series.marks || []) {
    markCounts[kind] = (markCounts[kind] || 0) + 1;
    ctx.strokeStyle = ctx.fillStyle = MARK_COLORS[kind] || "#000";
    ctx.beginPath(); ctx.moveTo(x(t), y(0)); ctx.lineTo(x(t), topPad + 6); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(x(t) - 5, topPad); ctx.lineTo(x(t) + 5, topPad); ctx.lineTo(x(t), topPad + 8); ctx.closePath(); ctx.fill();
  }
  const names = [...new Set(series.readings.map((r) => r[0]))];
  const maxReading = Math.max(1, ...series.readings.map((r) => r[2])) * 1.2;
  const ry = (v) => h - bottom - (v / maxReading) * (h - topPad - bottom);
  names.forEach((name, i) => {
    ctx.beginPath();
    ctx.strokeStyle = READING_COLORS[i % READING_COLORS.length];
    ctx.lineWidth = 2;
    series.readings.filter((r) => r[0] === name).forEach(([, t, v], k) => {
      if (k === 0) ctx.moveTo(x(t), ry(v)); else ctx.lineTo(x(t), ry(v));
    });
    ctx.stroke();
    ctx.lineWidth = 1;
  });
  if (names.length) {
    ctx.fillStyle = "#222";
    for (let k = 0; k <= 4; k++) {
      const v = (maxReading / 1.2) * k / 4;
      ctx.fillText(Number(v.toPrecision(3)).toString(), w - right + 6, ry(v) + 4);
    }
    ctx.save(); ctx.translate(w - 6, topPad + 40); ctx.rotate(Math.PI / 2); ctx.fillText(names.join(", "), 0, 0); ctx.restore();
  }
  const last = counts.length ? counts[counts.length - 1][1] : [0, 0, 0, 0, 0];
  canvas.dataset.latest = JSON.stringify(Object.fromEntries(series.groups.map((g, i) => [g, last[i]])));
  canvas.dataset.target = targets.length ? String(targets[targets.length - 1][1]) : "";
  canvas.dataset.marks = JSON.stringify(markCounts);
  const swatch = (color, text, dashed) => `<span><i class="${dashed ? "dashed" : ""}" style="background:${color}"></i>${text}</span>`;
  $("legend").innerHTML = series.groups.map((g, i) => swatch(GROUP_COLORS[i], `${g} ${last[i]}`))
    .concat(targets.length ? [swatch("#000", `target ${targets[targets.length - 1][1]}`, true)] : [])
    .concat(Object.entries(markCounts).map(([k, n]) => swatch(MARK_COLORS[k] || "#000", `${k} (${n})`)))
    .concat(names.map((n, i) => swatch(READING_COLORS[i % READING_COLORS.length], `${n} (right scale)`)))
    .join("");
}

// An event as a sentence.
function sentence(e) {
  const d = e.detail || {};
  const who = e.instance ? `${e.instance} ` : "";
  switch (e.kind) {
    case "launch-recorded": return `${who}was launched`;
    case "state": return `${who}is ${d.to}` + (d.error ? `: ${d.error}` : "");
    case "health": return `${who}health is ${d.to || d.health}`;
    case "decision": {
      const parts = [];
      if ((d.launch || []).length) parts.push(`launch ${plural(d.launch.length, "instance")}`);
      if ((d.destroy || []).length) parts.push(`destroy ${d.destroy.join(", ")}`);
      const by = d.by === "fallback" ? "The fallback" : "The engine";
      return `${by} decided to ${parts.join(" and ") || "change nothing"}` +
        (d.dry_run ? " (dry run)" : "") + (d.status ? `; its status is ${d.status}` : "") +
        (d.target != null ? `; target ${d.target}` : "");
    }
    case "reconfigured": return `The config changed to version ${d.version}` + (d.change ? `: ${JSON.stringify(d.change)}` : "");
    case "reconfigure-rejected": return `A reconfigure was refused: ${d.error || JSON.stringify(d)}`;
    case "engine-swapped": return `The engine was swapped to ${d.engine || d.name || "a new engine"}`;
    case "swap-rejected": return `A swap to ${d.engine} was refused: ${d.error}`;
    case "quarantined": return "The engine was quarantined: the fallback runs";
    case "quarantine-lifted": return "The quarantine was lifted";
    case "engine-fault": return `The engine faulted (${d.kind}): ${faultLine(d.message || d.error)}`;
    case "protected": return `${who}was protected by ${d.by || "request"}`;
    case "unprotected": return `${who}was unprotected by ${d.by || "request"}`;
    case "engine-log": return `The engine logged (${d.level}): ${d.message}`;
    case "destroy-held": return `The destroy of ${d.instance} was held back (${d.reason})`;
    case "launch-held": return `${plural(d.count, "launch")} held back (${d.reason})`;
    case "destroy-requested": return `${who}was destroyed by ${d.by || "request"}`;
    case "draining": return `${who}drains`;
    case "drained": return `${who}says it is drained`;
    case "drain-ended": return `${who}drain ended (${d.reason})`;
    case "drain-cancelled": return `${who}returned to service instead of a launch`;
    case "provisioning-error": return `Provisioning failed: ${d.error}`;
    default: return `${e.kind}` + (e.instance ? ` of ${e.instance}` : "");
  }
}

function renderEvents() {
  const body = $("events").querySelector("tbody");
  body.innerHTML = "";
  for (const e of recentEvents.slice().reverse()) {
    const tr = document.createElement("tr");
    tr.dataset.kind = e.kind;
    cell(tr, new Date(e.time * 1000).toISOString().slice(11, 23));
    const td = cell(tr, "");
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = sentence(e);
    const raw = document.createElement("pre");
    raw.textContent = JSON.stringify(e, null, 1);
    details.append(summary, raw);
    td.appendChild(details);
    if (e.kind === "engine-fault" || e.kind === "quarantined") tr.className = "error";
    body.appendChild(tr);
  }
}

let refreshing = false;
async function refresh() {
  if (refreshing || !token()) return;
  refreshing = true;
  try {
    const status = await api("GET", "/v1/status");
    renderDomains(status.domains);
    const runs = await Promise.all((status.runs || []).map(async (r) => {
      try {
        const s = await api("GET", `/v1/runs/${encodeURIComponent(r.name)}`);
        return { ...r, services: s.services };
      } catch (_) {
        return r;
      }
    }));
    renderRuns(runs);
    if (!selected && status.domains.length) select(status.domains[0].name);
    const domain = status.domains.find((d) => d.name === selected);
    if (domain) {
      renderDetail(domain);
      const name = encodeURIComponent(selected);
      drawChart(await api("GET", `/v1/domains/${name}/series?seconds=3600`));
      const ev = await api("GET", `/v1/events?domain=${name}&after=${eventsAfter}&limit=500`);
      for (const e of ev.events) eventsAfter = Math.max(eventsAfter, e.seq);
      recentEvents = recentEvents.concat(ev.events).slice(-40);
      renderEvents();
      if (!historyOf || !historyOf.startsWith(`${selected}:`) || ev.events.some((e) => e.kind === "engine-swapped")) {
        await renderHistory(selected);
      }
    }
    $("updated").textContent = `updated ${clock(Date.now() / 1000)} UTC`;
  } catch (e) {
    console.error(e);
  } finally {
    refreshing = false;
  }
}

async function act(what, call) {
  $("action-error").textContent = "";
  $("action-ok").textContent = "";
  try {
    const v = await call();
    $("action-ok").textContent = `${what}: ${JSON.stringify(v)}`;
    refresh();
  } catch (e) {
    $("action-error").textContent = `${what} refused: ${e.message}`;
  }
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("epu-token", $("token").value.trim());
  try {
    await api("GET", "/v1/status");
    showApp();
    refresh();
  } catch (e) {
    showLogin("login failed: " + e.message);
  }
});

$("logout").addEventListener("click", () => {
  selected = null;
  showLogin("logged out");
});

$("reconfigure-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  act("reconfigure", () =>
    api("POST", `/v1/domains/${encodeURIComponent(selected)}/reconfigure`,
      { config: parseSettings($("reconfigure-input").value) }));
});

$("swap-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  act("swap", () => {
    const body = { engine: $("swap-input").value.trim() };
    if ($("swap-config").value.trim()) body.config = parseSettings($("swap-config").value);
    return api("POST", `/v1/domains/${encodeURIComponent(selected)}/engine`, body);
  });
});

$("rollback").addEventListener("click", () =>
  act("rollback", () => api("POST", `/v1/domains/${encodeURIComponent(selected)}/engine/rollback`, {})));

$("resume").addEventListener("click", () =>
  act("resume", () => api("POST", `/v1/domains/${encodeURIComponent(selected)}/engine/resume`, {})));

setInterval(refresh, 1000);
if (token()) {
  showApp();
  refresh();
}
