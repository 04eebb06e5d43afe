//! sensor: scales a pool on a metric between two thresholds, the original EPU (Phantom) sensor
//! engine with its known flaws fixed. `plugins/sensor-py` is the same engine in Python.
//!
//! - The metric is the fresh reading of the sensor named `metric` and of every sensor named
//!   `metric/<anything>` (one per worker, say `cpu/<instance id>`). `sample_function` reduces
//!   them: average, max, min, sum or count (the original's `Average`, `Maximum`, `Minimum`,
//!   `Sum` and `SampleCount` are accepted too). With no fresh reading the engine holds.
//! - Above `scale_up_threshold` the count grows by `scale_up_n_vms`; below
//!   `scale_down_threshold` it shrinks by `scale_down_n_vms`, within `minimum_vms` and
//!   `maximum_vms`. A step needs a reading newer than the last step, and `cooldown_period`
//!   seconds (default 0) since it. A step the bounds cancel is no step.
//! - The count it holds and the time of its last step are the memo. Unhealthy instances are
//!   destroyed and replaced at once, in a cooldown too.
//! - A scale-down destroys the instances named in `retirable_nodes` first, then those not yet
//!   running, then the newest.
//! - With `unique_key` and `unique_values`, each launch gets the first value no live instance
//!   has as the var `unique_key`; when they run out, it launches without one.

// The generated export glue takes one argument per flattened record field.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "engine", path: "../../wit" });

pub mod config;
pub mod policy;

engine_kit::engine_types!();

engine_kit::export_engine!(Sensor, config::Config, policy::decide);
