//! Shadow engines: a candidate engine that decides beside a domain's live engine on the same
//! snapshots, whose decisions are compared and never carried out.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most shadows one domain runs at once.
pub const MAX_SHADOWS_PER_DOMAIN: usize = 4;

/// How a shadow's decisions compared with the live engine's, since it started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowStats {
    /// Decides both engines made.
    pub decides: u64,
    /// Decides whose decisions differed (in launches, destroys or status).
    pub differed: u64,
    /// Of those: the shadow would have kept more instances than the live engine.
    pub more: u64,
    /// The shadow would have kept fewer instances.
    pub fewer: u64,
    /// As many instances, but other victims.
    pub other_victims: u64,
    /// As many instances and the same victims, but another status.
    pub other_status: u64,
    /// Decides the shadow faulted on (trap, timeout, memory, error, or a decision the daemon
    /// would refuse); they never affect the domain.
    pub faults: u64,
    /// The last of those faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fault: Option<String>,
    /// Decides the shadow missed because its queue was full (it was still busy).
    pub skipped: u64,
    /// The time the live engine's decides took, in µs, summed over `decides`.
    pub live_us: f64,
    /// The time the shadow's decides took, in µs, summed over `decides`.
    pub shadow_us: f64,
}

/// A shadow as stored.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowRecord {
    pub id: i64,
    pub domain: String,
    pub engine_name: String,
    pub engine_sha: String,
    pub config: Map<String, Value>,
    pub started: f64,
    pub stats: ShadowStats,
    /// The shadow's own memo, as its last decision left it.
    #[serde(skip)]
    pub memo: Vec<u8>,
}

/// One point of the instance counts the two engines would keep: (time, live, shadow).
pub type ShadowPoint = (f64, u32, u32);
