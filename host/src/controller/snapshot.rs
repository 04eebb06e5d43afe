//! Builds the engine's snapshot from the store's records: the whole domain for a fresh engine
//! instance, and only what changed for one that has been told the rest.

use crate::engine::bindings::{self as wit, SensorReading, Snapshot};
use crate::engine::Synced;
use crate::model::{Health, InstanceState};
use crate::store::InstanceRecord;

fn state(s: InstanceState) -> wit::InstanceState {
    use wit::InstanceState as W;
    match s {
        InstanceState::Requesting => W::Requesting,
        InstanceState::Requested => W::Requested,
        InstanceState::ErrorRetrying => W::ErrorRetrying,
        InstanceState::Pending => W::Pending,
        InstanceState::Started => W::Started,
        InstanceState::Running => W::Running,
        InstanceState::RunningFailed => W::RunningFailed,
        InstanceState::Terminating => W::Terminating,
        InstanceState::Terminated => W::Terminated,
        InstanceState::Failed => W::Failed,
        InstanceState::Rejected => W::Rejected,
    }
}

fn health(h: Health) -> wit::Health {
    use wit::Health as W;
    match h {
        Health::Unknown => W::Unknown,
        Health::Ok => W::Ok,
        Health::ProcessError => W::ProcessError,
        Health::MonitorError => W::MonitorError,
        Health::Missing => W::Missing,
        Health::Zombie => W::Zombie,
        Health::OutOfContact => W::OutOfContact,
    }
}

/// The domain as one decide reads it from the store.
pub struct DomainView<'a> {
    /// The live instances plus those changed after `last_seq`.
    pub records: &'a [InstanceRecord],
    /// The sequence number the previous carried-out decide saw.
    pub last_seq: i64,
    /// The newest sequence number when the records were read.
    pub seen_seq: i64,
}

/// The snapshot for one decide at `now`, and what the engine instance has been told once it
/// is carried out. The snapshot is a delta from `synced` when that covers the previous
/// carried-out decide; otherwise it is full.
pub fn build(
    view: DomainView,
    synced: Option<Synced>,
    now: f64,
    sensors: Vec<SensorReading>,
    memo: Vec<u8>,
) -> (Snapshot, Synced) {
    let from = synced.filter(|s| s.seq >= view.last_seq);
    let (since, known) = from.map_or((i64::MIN, 0), |s| (s.seq, s.max_handle));
    let sent: Vec<&InstanceRecord> = view
        .records
        .iter()
        .filter(|r| r.changed_seq > since)
        .collect();
    let instances = sent
        .iter()
        .map(|r| wit::Instance {
            handle: r.handle,
            state: state(r.state),
            state_time: r.state_time,
            health: health(r.health),
            health_time: r.health_time,
        })
        .collect();
    let details = sent
        .iter()
        .filter(|r| r.handle > known)
        .map(|r| wit::InstanceDetails {
            handle: r.handle,
            id: r.id.clone(),
            launch_id: r.launch_id.clone(),
            vars: r.vars.clone(),
        })
        .collect();
    let max_handle = sent.iter().map(|r| r.handle).fold(known, u64::max);
    let snapshot = Snapshot {
        now,
        full: from.is_none(),
        instances,
        details,
        sensors,
        memo,
    };
    let told = Synced {
        seq: view.seen_seq,
        max_handle,
    };
    (snapshot, told)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(handle: u64, state: InstanceState, changed_seq: i64) -> InstanceRecord {
        InstanceRecord::for_test(handle, state, changed_seq)
    }

    fn handles(s: &Snapshot) -> Vec<u64> {
        s.instances.iter().map(|i| i.handle).collect()
    }

    fn detailed(s: &Snapshot) -> Vec<u64> {
        s.details.iter().map(|i| i.handle).collect()
    }

    fn view(records: &[InstanceRecord], last_seq: i64, seen_seq: i64) -> DomainView<'_> {
        DomainView {
            records,
            last_seq,
            seen_seq,
        }
    }

    #[test]
    fn a_fresh_instance_gets_everything_then_only_changes() {
        let records = [
            rec(1, InstanceState::Running, 3),
            rec(2, InstanceState::Running, 5),
            rec(3, InstanceState::Failed, 6),
        ];
        let (first, told) = build(view(&records, 4, 6), None, 1.0, vec![], vec![]);
        assert!(first.full);
        assert_eq!(handles(&first), [1, 2, 3]);
        assert_eq!(detailed(&first), [1, 2, 3]);
        assert_eq!(
            told,
            Synced {
                seq: 6,
                max_handle: 3
            }
        );

        // Two new events: instance 2 changed, instance 4 was launched.
        let records = [
            rec(1, InstanceState::Running, 3),
            rec(2, InstanceState::Terminating, 7),
            rec(4, InstanceState::Requesting, 8),
        ];
        let (next, told) = build(view(&records, 6, 8), Some(told), 2.0, vec![], vec![]);
        assert!(!next.full);
        assert_eq!(handles(&next), [2, 4]);
        assert_eq!(detailed(&next), [4], "details come once");
        assert_eq!(
            told,
            Synced {
                seq: 8,
                max_handle: 4
            }
        );
    }

    #[test]
    fn an_instance_behind_the_last_carried_out_decide_gets_a_full_snapshot() {
        let records = [rec(1, InstanceState::Running, 3)];
        let behind = Synced {
            seq: 2,
            max_handle: 1,
        };
        let (s, _) = build(view(&records, 5, 5), Some(behind), 1.0, vec![], vec![]);
        assert!(s.full);
        assert_eq!(handles(&s), [1]);
    }
}
