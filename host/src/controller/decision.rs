//! Checks an engine's decision before anything is carried out.

use crate::engine::bindings::Decision;
use crate::store::InstanceRecord;
use std::collections::HashSet;

/// Why a decision was refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum InvalidDecision {
    #[error("destroy names '{0}', which is not a live instance of this domain")]
    UnknownInstance(String),
    #[error("destroy names '{0}' twice")]
    DuplicateDestroy(String),
    #[error("launching {launch} would make {total} instances, over max_instances = {max}")]
    OverMax { launch: u64, total: u64, max: u32 },
    #[error("the decision is {size} bytes, over the cap of {max}")]
    TooBig { size: u64, max: u32 },
}

/// The bytes a decision carries: its memo, launch vars and destroyed ids.
fn size(d: &Decision) -> u64 {
    let vars: usize = d
        .launches
        .iter()
        .flat_map(|l| &l.vars)
        .map(|(k, v)| k.len() + v.len())
        .sum();
    let ids: usize = d.destroy.iter().map(String::len).sum();
    (d.memo.as_ref().map_or(0, Vec::len) + vars + ids) as u64
}

/// Accepts a decision only if it is at most `max_bytes`, every destroyed id is a live instance
/// of the domain (each named once), and the launches keep the domain within `max_instances`.
pub fn check(
    d: &Decision,
    live: &[InstanceRecord],
    max: u32,
    max_bytes: u32,
) -> Result<(), InvalidDecision> {
    let bytes = size(d);
    if bytes > u64::from(max_bytes) {
        return Err(InvalidDecision::TooBig {
            size: bytes,
            max: max_bytes,
        });
    }
    let ids: HashSet<&str> = live.iter().map(|i| i.id.as_str()).collect();
    let mut seen = HashSet::new();
    for id in &d.destroy {
        if !ids.contains(id.as_str()) {
            return Err(InvalidDecision::UnknownInstance(id.clone()));
        }
        if !seen.insert(id.as_str()) {
            return Err(InvalidDecision::DuplicateDestroy(id.clone()));
        }
    }
    let launch: u64 = d.launches.iter().map(|l| u64::from(l.count)).sum();
    let staying = live
        .iter()
        .filter(|i| {
            i.state < crate::model::InstanceState::Terminating && !seen.contains(i.id.as_str())
        })
        .count() as u64;
    if launch > 0 && staying + launch > u64::from(max) {
        return Err(InvalidDecision::OverMax {
            launch,
            total: staying + launch,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bindings::{EngineStatus, Launch};
    use crate::model::{Health, InstanceState};

    fn rec(id: &str, state: InstanceState) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            domain: "d".into(),
            launch_id: "l".into(),
            state,
            state_time: 0.0,
            health: Health::Ok,
            health_time: 0.0,
            last_heartbeat: None,
            vars: vec![],
            pid: None,
            pid_start: None,
            error: None,
            changed_seq: 0,
            created: 0.0,
        }
    }

    fn decision(launch: u32, destroy: &[&str]) -> Decision {
        Decision {
            launches: vec![Launch {
                count: launch,
                vars: vec![],
            }],
            destroy: destroy.iter().map(|s| s.to_string()).collect(),
            next_decide_ms: None,
            memo: None,
            status: EngineStatus::Pending,
        }
    }

    #[test]
    fn refuses_decisions_over_the_size_cap() {
        let mut d = decision(0, &[]);
        d.memo = Some(vec![0; 1001]);
        assert_eq!(
            check(&d, &[], 5, 1000),
            Err(InvalidDecision::TooBig {
                size: 1001,
                max: 1000
            })
        );
        d.memo = Some(vec![0; 1000]);
        assert_eq!(check(&d, &[], 5, 1000), Ok(()));
    }

    #[test]
    fn accepts_within_bounds() {
        let live = vec![
            rec("a", InstanceState::Running),
            rec("b", InstanceState::Running),
        ];
        assert_eq!(check(&decision(1, &["a"]), &live, 2, 1000), Ok(()));
    }

    #[test]
    fn refuses_foreign_and_duplicate_ids() {
        let live = vec![rec("a", InstanceState::Running)];
        assert_eq!(
            check(&decision(0, &["zz"]), &live, 5, 1000),
            Err(InvalidDecision::UnknownInstance("zz".into()))
        );
        assert_eq!(
            check(&decision(0, &["a", "a"]), &live, 5, 1000),
            Err(InvalidDecision::DuplicateDestroy("a".into()))
        );
    }

    #[test]
    fn refuses_launches_over_max_but_not_counting_terminating() {
        let live = vec![
            rec("a", InstanceState::Running),
            rec("t", InstanceState::Terminating),
        ];
        assert!(matches!(
            check(&decision(2, &[]), &live, 2, 1000),
            Err(InvalidDecision::OverMax { total: 3, .. })
        ));
        assert_eq!(check(&decision(1, &[]), &live, 2, 1000), Ok(()));
        assert!(check(&decision(u32::MAX, &[]), &live, 1000, 1000).is_err());
    }
}
