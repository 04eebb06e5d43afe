//! A cluster of daemons on etcd: each node joins with a lease, owns a fair share of the
//! domains through lease-bound ownership keys, and fences every write it makes for a domain
//! with a transaction on that domain's ownership key.
//!
//! Keys, under the cluster's prefix (`/epu/` by default; [`record`] has the rest):
//! - `nodes/NODE`: the node's host and labels, bound to its lease: gone when it dies;
//! - `owners/DOMAIN`: the owning node's name, bound to the owner's lease. Its create revision
//!   is the claim: a write for the domain compares it, so a node that lost the domain while it
//!   was paused (its lease ran out, another node claimed) cannot write for it after it wakes.
//!
//! A node that cannot reach etcd stops acting on its domains before its lease can run out
//! ([`Membership::is_live`]), so no two nodes ever act for one domain.

pub mod balance;
mod membership;
mod mirror;
mod node;
mod pool;
pub mod record;

pub use membership::{Claim, ClusterError, Membership};
pub use mirror::EtcdMirror;
pub use node::{ClusterOptions, ClusterView, Node, DEFAULT_PREFIX, DEFAULT_TTL};
pub use pool::Pool;
