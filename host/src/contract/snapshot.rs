//! Builds the engine's snapshot from the store's records and the sensor board: the whole domain
//! for a fresh engine instance, and only what changed for one that has been told the rest.

use super::mapping::{wit_health, wit_state};
use crate::engine::bindings::{self as wit, Snapshot};
use crate::sensors::Reading;
use crate::store::{DecideView, InstanceRecord};

/// What an engine instance has been told by the snapshots of its carried-out decides, so that
/// the next snapshot can be a delta. The controller keeps it beside the instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Synced {
    /// The newest event sequence number its snapshots covered.
    pub seq: i64,
    /// The largest instance handle whose details it got.
    pub max_handle: u64,
    /// The sensors whose reading it was last told is stale.
    pub stale: Vec<String>,
}

/// The snapshot for one decide at `now` of the domain as `view` has it, with the latest
/// reading of each sensor that has one, and what the engine instance has been told once it
/// is carried out. The snapshot is a delta from `synced` when that covers the previous
/// carried-out decide; otherwise it is full.
pub fn build(
    view: &DecideView,
    sensors: &[Reading],
    synced: Option<Synced>,
    now: f64,
) -> (Snapshot, Synced) {
    let from = synced.filter(|s| s.seq >= view.last_seq);
    let full = from.is_none();
    let (since, known, told_stale) = from.map_or((i64::MIN, 0, Vec::new()), |s| {
        (s.seq, s.max_handle, s.stale)
    });
    let sent: Vec<&InstanceRecord> = view
        .records
        .iter()
        .filter(|r| r.changed_seq > since && !r.surge)
        .collect();
    let instances = sent
        .iter()
        .map(|r| wit::Instance {
            handle: r.handle,
            state: wit_state(r.state),
            state_time: r.state_time,
            health: wit_health(r.health),
            health_time: r.health_time,
            protected: r.protected,
            draining: r.draining(),
        })
        .collect();
    let details: Vec<_> = sent
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
    // A reading is news when it arrived, or when its stale flag turned since the engine was told.
    let news: Vec<_> = sensors
        .iter()
        .filter(|r| full || r.fresh || r.reading.stale != told_stale.contains(&r.reading.name))
        .map(|r| r.reading.clone())
        .collect();
    let stale = sensors
        .iter()
        .filter(|r| r.reading.stale)
        .map(|r| r.reading.name.clone())
        .collect();
    let snapshot = Snapshot {
        now,
        full,
        instances,
        details: (!details.is_empty()).then_some(details),
        sensors: (!news.is_empty()).then_some(news),
        memo: (full && !view.memo.is_empty()).then(|| view.memo.to_vec()),
    };
    let told = Synced {
        seq: view.seen_seq,
        max_handle,
        stale,
    };
    (snapshot, told)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InstanceState;

    fn rec(handle: u64, state: InstanceState, changed_seq: i64) -> InstanceRecord {
        InstanceRecord::for_test(handle, state, changed_seq)
    }

    fn handles(s: &Snapshot) -> Vec<u64> {
        s.instances.iter().map(|i| i.handle).collect()
    }

    fn detailed(s: &Snapshot) -> Vec<u64> {
        s.details.iter().flatten().map(|i| i.handle).collect()
    }

    fn view(records: &[InstanceRecord], last_seq: i64, seen_seq: i64) -> DecideView {
        DecideView::new(records.to_vec(), last_seq, seen_seq, Vec::new())
    }

    fn reading(name: &str, time: f64, stale: bool, fresh: bool) -> Reading {
        Reading {
            reading: wit::SensorReading {
                name: name.into(),
                value: 1.0,
                time,
                stale,
            },
            fresh,
        }
    }

    fn sensor_names(s: &Snapshot) -> Vec<&str> {
        s.sensors
            .iter()
            .flatten()
            .map(|r| r.name.as_str())
            .collect()
    }

    #[test]
    fn a_fresh_instance_gets_everything_then_only_changes() {
        let records = [
            rec(1, InstanceState::Running, 3),
            rec(2, InstanceState::Running, 5),
            rec(3, InstanceState::Failed, 6),
        ];
        let (first, told) = build(&view(&records, 4, 6), &[], None, 1.0);
        assert!(first.full);
        assert_eq!(handles(&first), [1, 2, 3]);
        assert_eq!(detailed(&first), [1, 2, 3]);
        assert_eq!(
            told,
            Synced {
                seq: 6,
                max_handle: 3,
                stale: vec![]
            }
        );

        // Two new events: instance 2 changed, instance 4 was launched.
        let records = [
            rec(1, InstanceState::Running, 3),
            rec(2, InstanceState::Terminating, 7),
            rec(4, InstanceState::Requesting, 8),
        ];
        let (next, told) = build(&view(&records, 6, 8), &[], Some(told), 2.0);
        assert!(!next.full);
        assert_eq!(handles(&next), [2, 4]);
        assert_eq!(detailed(&next), [4], "details come once");
        assert_eq!(
            told,
            Synced {
                seq: 8,
                max_handle: 4,
                stale: vec![]
            }
        );
    }

    #[test]
    fn an_instance_behind_the_last_carried_out_decide_gets_a_full_snapshot() {
        let records = [rec(1, InstanceState::Running, 3)];
        let behind = Synced {
            seq: 2,
            max_handle: 1,
            stale: vec![],
        };
        let (s, _) = build(&view(&records, 5, 5), &[], Some(behind), 1.0);
        assert!(s.full);
        assert_eq!(handles(&s), [1]);
    }

    #[test]
    fn readings_come_when_new_or_when_their_staleness_turns_and_the_memo_only_when_full() {
        let records = [rec(1, InstanceState::Running, 3)];
        let sensors = [
            reading("q", 5.0, false, true),
            reading("cpu", 5.0, false, true),
        ];
        let memo = b"kept";
        let kept = DecideView::new(records.to_vec(), 3, 3, memo.to_vec());
        let bare = DecideView::new(records.to_vec(), 3, 3, Vec::new());
        let (first, told) = build(&kept, &sensors, None, 1.0);
        assert_eq!(sensor_names(&first), ["q", "cpu"]);
        assert_eq!(first.memo.as_deref(), Some(&memo[..]));

        // Nothing new: no reading, no memo, no details.
        let quiet = [
            reading("q", 5.0, false, false),
            reading("cpu", 5.0, false, false),
        ];
        let (next, told) = build(&kept, &quiet, Some(told), 2.0);
        assert!(!next.full);
        assert!(next.sensors.is_none() && next.memo.is_none() && next.details.is_none());

        // cpu ages into staleness: it is told once, and once more when it turns back.
        let aged = [
            reading("q", 5.0, false, false),
            reading("cpu", 5.0, true, false),
        ];
        let (next, told) = build(&kept, &aged, Some(told), 3.0);
        assert_eq!(sensor_names(&next), ["cpu"]);
        let (next, told) = build(&kept, &aged, Some(told), 4.0);
        assert!(next.sensors.is_none());
        let back = [
            reading("q", 5.0, false, false),
            reading("cpu", 6.0, false, true),
        ];
        let (next, _) = build(&kept, &back, Some(told), 5.0);
        assert_eq!(sensor_names(&next), ["cpu"]);

        let (empty, _) = build(&bare, &[], None, 6.0);
        assert!(
            empty.sensors.is_none() && empty.memo.is_none(),
            "none, not an empty list"
        );
    }
}
