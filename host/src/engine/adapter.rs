//! The adapter that runs engines built for the previous contract, `epu:engine@0.3.0`
//! (`host/wit/0.3.0/engine.wit`). 0.4.0 added `protected` and `draining` to the instance
//! record and changed nothing else, so a 0.3.0 engine is given each snapshot without those two
//! fields, and its decisions are taken as they are. It cannot see which instances are
//! protected or draining; the daemon's guarantees (a protected, healthy instance is never
//! destroyed; a launch takes back a draining instance) hold for it all the same.

use super::bindings as current;
use super::sandbox::HostState;
use wasmtime::component::{HasSelf, Linker};

/// The bindings of the 0.3.0 world.
pub mod bindings {
    wasmtime::component::bindgen!({ world: "engine", path: "wit/0.3.0" });
}

use bindings::epu::engine::types as old;

/// The contract version this adapter runs.
pub const VERSION: &str = "0.3.0";

/// Links the 0.3.0 world's `log` (WASI is linked by the caller).
pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    bindings::Engine::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

impl bindings::EngineImports for HostState {
    fn log(&mut self, level: old::LogLevel, message: String) {
        let level = match level {
            old::LogLevel::Debug => current::LogLevel::Debug,
            old::LogLevel::Info => current::LogLevel::Info,
            old::LogLevel::Warn => current::LogLevel::Warn,
            old::LogLevel::Error => current::LogLevel::Error,
        };
        current::EngineImports::log(self, level, message);
    }
}

impl old::Host for HostState {}

/// Maps an enum of one contract version to the same enum of another, case by case.
macro_rules! same_cases {
    ($value:expr, $from:path => $to:path, [$($case:ident),* $(,)?]) => {{
        use $from as F;
        use $to as T;
        match $value {
            $(F::$case => T::$case,)*
        }
    }};
}

/// A snapshot as a 0.3.0 engine takes it.
pub fn snapshot(s: &current::Snapshot) -> old::Snapshot {
    old::Snapshot {
        now: s.now,
        full: s.full,
        instances: s.instances.iter().map(instance).collect(),
        details: s.details.as_ref().map(|ds| {
            ds.iter()
                .map(|d| old::InstanceDetails {
                    handle: d.handle,
                    id: d.id.clone(),
                    launch_id: d.launch_id.clone(),
                    vars: d.vars.clone(),
                })
                .collect()
        }),
        sensors: s.sensors.as_ref().map(|rs| {
            rs.iter()
                .map(|r| old::SensorReading {
                    name: r.name.clone(),
                    value: r.value,
                    time: r.time,
                    stale: r.stale,
                })
                .collect()
        }),
        memo: s.memo.clone(),
    }
}

fn instance(i: &current::Instance) -> old::Instance {
    old::Instance {
        handle: i.handle,
        state: same_cases!(i.state, current::InstanceState => old::InstanceState, [
            Requesting, Requested, ErrorRetrying, Pending, Started, Running, RunningFailed,
            Terminating, Terminated, Failed, Rejected,
        ]),
        state_time: i.state_time,
        health: same_cases!(i.health, current::Health => old::Health, [
            Unknown, Ok, ProcessError, MonitorError, Missing, Zombie, OutOfContact,
        ]),
        health_time: i.health_time,
    }
}

/// A 0.3.0 engine's decision as the daemon takes it.
pub fn decision(d: old::Decision) -> current::Decision {
    current::Decision {
        launches: d
            .launches
            .into_iter()
            .map(|l| current::Launch {
                count: l.count,
                vars: l.vars,
            })
            .collect(),
        destroy: d.destroy,
        next_decide_ms: d.next_decide_ms,
        memo: d.memo,
        status: same_cases!(d.status, old::EngineStatus => current::EngineStatus, [
            Pending, Stable, Unknown, DevmodeFailed,
        ]),
    }
}
