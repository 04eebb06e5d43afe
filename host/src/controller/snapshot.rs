//! Builds the engine's snapshot from the store's records.

use crate::engine::bindings::{self as wit, Snapshot};
use crate::model::{Health, InstanceState};
use crate::sensors::Readings;
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

/// The snapshot for one decide: `records` are the domain's live instances plus those changed
/// after `last_seq`, the sequence number the previous decide saw.
pub fn build(
    domain: &str,
    now: f64,
    records: &[InstanceRecord],
    last_seq: i64,
    readings: Readings,
    memo: Vec<u8>,
) -> Snapshot {
    let instances = records
        .iter()
        .filter(|r| !r.state.is_final())
        .map(|r| wit::Instance {
            id: r.id.clone(),
            launch_id: r.launch_id.clone(),
            state: state(r.state),
            state_time: r.state_time,
            health: health(r.health),
            health_time: r.health_time,
            last_heartbeat: r.last_heartbeat,
            vars: r.vars.clone(),
        })
        .collect();
    let instance_changes = records
        .iter()
        .filter(|r| r.changed_seq > last_seq)
        .map(|r| wit::InstanceChange {
            id: r.id.clone(),
            state: state(r.state),
            health: health(r.health),
            time: r.state_time.max(r.health_time),
        })
        .collect();
    Snapshot {
        domain: domain.to_string(),
        now,
        instances,
        instance_changes,
        sensors: readings.sensors,
        sensor_changes: readings.changes,
        memo,
    }
}
