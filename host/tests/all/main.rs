//! The integration tests, as one binary with a module per promise (host/tests/README.md).
//! Each runs the real `epu` binary against real processes, sockets and services, with the
//! test kit in `host/tests/kit/`, which the benches share.
//!
//! A module that needs an outside service or a guest toolchain is compiled only with its
//! tier's feature, so a bare `cargo test` never fails for want of one.

#[path = "../kit/mod.rs"]
mod kit;

mod api_fuzz;
mod api_tcp;
mod bad_input;
mod cli;
mod containment;
mod describe;
mod drain;
mod engine_check;
mod engine_faults;
mod environment;
mod explain;
mod hardening;
mod health;
mod hostile;
mod layout;
mod lifecycle;
mod logs;
mod metrics;
mod original_engines;
mod properties;
mod refresh;
mod runs;
mod scale_in;
mod sensors;
mod shadow;
mod torture;

// Tier `services`: RabbitMQ, moto's EC2 server, chromium, python3, etcd, an OCI registry.
#[cfg(all(feature = "services", feature = "cluster"))]
mod cluster;
#[cfg(all(feature = "services", feature = "cluster"))]
mod cluster_engines;
#[cfg(all(feature = "services", feature = "cluster"))]
mod cluster_heartbeats;
#[cfg(all(feature = "services", feature = "cluster"))]
mod cluster_placement;
#[cfg(feature = "services")]
mod dashboard;
#[cfg(feature = "services")]
mod demo_run;
#[cfg(all(feature = "services", feature = "ec2"))]
mod ec2;
#[cfg(feature = "services")]
mod oci;
#[cfg(feature = "services")]
mod queuelen;

// Tier `guests`: the engines in Python, JavaScript and C from plugins/build.sh.
#[cfg(feature = "guests")]
mod languages;
