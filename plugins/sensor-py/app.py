"""sensor-py: the sensor engine as a WebAssembly component (see policy.py for what it does).

It keeps what the daemon's delta snapshots tell it: the live instances with their ids and
vars, the latest reading of each sensor, and the memo.
"""

import policy
import wit_world
from componentize_py_types import Err
from wit_world.imports.types import (
    ConfigKey,
    Decision,
    Description,
    EngineStatus,
    Launch,
    LogLevel,
    ValueKind,
)

VERSION = "1.0.0"

# Instances that ended are dropped from the table.
ENDED = {"TERMINATED", "FAILED", "REJECTED"}


class WitWorld(wit_world.WitWorld):
    config = None
    instances = {}
    details = {}
    readings = {}
    memo = b""

    def describe(self) -> Description:
        keys = [
            ConfigKey(
                name=k["name"],
                kind=ValueKind[k["kind"].upper()],
                doc=k["doc"],
                default=policy.dump(k["default"]) if "default" in k else None,
                required=k.get("required", False),
                nullable=k.get("nullable", False),
                min=float(k["min"]) if "min" in k else None,
                max=float(k["max"]) if "max" in k else None,
                choices=k.get("choices", []),
            )
            for k in policy.SCHEMA
        ]
        return Description(
            name="sensor-py", version=VERSION, summary=policy.SUMMARY, config=keys, more_keys=False
        )

    def initialize(self, config: str) -> None:
        try:
            WitWorld.config, ignored = policy.parse_config(config)
        except ValueError as e:
            raise Err(str(e))
        for key in ignored:
            wit_world.log(LogLevel.WARN, f"{key} is ignored: the domain's deployable decides where workers run")

    def reconfigure(self, config: str) -> None:
        try:
            WitWorld.config, _ = policy.parse_config(config, WitWorld.config)
        except ValueError as e:
            raise Err(str(e))

    def decide(self, snapshot) -> Decision:
        if WitWorld.config is None:
            raise Err("decide called before initialize")
        if snapshot.full:
            WitWorld.instances = {}
            WitWorld.details = {}
            WitWorld.readings = {}
            WitWorld.memo = snapshot.memo or b""
        for d in snapshot.details or []:
            WitWorld.details[d.handle] = (d.id, dict(d.vars))
        for i in snapshot.instances:
            if i.state.name in ENDED:
                WitWorld.instances.pop(i.handle, None)
                WitWorld.details.pop(i.handle, None)
            else:
                WitWorld.instances[i.handle] = Seen(i, WitWorld.details.get(i.handle, ("", {})))
        for r in snapshot.sensors or []:
            WitWorld.readings[r.name] = r
        live = sorted(WitWorld.instances.values(), key=lambda i: i.handle)
        planned, destroy, memo, status = policy.decide(
            WitWorld.config, live, WitWorld.readings, WitWorld.memo, snapshot.now
        )
        if memo is not None:
            before = policy.remembered(WitWorld.memo)[1]
            WitWorld.memo = memo
            after = policy.remembered(memo)[1]
            if before is not None and after != before:
                wit_world.log(LogLevel.INFO, f"scaling from {before} to {after} instances")
        launches = [Launch(count=n, vars=list(vars.items())) for n, vars in planned]
        return Decision(
            launches=launches,
            destroy=destroy,
            next_decide_ms=None,
            memo=memo,
            status=EngineStatus[status],
        )

    def dying(self) -> None:
        pass


class Seen:
    """An instance as policy.py reads it: states and health by name, with its id and vars."""

    def __init__(self, i, details):
        self.handle = i.handle
        self.id, self.vars = details
        self.state = i.state.name
        self.state_time = i.state_time
        self.health = i.health.name
        self.protected = i.protected
        self.draining = i.draining
