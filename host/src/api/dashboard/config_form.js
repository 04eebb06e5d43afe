// The reconfigure form, built from the schema the domain's engine declares (its `describe`,
// from GET /v1/domains/D/engine/describe): an input per key, of the key's kind, with its
// range, choices, default and doc line. Apply sends only the keys whose value changed; the
// daemon checks them against the schema and the engine again.
"use strict";

const configForm = {
  // What the form shows now: "domain engine-sha config-version"; it is rebuilt when that
  // changes, and left alone (with what the user typed) when it does not.
  shownFor: null,
  keys: [],
  config: {},
};

// An input for one key, holding `value` (undefined: not set).
function configInput(key, value) {
  let input;
  const choices = key.kind === "boolean" ? ["true", "false"] : key.choices || [];
  if (choices.length) {
    input = document.createElement("select");
    for (const c of [""].concat(choices)) {
      const o = document.createElement("option");
      o.value = c;
      o.textContent = c === "" ? "(not set)" : c;
      input.appendChild(o);
    }
  } else {
    input = document.createElement("input");
    if (key.kind === "integer" || key.kind === "number") {
      input.type = "number";
      input.step = key.kind === "integer" ? "1" : "any";
      if (key.min != null) input.min = String(key.min);
      if (key.max != null) input.max = String(key.max);
    }
  }
  input.name = key.name;
  input.dataset.kind = key.kind;
  if (key.default !== undefined) input.placeholder = `default ${JSON.stringify(key.default)}`;
  if (value !== undefined) input.value = configText(key, value);
  return input;
}

// A config value as the input shows it: scalars as they are, the rest as JSON.
function configText(key, value) {
  if (value === null) return "";
  if (["object", "array", "any"].includes(key.kind)) return JSON.stringify(value);
  return String(value);
}

// The input's text as the key's value; throws with the key named when it is not one.
function configValue(key, text) {
  if (key.kind === "integer" || key.kind === "number") {
    const n = Number(text);
    if (text.trim() === "" || !Number.isFinite(n)) throw new Error(`${key.name} must be a number`);
    return n;
  }
  if (key.kind === "boolean") return text === "true";
  if (key.kind === "text") return text;
  try {
    return JSON.parse(text);
  } catch (_) {
    if (key.kind === "any") return text;
    throw new Error(`${key.name} must be JSON (${key.kind})`);
  }
}

// Builds the form for the selected domain `d` (a status entry), if it changed.
async function renderConfigForm(d) {
  const shownFor = `${d.name} ${d.engine_sha} ${d.config_version}`;
  if (configForm.shownFor === shownFor) return;
  configForm.shownFor = shownFor;
  const about = $("config-about");
  const body = $("config-keys").querySelector("tbody");
  let v;
  try {
    v = await api("GET", `/v1/domains/${encodeURIComponent(d.name)}/engine/describe`);
  } catch (e) {
    about.textContent = `the engine's schema could not be read: ${e.message}`;
    configForm.shownFor = null;
    return;
  }
  body.innerHTML = "";
  configForm.config = v.config || {};
  const desc = v.description;
  configForm.keys = desc ? desc.config : [];
  $("config-apply").hidden = !desc;
  if (!desc) {
    about.textContent = `${v.engine} is built for epu:engine@${v.contract}, which declares no ` +
      "config schema: change its config with KEY=VALUE below.";
    return;
  }
  about.textContent = `Config of ${desc.name} ${desc.version} (${desc.summary}), from the schema it declares:`;
  for (const key of desc.config) {
    const tr = document.createElement("tr");
    tr.dataset.key = key.name;
    cell(tr, key.name + (key.required ? " *" : ""));
    const td = cell(tr, "");
    td.appendChild(configInput(key, configForm.config[key.name]));
    let terms = key.kind;
    if (key.min != null && key.max != null) terms += ` from ${key.min} to ${key.max}`;
    else if (key.min != null) terms += ` >= ${key.min}`;
    else if (key.max != null) terms += ` <= ${key.max}`;
    if (key.required) terms += ", required";
    cell(tr, `${terms}: ${key.doc}`, "doc");
    body.appendChild(tr);
  }
}

// The keys whose input differs from the domain's config, as a config change.
function configChange() {
  const change = {};
  for (const key of configForm.keys) {
    const input = document.querySelector(`#config-keys [name="${CSS.escape(key.name)}"]`);
    if (!input || input.value === "") continue;
    const value = configValue(key, input.value);
    if (JSON.stringify(value) !== JSON.stringify(configForm.config[key.name])) change[key.name] = value;
  }
  if (Object.keys(change).length === 0) throw new Error("no key was changed");
  return change;
}

$("config-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  act("reconfigure", () =>
    api("POST", `/v1/domains/${encodeURIComponent(selected)}/reconfigure`, { config: configChange() }));
});
