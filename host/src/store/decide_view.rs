//! The domain as a decide sees it: what [`Store::decide_view`](super::Store::decide_view)
//! reads, and what the engine's snapshot is built from.

use super::InstanceRecord;

/// The domain as a decide sees it, read at one point in time (see [`Store::decide_view`]).
/// The controller keeps it, `Arc`-shared, while the domain's generation stays the same, and
/// the engine's snapshot is built from it with the sensor readings.
#[derive(Clone, Debug, Default)]
pub struct DecideView {
    /// The domain's change counter before the read.
    pub generation: u64,
    /// The live instances plus those changed since the domain's last decide.
    pub records: Vec<InstanceRecord>,
    /// The instances of `records` that are not final.
    pub live: Vec<InstanceRecord>,
    /// Whether any of `live` is draining (found once per read, not once per decide).
    pub draining: bool,
    /// The newest event sequence number when the store was read.
    pub seen_seq: i64,
    /// The sequence number the domain's previous carried-out decide saw.
    pub last_seq: i64,
    /// The engine's memo, as its last carried-out decision left it.
    pub memo: Vec<u8>,
    /// The domain's deployable and its version, which new instances run.
    pub deployable: Option<(i64, crate::model::Deployable)>,
    /// The rolling refresh under way, if any.
    pub refresh: Option<crate::model::Refresh>,
}

impl DecideView {
    /// A view of `records` (live ones and recent changes); `live` is derived from them.
    pub fn new(records: Vec<InstanceRecord>, last_seq: i64, seen_seq: i64, memo: Vec<u8>) -> Self {
        let live = records
            .iter()
            .filter(|r| !r.state.is_final())
            .cloned()
            .collect::<Vec<_>>();
        DecideView {
            draining: live.iter().any(InstanceRecord::draining),
            generation: 0,
            records,
            live,
            seen_seq,
            last_seq,
            memo,
            deployable: None,
            refresh: None,
        }
    }
}
