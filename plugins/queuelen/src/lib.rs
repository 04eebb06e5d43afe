//! queuelen: scales a worker pool on the length of its message queue.
//!
//! The original EPU engine's semantics, with its known flaws fixed:
//! - `queuelen_high_water` and `queuelen_low_water` (required, high > low), `min_instances`
//!   (default 0), `max_instances` (optional), `scale_step` (default 1), `sensor` (the reading
//!   to follow, default `queue-length`), `provisioner_vars` (vars for every launch).
//! - Each decide destroys unhealthy instances, then tops up to the minimum, and in the same
//!   decide takes its step on a new reading, as the original did, unless an instance is still
//!   coming up.
//! - Above high water, or with work and no instance, it launches; below low water it removes
//!   the newest instance while above the minimum, but never the last one while work remains.
//! - One scaling step (±1, or ±`scale_step`) per new reading: decides also come at once after
//!   every instance change, and a step is never taken twice on the same queue length. The
//!   time of the reading of the last step is the memo, so this survives restarts and swaps.
//! - A stale or missing reading holds the count: no scaling either way.
//!
//! The decision logic in [`policy`] and [`config`] is plain Rust, so it also compiles natively
//! for unit tests and benchmarks.

// The generated export glue takes one argument per flattened record field.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "engine", path: "../../wit" });

pub mod config;
pub mod policy;

engine_kit::engine_types!();

engine_kit::export_engine!(QueueLen, config::Config, policy::decide);
