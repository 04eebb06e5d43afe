//! The adapters that run engines built for earlier contracts, each kept with that contract's
//! text in `host/wit/<version>/`: [`v0_4`] and [`v0_3`]. An adapter gives its engine each
//! snapshot in the old shapes and takes its decisions back into the current ones; an engine of
//! an earlier contract has no `describe`, so its config is checked by its `initialize` only.

pub mod v0_3;
pub mod v0_4;

/// The contract versions run through an adapter, newest first.
pub const VERSIONS: [&str; 2] = [v0_4::VERSION, v0_3::VERSION];

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

/// An adapter module's bindings of the old world (from `$path`, its text), its `VERSION`, and
/// what every adapter converts the same way: the `log` import, `link`, `snapshot` and
/// `decision`. The module defines its own `fn instance`.
macro_rules! unchanged_shapes {
    ($version:literal, $path:literal) => {
        /// The bindings of the old world.
        pub mod bindings {
            wasmtime::component::bindgen!({ world: "engine", path: $path });
        }

        use bindings::epu::engine::types as old;

        /// The contract version this adapter runs.
        pub const VERSION: &str = $version;

        use super::super::bindings as current;
        use super::super::sandbox::HostState;
        use wasmtime::component::{HasSelf, Linker};

        /// Links the old world's `log` (WASI is linked by the caller).
        pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
            bindings::Engine::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
        }

        impl bindings::EngineImports for HostState {
            fn log(&mut self, level: old::LogLevel, message: String) {
                let level = same_cases!(level, old::LogLevel => current::LogLevel, [
                    Debug, Info, Warn, Error,
                ]);
                current::EngineImports::log(self, level, message);
            }
        }

        impl old::Host for HostState {}

        /// A snapshot as the old engine takes it.
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

        /// An instance's state and health as the old engine takes them.
        fn state_and_health(i: &current::Instance) -> (old::InstanceState, old::Health) {
            let state = same_cases!(i.state, current::InstanceState => old::InstanceState, [
                Requesting, Requested, ErrorRetrying, Pending, Started, Running, RunningFailed,
                Terminating, Terminated, Failed, Rejected,
            ]);
            let health = same_cases!(i.health, current::Health => old::Health, [
                Unknown, Ok, ProcessError, MonitorError, Missing, Zombie, OutOfContact,
            ]);
            (state, health)
        }

        /// The old engine's decision as the daemon takes it.
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
    };
}

use {same_cases, unchanged_shapes};
