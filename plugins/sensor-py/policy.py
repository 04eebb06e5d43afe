"""The sensor engine's decision, in plain Python (no component types), so it reads on its own.

It is the bundled Rust `sensor` engine (plugins/sensor) written again in Python, and decides
alike: both replay the scenarios in plugins/sensor/scenarios. The original Phantom sensor
engine, with its known flaws fixed:
- The metric is the fresh reading of the sensor named `metric` and of every sensor named
  `metric/<anything>` (one per worker, say `cpu/<instance id>`). `sample_function` reduces
  them: average (over the readings there are, not over the instances), max, min, sum or count;
  the original's Average, Maximum, Minimum, Sum and SampleCount are accepted too. With no fresh
  reading the engine holds: no data is not a signal to scale down.
- Above `scale_up_threshold` the count grows by `scale_up_n_vms`; below `scale_down_threshold`
  it shrinks by `scale_down_n_vms`, within `minimum_vms` and `maximum_vms` (none: no bound but
  the domain's). A step needs a reading newer than the last step, and `cooldown_period`
  seconds (default 0) since it. A step the bounds cancel is no step.
- The count it holds and the time of its last step are the memo, so they survive restarts and
  swaps. Unhealthy instances are destroyed and replaced at once, in a cooldown too.
- A scale-down destroys the instances named in `retirable_nodes` first, then those not yet
  running, then the newest.
- With `unique_key` and `unique_values`, each launch gets the first value no live instance has
  as the var `unique_key`; when they run out, it launches without one.
- Numbers may come as JSON numbers or numeric strings; anything else, a negative count or an
  unknown key is refused with the key named.
"""

import json
import math

DEFAULTS = {
    "metric": None,
    "sample_function": "average",
    "cooldown_period": 0.0,
    "scale_up_threshold": None,
    "scale_up_n_vms": 1,
    "scale_down_threshold": None,
    "scale_down_n_vms": 1,
    "minimum_vms": 0,
    "maximum_vms": None,
    "retirable_nodes": [],
    "unique_key": None,
    "unique_values": [],
    "provisioner_vars": {},
}
# The original engine's placement keys: the domain's deployable decides where workers run.
PLACEMENT_KEYS = ("deployable_type", "iaas_site", "iaas_allocation", "sensor_type")
# The largest count a key takes (the contract's counts are u32).
MAX_COUNT = 4294967295

SUMMARY = "steps a pool up or down as a sensor's metric crosses its thresholds"
PLACEMENT_DOC = "ignored, with a warning: the domain's deployable decides where workers run"
COUNT = {"kind": "integer", "min": 0}
# The config keys as describe declares them (see wit/engine.wit's config-key): the same as the
# Rust sensor engine's.
SCHEMA = [
    {"name": "metric", "kind": "text", "doc": "the sensor reading to follow", "required": True},
    {
        "name": "sample_function",
        "kind": "text",
        "doc": "how the metric's readings are reduced to one value",
        "default": "average",
        "choices": ["average", "max", "min", "sum", "count",
                    "Average", "Maximum", "Minimum", "Sum", "SampleCount"],
    },
    {"name": "cooldown_period", "kind": "number", "min": 0, "default": 0,
     "doc": "seconds after a step before the next one"},
    {"name": "scale_up_threshold", "kind": "number", "required": True,
     "doc": "above this value the pool grows"},
    dict(COUNT, name="scale_up_n_vms", doc="instances one step up adds", default=1),
    {"name": "scale_down_threshold", "kind": "number", "required": True,
     "doc": "below this value the pool shrinks (not above scale_up_threshold)"},
    dict(COUNT, name="scale_down_n_vms", doc="instances one step down removes", default=1),
    dict(COUNT, name="minimum_vms", doc="the fewest instances kept", default=0),
    dict(COUNT, name="maximum_vms", nullable=True,
         doc="the most instances kept (at least minimum_vms); null: no bound but the domain's"),
    {"name": "retirable_nodes", "kind": "array", "default": [],
     "doc": "instance ids destroyed first when scaling down"},
    {"name": "unique_key", "kind": "text", "nullable": True,
     "doc": "the var whose value each instance takes from unique_values"},
    {"name": "unique_values", "kind": "array", "default": [],
     "doc": "the values of unique_key, one instance each"},
    {"name": "provisioner_vars", "kind": "object", "default": {},
     "doc": "vars (strings) given to every launch"},
] + [{"name": k, "kind": "any", "doc": PLACEMENT_DOC} for k in PLACEMENT_KEYS]
FUNCTIONS = {
    "average": lambda xs: sum(xs) / len(xs),
    "max": max,
    "min": min,
    "sum": sum,
    "count": lambda xs: float(len(xs)),
}
ORIGINAL_NAMES = {"maximum": "max", "minimum": "min", "samplecount": "count"}

# Instance states and health, by their names in the contract.
COUNTING = {"REQUESTING", "REQUESTED", "ERROR_RETRYING", "PENDING", "STARTED", "RUNNING", "RUNNING_FAILED"}
UP = {"RUNNING", "RUNNING_FAILED"}


def dump(value):
    return json.dumps(value)


def number(key, value):
    """A finite JSON number or numeric string."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{key} must be a number, got {dump(value)}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, got {dump(value)}")
    return float(value)


def whole(key, value):
    """A whole number from 0, as a JSON number or a numeric string of digits."""
    if isinstance(value, str) and value.strip().isdigit():
        n = int(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        n = value
    else:
        n = -1
    if not 0 <= n <= MAX_COUNT:
        raise ValueError(f"{key} must be a whole number from 0 to {MAX_COUNT}, got {dump(value)}")
    return n


def scalar(key, value):
    """A var's text: a string as it is, a number or boolean as JSON writes it."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return dump(value)
    raise ValueError(f"{key} must be a string, number or boolean, got {dump(value)}")


def parse_config(text, current=None):
    """Applies the JSON object `text` on top of `current` (None: the defaults); each key given
    replaces its whole value. The result is checked whole, so a refused change applies nothing.
    Returns the config and the keys given that mean nothing here."""
    try:
        given = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"config is not valid JSON: {e}") from None
    if not isinstance(given, dict):
        raise ValueError("config must be a JSON object")
    config = dict(current if current is not None else DEFAULTS)
    ignored = []
    for key, value in given.items():
        if key in PLACEMENT_KEYS:
            ignored.append(key)
            continue
        if key not in DEFAULTS:
            raise ValueError(f"unknown key '{key}' (known keys: {', '.join(DEFAULTS)})")
        if key in ("metric", "unique_key"):
            if value is None and key == "unique_key":
                pass
            elif not isinstance(value, str) or not value:
                raise ValueError(f"{key} must be a non-empty string, got {dump(value)}")
        elif key == "sample_function":
            name = value.lower() if isinstance(value, str) else None
            name = ORIGINAL_NAMES.get(name, name)
            if name not in FUNCTIONS:
                raise ValueError(
                    "sample_function must be one of average, max, min, sum, count "
                    f"(or Average, Maximum, Minimum, Sum, SampleCount), got {dump(value)}"
                )
            value = name
        elif key == "maximum_vms" and value is None:
            pass
        elif key in ("scale_up_n_vms", "scale_down_n_vms", "minimum_vms", "maximum_vms"):
            value = whole(key, value)
        elif key in ("retirable_nodes", "unique_values"):
            if not isinstance(value, list):
                raise ValueError(f"{key} must be a list, got {dump(value)}")
            value = [scalar(key, v) for v in value]
        elif key == "provisioner_vars":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(f"{key} must be an object of strings, got {dump(value)}")
        else:
            value = number(key, value)
            if key == "cooldown_period" and value < 0:
                raise ValueError(f"cooldown_period must be >= 0, got {dump(given[key])}")
        config[key] = value
    for key in ("metric", "scale_up_threshold", "scale_down_threshold"):
        if config[key] is None:
            raise ValueError(f"{key} is required")
    if config["scale_down_threshold"] > config["scale_up_threshold"]:
        raise ValueError(
            f"scale_down_threshold ({config['scale_down_threshold']}) must not be above "
            f"scale_up_threshold ({config['scale_up_threshold']})"
        )
    if config["maximum_vms"] is not None and config["maximum_vms"] < config["minimum_vms"]:
        raise ValueError(
            f"minimum_vms ({config['minimum_vms']}) must not be above maximum_vms ({config['maximum_vms']})"
        )
    if config["unique_values"] and config["unique_key"] is None:
        raise ValueError("unique_values needs unique_key, the var that carries the value")
    return config, ignored


def counts(i):
    """Whether an instance counts toward the pool: draining ones are leaving."""
    return i.state in COUNTING and not i.draining


def unhealthy(i):
    return i.health == "ZOMBIE" or (
        counts(i) and (i.state == "RUNNING_FAILED" or i.health not in ("OK", "UNKNOWN"))
    )


def sample(config, readings):
    """The metric over the fresh readings of its sensors, and the newest of their times."""
    name = config["metric"]
    fresh = [r for r in readings.values() if not r.stale and (r.name == name or r.name.startswith(name + "/"))]
    if not fresh:
        return None
    return FUNCTIONS[config["sample_function"]]([r.value for r in fresh]), max(r.time for r in fresh)


def remembered(memo):
    """The memo: the time of the last step and the count the engine holds."""
    try:
        m = json.loads(memo)
        return m.get("last_step"), m.get("desired")
    except (ValueError, TypeError, AttributeError):
        return None, None


def encode(step, desired):
    """The memo's text, as the Rust build writes it."""
    return json.dumps({"desired": desired, "last_step": step}, separators=(",", ":"), sort_keys=True).encode()


def launches(config, pool, n):
    """`n` launches as (count, vars) pairs: with unique_key, each takes the first unused value."""
    out = []
    key = config["unique_key"]
    base = dict(config["provisioner_vars"])
    if key is not None:
        in_use = {i.vars.get(key) for i in pool}
        for value in config["unique_values"]:
            if n == 0:
                break
            if value in in_use:
                continue
            in_use.add(value)
            out.append((1, {**{k: v for k, v in base.items() if k != key}, key: value}))
            n -= 1
    if n > 0:
        out.append((n, base))
    return out


def decide(config, instances, readings, memo, now):
    """Returns (launches as (count, vars) pairs, handles to destroy, new memo or None, status)."""
    destroy = [i.handle for i in instances if unhealthy(i)]
    pool = [i for i in instances if counts(i) and not unhealthy(i)]
    count = len(pool)
    low, high = config["minimum_vms"], config["maximum_vms"]

    def bound(n):
        return max(low, n if high is None else min(high, n))

    step, desired = remembered(memo)
    desired = bound(count if desired is None else desired)
    sampled = sample(config, readings)
    if sampled is not None:
        value, newest = sampled
        cooling = step is not None and now - step < config["cooldown_period"]
        news = step is None or newest > step
        if not cooling and news:
            target = desired
            if value > config["scale_up_threshold"]:
                target = bound(desired + config["scale_up_n_vms"])
            elif value < config["scale_down_threshold"]:
                target = bound(max(0, desired - config["scale_down_n_vms"]))
            # A step that the bounds cancel is no step: the cooldown does not restart.
            if target != desired:
                step, desired = float(now), target
    planned = launches(config, pool, max(0, desired - count))
    trim = []
    if count > desired:
        retirable = set(config["retirable_nodes"])
        # Protected ones last: the daemon keeps them while they are healthy.
        pool.sort(
            key=lambda i: (i.protected, i.id not in retirable, i.state in UP, -i.state_time, -i.handle)
        )
        trim = [i.handle for i in pool[: count - desired]]
    new_memo = encode(step, desired)
    if new_memo == memo:
        new_memo = None
    settling = any(i.state not in UP for i in pool)
    if planned or destroy or trim or settling:
        status = "PENDING"
    elif sampled is None:
        status = "UNKNOWN"
    else:
        status = "STABLE"
    return planned, destroy + trim, new_memo, status
