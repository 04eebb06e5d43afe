//! npreserving: keeps N healthy instances in the domain, some of them uniques.
//!
//! The original EPU engine's semantics, with its known flaws fixed:
//! - `preserve_n` (default 0): the number of healthy instances to keep, uniques included.
//! - `unique_instances`: an object from a unique's key to its vars. Each unique is one instance
//!   launched with the provisioner vars plus its own, kept alive by itself; the rest of N are
//!   generic. A removed key's instance is destroyed once and forgotten; a new key launches
//!   one; changed vars apply at the next replacement. The memo names each unique's instance;
//!   without it, uniques are recovered by their launch vars.
//! - Each decide destroys unhealthy instances first, then tops up or trims the generics.
//! - `reconfigure` replaces each top-level key it gives, checked whole before it applies.
//! - `devmode_no_failure_compensation` (a boolean, or the strings "true"/"false"): failures are
//!   left in place and never replaced; the engine reports `devmode-failed` until devmode is off.
//! - `provisioner_vars`: an object of strings given to every launch as vars.
//!
//! The decision logic in [`policy`], [`config`] and [`memo`] is plain Rust, so it also compiles
//! natively for unit tests and for the benchmark that compares the wasm build with the native
//! one.

// The generated export glue takes one argument per flattened record field.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "engine", path: "../../wit" });

pub mod config;
pub mod memo;
pub mod policy;

engine_kit::engine_types!();

engine_kit::export_engine!(NPreserving, config::Config, policy::decide);
