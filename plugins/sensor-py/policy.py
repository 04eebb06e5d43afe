"""The sensor engine's decision, in plain Python (no component types), so it reads on its own.

The original Phantom sensor engine, with its known flaws fixed:
- The metric is the reading of the sensor named `metric`, and of every sensor named
  `metric/<anything>` (e.g. one per worker: `cpu/w1`, `cpu/w2`). `sample_function` reduces the
  fresh ones: average (over the readings there are, not over the instances), max or min. With no
  fresh reading the engine holds: no data is not a signal to scale down.
- Above `scale_up_threshold` it adds `scale_up_n_vms`; below `scale_down_threshold` it removes
  `scale_down_n_vms`, newest (and not yet running) first. The count stays within `minimum_vms`
  and `maximum_vms` (none: no bound but the domain's).
- After a scaling step it waits `cooldown_period` seconds before the next one. A step that the
  bounds cancel is no step and does not restart the cooldown. The time of the last step is in
  the memo, so the cooldown survives restarts and swaps.
- The engine holds the count it last scaled to (kept in the memo with the time of that step):
  unhealthy instances are destroyed and replaced at once, in cooldown too, and the count never
  goes below `minimum_vms`.
- Numbers may come as JSON numbers or numeric strings; anything else, a negative count or an
  unknown key is refused with the key named.
"""

import json
import math

KEYS = {
    "metric": "",
    "sample_function": "average",
    "cooldown_period": 60.0,
    "scale_up_threshold": None,
    "scale_up_n_vms": 1,
    "scale_down_threshold": None,
    "scale_down_n_vms": 1,
    "minimum_vms": 0,
    "maximum_vms": None,
}
FUNCTIONS = {
    "average": lambda xs: sum(xs) / len(xs),
    "max": max,
    "min": min,
}

# Instance states and health, by their names in the contract.
TERMINATING = "TERMINATING"
COUNTING = {"REQUESTING", "REQUESTED", "ERROR_RETRYING", "PENDING", "STARTED", "RUNNING", "RUNNING_FAILED"}
RUNNING = "RUNNING"


def number(key, value, whole=False):
    """A JSON number or a numeric string; whole numbers must be >= 0."""
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a number, got {json.dumps(value)}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{key} must be a number, got {json.dumps(value)}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number, got {json.dumps(value)}")
    if whole:
        if value < 0 or value != int(value):
            raise ValueError(f"{key} must be a whole number >= 0, got {json.dumps(value)}")
        return int(value)
    return float(value)


def parse_config(text, current=None):
    """Applies the JSON object `text` on top of `current` (None: the defaults) and checks the
    result whole, so that a refused change applies nothing."""
    try:
        given = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"config is not valid JSON: {e}") from None
    if not isinstance(given, dict):
        raise ValueError("config must be a JSON object")
    config = dict(current if current is not None else KEYS)
    for key, value in given.items():
        if key not in KEYS:
            raise ValueError(f"unknown key '{key}' (known keys: {', '.join(KEYS)})")
        if key == "metric":
            if not isinstance(value, str) or not value:
                raise ValueError(f"metric must be a non-empty string, got {json.dumps(value)}")
        elif key == "sample_function":
            if not isinstance(value, str) or value.lower() not in FUNCTIONS:
                raise ValueError(f"sample_function must be one of average, max, min, got {json.dumps(value)}")
            value = value.lower()
        elif value is None and key == "maximum_vms":
            pass
        elif key in ("scale_up_n_vms", "scale_down_n_vms", "minimum_vms", "maximum_vms"):
            value = number(key, value, whole=True)
        else:
            value = number(key, value)
            if key == "cooldown_period" and value < 0:
                raise ValueError(f"cooldown_period must be >= 0, got {value}")
        config[key] = value
    for key in ("metric", "scale_up_threshold", "scale_down_threshold"):
        if config[key] in ("", None):
            raise ValueError(f"{key} is required")
    if config["scale_down_threshold"] > config["scale_up_threshold"]:
        raise ValueError("scale_down_threshold must not be above scale_up_threshold")
    if config["maximum_vms"] is not None and config["maximum_vms"] < config["minimum_vms"]:
        raise ValueError("maximum_vms must not be below minimum_vms")
    return config


def unhealthy(i):
    return i.health == "ZOMBIE" or (
        i.state in COUNTING and (i.state == "RUNNING_FAILED" or i.health not in ("OK", "UNKNOWN"))
    )


def sample(config, readings):
    """The metric: the sample function over the fresh readings of the metric's sensors."""
    name = config["metric"]
    values = [
        r.value
        for r in readings.values()
        if not r.stale and (r.name == name or r.name.startswith(name + "/"))
    ]
    if not values:
        return None
    return FUNCTIONS[config["sample_function"]](values)


def remembered(memo):
    """The memo: the time of the last scaling step and the count the engine holds."""
    try:
        m = json.loads(memo)
        return m.get("last_step"), m.get("desired")
    except (ValueError, TypeError, AttributeError):
        return None, None


def decide(config, instances, readings, memo, now):
    """Returns (launch count, handles to destroy, new memo or None, status name)."""
    destroy = [i.handle for i in instances if unhealthy(i)]
    pool = [i for i in instances if i.state in COUNTING and not unhealthy(i)]
    count = len(pool)
    low, high = config["minimum_vms"], config["maximum_vms"]

    def bound(n):
        return max(low, n if high is None else min(high, n))

    step, desired = remembered(memo)
    desired = bound(count if desired is None else desired)
    value = sample(config, readings)
    cooling = step is not None and now - step < config["cooldown_period"]
    if value is not None and not cooling:
        delta = 0
        if value > config["scale_up_threshold"]:
            delta = config["scale_up_n_vms"]
        elif value < config["scale_down_threshold"]:
            delta = -config["scale_down_n_vms"]
        target = bound(desired + delta)
        # A step that the bounds cancel is no step: the cooldown does not restart.
        if target != desired:
            step, desired = now, target
    launch, trim = max(0, desired - count), []
    if count > desired:
        # Not yet running first, then the newest.
        pool.sort(key=lambda i: (i.state == RUNNING, -i.state_time, -i.handle))
        trim = [i.handle for i in pool[: count - desired]]
    new_memo = json.dumps({"last_step": step, "desired": desired}).encode()
    if new_memo == memo:
        new_memo = None
    settling = any(i.state != RUNNING for i in pool)
    if launch or destroy or trim or settling:
        status = "PENDING"
    elif value is None:
        status = "UNKNOWN"
    else:
        status = "STABLE"
    return launch, destroy + trim, new_memo, status
