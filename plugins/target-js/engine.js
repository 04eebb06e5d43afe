// target-js: a target-tracking engine in the style of the Kubernetes HPA, as a WebAssembly
// component built from JavaScript.
//
// Keys: `metric` (the sensor to follow, required), `target` (the metric's value per instance
// that the engine aims for, required, > 0), `tolerance` (0.1: within ±10 % of the target the
// count stays), `min_instances` (1), `max_instances` (none), `scale_down_stabilization_s` (300),
// `scale_up_limit` (4) and `scale_down_limit` (2) instances per `period_s` (15).
//
// desired = ceil(count × metric / target). A scale-down takes the highest count recommended
// within the stabilization window, so a dip does not shrink the pool; the recommendations and
// the recent steps (for the rate limits) are the memo, so they survive restarts and swaps.
// Unhealthy instances are destroyed and replaced at once. A stale or missing reading holds the
// count.

import log from 'log';

const KEYS = {
  metric: '',
  target: 0,
  tolerance: 0.1,
  min_instances: 1,
  max_instances: null,
  scale_down_stabilization_s: 300,
  scale_up_limit: 4,
  scale_down_limit: 2,
  period_s: 15,
};
const WHOLE = ['min_instances', 'max_instances', 'scale_up_limit', 'scale_down_limit'];
// What each key is, for describe (the contract's config-key): kind, doc and bounds.
const SCHEMA = [
  { name: 'metric', kind: 'text', doc: 'the sensor to follow', required: true },
  { name: 'target', kind: 'number', doc: "the metric's value per instance to aim for (> 0)", required: true, min: 0 },
  { name: 'tolerance', kind: 'number', doc: 'within this fraction of the target the count stays', min: 0 },
  { name: 'min_instances', kind: 'integer', doc: 'the fewest instances kept', min: 0 },
  {
    name: 'max_instances', kind: 'integer', min: 0, nullable: true,
    doc: "the most instances kept (at least min_instances); null: no bound but the domain's",
  },
  {
    name: 'scale_down_stabilization_s', kind: 'number', min: 0,
    doc: 'a scale-down takes the highest count recommended within this many seconds',
  },
  { name: 'scale_up_limit', kind: 'integer', doc: 'the most instances added per period_s', min: 0 },
  { name: 'scale_down_limit', kind: 'integer', doc: 'the most instances removed per period_s', min: 0 },
  { name: 'period_s', kind: 'number', doc: 'the period of the scale limits, in seconds', min: 0 },
];
const COUNTING = ['requesting', 'requested', 'error-retrying', 'pending', 'started', 'running', 'running-failed'];
const ENDED = ['terminated', 'failed', 'rejected'];

let config = null;
let instances = new Map();
let readings = new Map();
let memo = { recs: [], steps: [] };

function number(key, value, whole) {
  let n = value;
  if (typeof value === 'string' && value.trim() !== '') n = Number(value.trim());
  if (typeof n !== 'number' || !Number.isFinite(n)) {
    throw `${key} must be a number, got ${JSON.stringify(value)}`;
  }
  if (whole && (n < 0 || !Number.isInteger(n))) {
    throw `${key} must be a whole number >= 0, got ${JSON.stringify(value)}`;
  }
  return n;
}

function parseConfig(text, current) {
  let given;
  try {
    given = JSON.parse(text);
  } catch (e) {
    throw `config is not valid JSON: ${e.message}`;
  }
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw 'config must be a JSON object';
  }
  const c = { ...(current || KEYS) };
  for (const [key, value] of Object.entries(given)) {
    if (!(key in KEYS)) throw `unknown key '${key}' (known keys: ${Object.keys(KEYS).join(', ')})`;
    if (key === 'metric') {
      if (typeof value !== 'string' || value === '') {
        throw `metric must be a non-empty string, got ${JSON.stringify(value)}`;
      }
      c.metric = value;
    } else if (key === 'max_instances' && value === null) {
      c.max_instances = null;
    } else {
      c[key] = number(key, value, WHOLE.includes(key));
      if (c[key] < 0) throw `${key} must be >= 0, got ${c[key]}`;
    }
  }
  if (c.metric === '') throw 'metric is required';
  if (!(c.target > 0)) throw 'target is required and must be > 0';
  if (c.max_instances !== null && c.max_instances < c.min_instances) {
    throw 'max_instances must not be below min_instances';
  }
  return c;
}

// Draining instances are leaving: they do not count.
function counts(i) {
  return COUNTING.includes(i.state) && !i.draining;
}

function unhealthy(i) {
  return i.health === 'zombie' ||
    (counts(i) && (i.state === 'running-failed' || !['ok', 'unknown'].includes(i.health)));
}

export function describe() {
  return {
    name: 'target-js',
    version: '1.0.0',
    summary: 'target tracking in the style of the Kubernetes HPA',
    config: SCHEMA.map((k) => ({
      name: k.name,
      kind: k.kind,
      doc: k.doc,
      default: k.required || KEYS[k.name] === null ? undefined : JSON.stringify(KEYS[k.name]),
      required: !!k.required,
      nullable: !!k.nullable,
      min: k.min,
      max: undefined,
      choices: [],
    })),
    moreKeys: false,
  };
}

export function initialize(text) {
  config = parseConfig(text, null);
}

export function reconfigure(text) {
  config = parseConfig(text, config);
}

export function dying() {}

function readMemo(bytes) {
  try {
    const m = JSON.parse(new TextDecoder().decode(bytes));
    return { recs: m.recs || [], steps: m.steps || [] };
  } catch (_) {
    return { recs: [], steps: [] };
  }
}

export function decide(s) {
  if (config === null) throw 'decide called before initialize';
  if (s.full) {
    instances = new Map();
    readings = new Map();
    memo = s.memo ? readMemo(s.memo) : { recs: [], steps: [] };
  }
  for (const i of s.instances) {
    if (ENDED.includes(i.state)) instances.delete(i.handle);
    else instances.set(i.handle, i);
  }
  for (const r of s.sensors || []) readings.set(r.name, r);

  const now = s.now;
  const live = [...instances.values()];
  const destroy = live.filter(unhealthy).map((i) => i.handle);
  const pool = live.filter((i) => counts(i) && !unhealthy(i));
  const count = pool.length;
  const before = JSON.stringify(memo);
  memo.recs = memo.recs.filter(([t]) => now - t <= config.scale_down_stabilization_s);
  memo.steps = memo.steps.filter(([t]) => now - t < config.period_s);

  let desired = count;
  const r = readings.get(config.metric);
  const fresh = r !== undefined && !r.stale;
  if (fresh) {
    const ratio = r.value / config.target;
    let raw;
    if (count === 0) raw = r.value > 0 ? Math.ceil(ratio) : 0;
    else if (Math.abs(ratio - 1) <= config.tolerance) raw = count;
    else raw = Math.ceil(count * ratio);
    const last = memo.recs[memo.recs.length - 1];
    if (last === undefined || last[0] < r.time) memo.recs.push([r.time, raw]);
    // A scale-down takes the highest recommendation of the window.
    desired = raw >= count ? raw : Math.min(count, Math.max(raw, ...memo.recs.map(([, n]) => n)));
    const added = memo.steps.filter(([, d]) => d > 0).reduce((a, [, d]) => a + d, 0);
    const removed = memo.steps.filter(([, d]) => d < 0).reduce((a, [, d]) => a - d, 0);
    if (desired > count) desired = Math.min(desired, count + Math.max(0, config.scale_up_limit - added));
    if (desired < count) desired = Math.max(desired, count - Math.max(0, config.scale_down_limit - removed));
  }
  desired = Math.max(desired, config.min_instances);
  if (config.max_instances !== null) desired = Math.min(desired, config.max_instances);
  if (desired !== count) memo.steps.push([now, desired - count]);

  const launch = Math.max(0, desired - count);
  let trim = [];
  if (count > desired) {
    // Unprotected first (the daemon keeps protected ones while healthy), not yet running
    // first, then the newest.
    const order = [...pool].sort((a, b) =>
      a.protected - b.protected || (a.state === 'running') - (b.state === 'running') ||
      b.stateTime - a.stateTime || (b.handle > a.handle ? 1 : -1));
    trim = order.slice(0, count - desired).map((i) => i.handle);
  }
  if (launch > 0 || trim.length > 0) log('info', `scaling from ${count} to ${desired} instances`);
  const after = JSON.stringify(memo);
  const settling = pool.some((i) => i.state !== 'running');
  let status = 'stable';
  if (launch > 0 || destroy.length > 0 || trim.length > 0 || settling) status = 'pending';
  else if (!fresh) status = 'unknown';
  return {
    launches: launch > 0 ? [{ count: launch, vars: [] }] : [],
    destroy: [...destroy, ...trim],
    nextDecideMs: undefined,
    memo: after === before ? undefined : new TextEncoder().encode(after),
    status,
  };
}
