//! epu: an elastic processing unit.
//!
//! # Layout
//! - [`model`]: instance states, health, domain specs.
//! - [`store`]: the SQLite store, the one source of truth.
//! - [`statedir`]: the state dir kept private: its checks and how its files are opened.
//! - [`engine`]: loads and sandboxes WebAssembly decision engines.
//! - [`contract`]: the host side of the engine contract: snapshots, decision checks, names.
//! - [`controller`]: one controller per domain, run by the decide threads, that decides and
//!   carries decisions out.
//! - [`conformance`]: `epu engine check`, a built-in scenario for plugin authors.
//! - [`provisioner`]: the instance lifecycle and the `process` driver.
//! - [`health`]: heartbeats and their timeouts.
//! - [`sensors`]: the readings engines scale on (AMQP queue depth, commands, pushes).
//! - [`plan`]: launch plans: bootlevels of services, and domains.
//! - [`analysis`]: event-log analysis per domain; [`graph`] draws it.
//! - [`scenario`]: `epu engine test`, scenario files replayed against an engine.
//! - [`daemon`]: wires everything together and recovers after a restart; its child modules run
//!   the plans' runs (`daemon::runs`) and watch the plugins directory (`daemon::dropin`).
//! - [`api`]: HTTP/JSON on a unix socket for the CLI and the workers, and on TCP behind tokens.
//! - [`metrics`]: Prometheus metrics.
//! - [`cli`]: the `epu` command.

//!
//! # Errors
//! Inside a module, errors are `anyhow` with context. At every seam that another module matches
//! on, the error is a `thiserror` enum whose variants say what the caller can do about it:
//! [`controller::CommandError`] (refused, stopped, or the store failed), the daemon's
//! [`daemon::OpError`] (each variant an HTTP status), [`engine::EngineError`] (refused or
//! trapped, and how).
//!
//! # Imports
//! Every import points down the list above, never up: `host/tests/layout.rs` fails on any
//! cycle among these modules.

pub mod analysis;
pub mod api;
pub mod cli;
pub mod conformance;
pub mod contract;
pub mod controller;
pub mod daemon;
pub mod engine;
pub mod graph;
pub mod health;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod provisioner;
pub mod scenario;
pub mod sensors;
pub mod statedir;
pub mod store;
pub mod tokens;
pub mod wakeups;

/// How many cases a property test runs: `default`, or `PROPTEST_CASES` when set (a longer
/// fuzzing session: `PROPTEST_CASES=100000 cargo test -p epu proptest`).
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
