//! The WIT↔model mapping: instance states, health and engine statuses as the contract names
//! them and as the daemon does.

use crate::engine::bindings::{self as wit, EngineStatus};
use crate::model::{Health, InstanceState};

/// An instance state as the contract names it.
pub fn wit_state(s: InstanceState) -> wit::InstanceState {
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

/// A health as the contract names it.
pub fn wit_health(h: Health) -> wit::Health {
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

/// An instance state as the daemon names it (the inverse of [`wit_state`]).
pub fn model_state(s: wit::InstanceState) -> InstanceState {
    use wit::InstanceState as W;
    match s {
        W::Requesting => InstanceState::Requesting,
        W::Requested => InstanceState::Requested,
        W::ErrorRetrying => InstanceState::ErrorRetrying,
        W::Pending => InstanceState::Pending,
        W::Started => InstanceState::Started,
        W::Running => InstanceState::Running,
        W::RunningFailed => InstanceState::RunningFailed,
        W::Terminating => InstanceState::Terminating,
        W::Terminated => InstanceState::Terminated,
        W::Failed => InstanceState::Failed,
        W::Rejected => InstanceState::Rejected,
    }
}

/// A health as the daemon names it (the inverse of [`wit_health`]).
pub fn model_health(h: wit::Health) -> Health {
    use wit::Health as W;
    match h {
        W::Unknown => Health::Unknown,
        W::Ok => Health::Ok,
        W::ProcessError => Health::ProcessError,
        W::MonitorError => Health::MonitorError,
        W::Missing => Health::Missing,
        W::Zombie => Health::Zombie,
        W::OutOfContact => Health::OutOfContact,
    }
}

/// The kebab-case name of an engine status.
pub fn engine_status_name(s: EngineStatus) -> &'static str {
    match s {
        EngineStatus::Pending => "pending",
        EngineStatus::Stable => "stable",
        EngineStatus::Unknown => "unknown",
        EngineStatus::DevmodeFailed => "devmode-failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_health_map_to_the_contract_and_back() {
        for s in InstanceState::ALL {
            assert_eq!(model_state(wit_state(s)), s);
        }
        for h in Health::ALL {
            assert_eq!(model_health(wit_health(h)), h);
        }
    }
}
