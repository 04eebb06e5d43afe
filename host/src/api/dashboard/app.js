// The epu dashboard: it logs in with the API token and then polls the same API as the CLI.
"use strict";

const GROUP_COLORS = ["#9ec5fe", "#ffc107", "#198754", "#dc3545", "#6c757d"];
const READING_COLORS = ["#0d6efd", "#6f42c1", "#fd7e14"];
const $ = (id) => document.getElementById(id);
let selected = null;
let eventsAfter = 0;
let recentEvents = [];

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
  $("login").hidden = false;
  $("login-error").textContent = why || "";
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
    const desired = d.controller.desired ?? "-";
    const cells = [
      d.name + (d.dry_run ? " (dry run)" : "") + (d.owner ? ` @ ${d.owner}` : ""),
      `${d.engine} ${d.engine_sha.slice(0, 12)}`,
      d.controller.quarantined ? "QUARANTINED" : (d.controller.engine_status || "-"),
      String(desired),
      `${live.length} (${running} running)`,
      Object.entries(d.config).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" "),
    ];
    for (const [i, text] of cells.entries()) {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 0 && d.dry_run) td.className = "dry";
      tr.appendChild(td);
    }
    tr.addEventListener("click", () => select(d.name));
    body.appendChild(tr);
  }
}

function select(name) {
  if (name !== selected) {
    selected = name;
    eventsAfter = 0;
    recentEvents = [];
    $("action-error").textContent = "";
    $("action-ok").textContent = "";
  }
  $("detail").hidden = false;
  $("detail-name").textContent = name;
  refresh();
}

// Instances stacked by state over time, with sensor readings on a second scale.
function drawChart(series) {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 30;
  ctx.clearRect(0, 0, w, h);
  const counts = series.counts;
  const start = Math.max(series.since, counts.length ? counts[0][0] : series.now);
  const span = Math.max(series.now - start, 1);
  const x = (t) => pad + ((t - start) / span) * (w - 2 * pad);
  const top = Math.max(1, ...counts.map(([, c]) => c.reduce((a, b) => a + b, 0)));
  const y = (v) => h - pad - (v / (top * 1.15)) * (h - 2 * pad);
  for (let g = series.groups.length - 1; g >= 0; g--) {
    ctx.beginPath();
    ctx.moveTo(x(start), y(0));
    let prev = 0;
    for (const [t, c] of counts) {
      const v = c.slice(0, g + 1).reduce((a, b) => a + b, 0);
      ctx.lineTo(x(Math.max(t, start)), y(prev));
      ctx.lineTo(x(Math.max(t, start)), y(v));
      prev = v;
    }
    ctx.lineTo(x(series.now), y(prev));
    ctx.lineTo(x(series.now), y(0));
    ctx.closePath();
    ctx.fillStyle = GROUP_COLORS[g];
    ctx.fill();
  }
  const names = [...new Set(series.readings.map((r) => r[0]))];
  const maxReading = Math.max(1, ...series.readings.map((r) => r[2]));
  names.forEach((name, i) => {
    ctx.beginPath();
    ctx.strokeStyle = READING_COLORS[i % READING_COLORS.length];
    ctx.lineWidth = 2;
    series.readings.filter((r) => r[0] === name).forEach(([, t, v], k) => {
      const py = h - pad - (v / (maxReading * 1.15)) * (h - 2 * pad);
      if (k === 0) ctx.moveTo(x(t), py); else ctx.lineTo(x(t), py);
    });
    ctx.stroke();
  });
  ctx.fillStyle = "#222";
  ctx.fillText(String(top), 4, y(top) + 4);
  ctx.fillText("0", 4, y(0));
  ctx.fillText(`last ${Math.round(span)} s`, w - pad - 60, h - 8);
  const last = counts.length ? counts[counts.length - 1][1] : [0, 0, 0, 0, 0];
  canvas.dataset.latest = JSON.stringify(Object.fromEntries(series.groups.map((g, i) => [g, last[i]])));
  $("legend").innerHTML = series.groups
    .map((g, i) => `<span><i style="background:${GROUP_COLORS[i]}"></i>${g} ${last[i]}</span>`)
    .concat(names.map((n, i) => `<span><i style="background:${READING_COLORS[i % READING_COLORS.length]}"></i>${n}</span>`))
    .join("");
}

function renderEvents() {
  const body = $("events").querySelector("tbody");
  body.innerHTML = "";
  for (const e of recentEvents.slice().reverse()) {
    const tr = document.createElement("tr");
    const when = new Date(e.time * 1000).toISOString().slice(11, 23);
    for (const text of [when, e.instance || "-", e.kind, JSON.stringify(e.detail)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    if (e.kind === "engine-fault") tr.className = "error";
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
    if (!selected && status.domains.length) select(status.domains[0].name);
    if (selected && status.domains.some((d) => d.name === selected)) {
      const name = encodeURIComponent(selected);
      drawChart(await api("GET", `/v1/domains/${name}/series?seconds=3600`));
      const ev = await api("GET", `/v1/events?domain=${name}&after=${eventsAfter}&limit=500`);
      for (const e of ev.events) eventsAfter = Math.max(eventsAfter, e.seq);
      recentEvents = recentEvents.concat(ev.events).slice(-25);
      renderEvents();
    }
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
    $("login").hidden = true;
    $("app").hidden = false;
    $("who").textContent = "logged in";
    refresh();
  } catch (e) {
    showLogin("login failed: " + e.message);
  }
});

$("reconfigure-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  act("reconfigure", () =>
    api("POST", `/v1/domains/${encodeURIComponent(selected)}/reconfigure`,
      { config: parseSettings($("reconfigure-input").value) }));
});

$("swap-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  act("swap", () =>
    api("POST", `/v1/domains/${encodeURIComponent(selected)}/engine`,
      { engine: $("swap-input").value.trim() }));
});

$("rollback").addEventListener("click", () =>
  act("rollback", () => api("POST", `/v1/domains/${encodeURIComponent(selected)}/engine/rollback`, {})));

setInterval(refresh, 1000);
if (token()) {
  $("login").hidden = true;
  $("app").hidden = false;
  refresh();
}
