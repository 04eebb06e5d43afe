//! epu: an elastic processing unit.
//!
//! # Layout
//! From the ground up: each module imports only modules listed before it, never one after it
//! (`host/tests/all/layout.rs` fails on any import cycle).
//!
//! The ground:
//! - [`model`]: instance states, health, domain and sensor specs, and their range checks.
//! - [`statedir`]: the state dir kept private: its checks and how its files are opened.
//! - [`fsutil`]: files written whole, through a partial file renamed into place.
//! - [`wakeups`]: how whatever changes a domain wakes its controller.
//! - [`metrics`]: the Prometheus metrics, updated where things happen.
//! - [`signing`]: engine signatures in minisign's format, and the key a daemon requires.
//! - [`oci`]: engines pushed to and pulled from OCI registries, by tag or digest, with their
//!   signatures, and the registry credentials other OCI tools keep.
//! - [`engine`]: loads and sandboxes WebAssembly decision engines, runs those of earlier
//!   contracts through adapters, and checks configs against the schema each declares.
//! - [`tokens`]: who may call the TCP API: the admin and worker tokens.
//!
//! Services:
//! - [`plan`]: launch plans: bootlevels of services, and domains.
//! - [`store`]: the SQLite store, the one source of truth (of one daemon, or of the domains a
//!   node of a cluster owns).
//! - [`cluster`] (cargo feature `cluster`): daemons on etcd: node leases, fair shares of the
//!   domains, the state of record, fenced writes.
//! - [`analysis`]: event-log analysis per domain (epumgmt's).
//! - [`graph`]: draws that analysis as charts (`epu graph`).
//! - [`sensors`]: the readings engines scale on (AMQP queue depth, commands, pushes).
//! - [`provisioner`]: the instance lifecycle, the `process` driver and the `ec2` driver.
//!
//! The decide loop:
//! - [`contract`]: the host side of the engine contract: snapshots, decision checks, names.
//! - [`health`]: heartbeats and their timeouts.
//! - [`controller`]: one controller per domain, run by the decide threads, that decides and
//!   carries decisions out.
//!
//! Tools for engine authors:
//! - [`engine_check`]: `epu engine check`, a built-in scenario on a simulated domain, and the
//!   engine's schema held against its `initialize`.
//! - [`engine_test`]: `epu engine test`, scenario files replayed against an engine.
//!
//! The edges:
//! - [`daemon`]: wires everything together and recovers after a restart; its child modules run
//!   the plans' runs (`daemon::runs`) and watch the plugins directory (`daemon::dropin`).
//! - [`api`]: HTTP/JSON on a unix socket for the CLI and the workers, and on TCP behind tokens.
//! - [`cli`]: the `epu` command.
//!
//! # Errors
//! Inside a module, errors are `anyhow` with context. At every seam that another module matches
//! on, the error is a `thiserror` enum whose variants say what the caller can do about it:
//! [`controller::CommandError`] (refused, stopped, or the store failed), the daemon's
//! [`daemon::OpError`] (each variant an HTTP status), [`engine::EngineError`] (refused, refused
//! by the schema with the key named, or trapped, and how).

pub mod analysis;
pub mod api;
pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod contract;
pub mod controller;
pub mod daemon;
pub mod engine;
pub mod engine_check;
pub mod engine_test;
pub mod fsutil;
pub mod graph;
pub mod health;
pub mod metrics;
pub mod model;
pub mod oci;
pub mod plan;
pub mod provisioner;
pub mod sensors;
pub mod signing;
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
