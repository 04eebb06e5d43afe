//! npreserving: keeps N healthy instances in the domain.
//!
//! The original EPU engine's semantics, with its known flaws fixed:
//! - `preserve_n` (default 0): the number of healthy instances to keep.
//! - Each decide destroys unhealthy instances first, then tops up or trims to N.
//! - `reconfigure` changes N (or any other key) and is checked before it applies.
//! - `devmode_no_failure_compensation` (a boolean, or the strings "true"/"false"): failures are
//!   left in place and never replaced; the engine reports `devmode-failed` until devmode is off.
//! - `provisioner_vars`: an object of strings given to every launch as vars.
//!
//! The decision logic in [`policy`] and [`config`] is plain Rust, so it also compiles natively
//! for unit tests and for the benchmark that compares the wasm build with the native one.

// The generated export glue takes one argument per flattened record field.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "engine", path: "../../wit" });

pub mod config;
pub mod memo;
pub mod policy;

// `Snapshot`, `Decision` and `LogLevel` are already at the crate root (the world `use`s them).
pub use epu::engine::types::{
    EngineStatus, Health, Instance, InstanceDetails, InstanceState, Launch, SensorReading,
};

engine_kit::entries!(
    Instance,
    InstanceState,
    Health,
    SensorReading,
    InstanceDetails,
    Snapshot
);

/// What the engine keeps of its domain between decides.
pub type Domain = engine_kit::Domain<Instance, SensorReading, InstanceDetails>;

engine_kit::export_engine!(NPreserving, config::Config, policy::decide);
