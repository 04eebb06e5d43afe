//! The npreserving decision: destroy the unhealthy, then top up or trim to N.

use crate::config::Config;
use crate::{Decision, Domain, EngineStatus, Health, Instance, InstanceState, Launch, Snapshot};

/// An instance counts toward N while it is below `terminating`.
fn is_valid(i: &Instance) -> bool {
    i.state < InstanceState::Terminating
}

/// The original rule: running-failed, or a health other than ok/unknown, or a zombie at any state.
fn is_unhealthy(i: &Instance) -> bool {
    i.health == Health::Zombie
        || (is_valid(i)
            && (i.state == InstanceState::RunningFailed
                || !matches!(i.health, Health::Ok | Health::Unknown)))
}

/// Failures remembered in devmode: the memo is a little-endian u32 count.
fn remembered_failures(memo: &[u8]) -> u32 {
    memo.try_into().map(u32::from_le_bytes).unwrap_or(0)
}

/// Applies the snapshot to what the engine keeps of its domain, then decides. Victims of a trim
/// are chosen deterministically: instances that are not yet running go first, then the newest.
pub fn decide(config: &Config, domain: &mut Domain, snapshot: &Snapshot) -> Decision {
    let s = snapshot;
    domain.apply(
        s.full,
        &s.instances,
        s.sensors.as_deref(),
        s.memo.as_deref(),
    );
    let decision = decide_on(config, domain, snapshot);
    domain.remember(decision.memo.as_deref());
    decision
}

fn decide_on(config: &Config, domain: &Domain, snapshot: &Snapshot) -> Decision {
    let n = config.preserve_n as usize;
    let (unhealthy, mut healthy): (Vec<&Instance>, Vec<&Instance>) = domain
        .instances()
        .iter()
        .filter(|i| is_valid(i) || i.health == Health::Zombie)
        .partition(|i| is_unhealthy(i));
    healthy.retain(|i| is_valid(i));

    let mut destroy: Vec<u64> = Vec::new();
    let mut memo = None;
    let failures = if config.devmode {
        // Leave failures in place and count them against N so that they are not replaced.
        let ended_badly = snapshot
            .instances
            .iter()
            .filter(|c| matches!(c.state, InstanceState::Failed | InstanceState::Rejected))
            .count() as u32;
        let remembered = remembered_failures(domain.memo()).saturating_add(ended_badly);
        memo = Some(remembered.to_le_bytes().to_vec());
        remembered as usize + unhealthy.iter().filter(|i| is_valid(i)).count()
    } else {
        destroy.extend(unhealthy.iter().map(|i| i.handle));
        if !domain.memo().is_empty() {
            memo = Some(Vec::new());
        }
        0
    };

    let mut launches = Vec::new();
    let occupied = healthy.len() + failures;
    if occupied < n {
        launches.push(Launch {
            count: (n - occupied) as u32,
            vars: config.provisioner_vars.clone(),
        });
    } else if healthy.len() > n.saturating_sub(failures) {
        let excess = healthy.len() - n.saturating_sub(failures);
        healthy.sort_by(|a, b| {
            let a_up = a.state >= InstanceState::Running;
            let b_up = b.state >= InstanceState::Running;
            a_up.cmp(&b_up)
                .then(b.state_time.total_cmp(&a.state_time))
                .then(b.handle.cmp(&a.handle))
        });
        destroy.extend(healthy.iter().take(excess).map(|i| i.handle));
    }

    let settling = healthy.iter().any(|i| i.state < InstanceState::Running);
    let status = if config.devmode && failures > 0 {
        EngineStatus::DevmodeFailed
    } else if launches.is_empty() && destroy.is_empty() && !settling {
        EngineStatus::Stable
    } else {
        EngineStatus::Pending
    };
    Decision {
        launches,
        destroy,
        next_decide_ms: None,
        memo,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(handle: u64, state: InstanceState, health: Health, time: f64) -> Instance {
        Instance {
            handle,
            state,
            state_time: time,
            health,
            health_time: time,
        }
    }

    fn running(handle: u64) -> Instance {
        inst(handle, InstanceState::Running, Health::Ok, 1.0)
    }

    fn snap(instances: Vec<Instance>) -> Snapshot {
        Snapshot {
            now: 100.0,
            full: true,
            instances,
            details: None,
            sensors: None,
            memo: None,
        }
    }

    fn config(n: u32) -> Config {
        Config {
            preserve_n: n,
            preserve_n_set: true,
            ..Config::default()
        }
    }

    /// Decides on a fresh engine's first (full) snapshot.
    fn first(config: &Config, s: &Snapshot) -> Decision {
        decide(config, &mut Domain::default(), s)
    }

    fn launched(d: &Decision) -> u32 {
        d.launches.iter().map(|l| l.count).sum()
    }

    #[test]
    fn tops_up_from_empty() {
        let d = first(&config(3), &snap(vec![]));
        assert_eq!(launched(&d), 3);
        assert!(d.destroy.is_empty());
        assert_eq!(d.status, EngineStatus::Pending);
    }

    #[test]
    fn stable_at_n() {
        let d = first(&config(2), &snap(vec![running(1), running(2)]));
        assert_eq!(launched(&d), 0);
        assert!(d.destroy.is_empty());
        assert_eq!(d.status, EngineStatus::Stable);
    }

    #[test]
    fn starting_instances_count_but_keep_status_pending() {
        let s = snap(vec![
            running(1),
            inst(2, InstanceState::Started, Health::Unknown, 2.0),
        ]);
        let d = first(&config(2), &s);
        assert_eq!(launched(&d), 0);
        assert_eq!(d.status, EngineStatus::Pending);
    }

    #[test]
    fn unhealthy_are_destroyed_and_replaced() {
        let s = snap(vec![
            running(1),
            inst(2, InstanceState::Running, Health::Missing, 1.0),
            inst(3, InstanceState::RunningFailed, Health::Ok, 1.0),
        ]);
        let d = first(&config(3), &s);
        assert_eq!(d.destroy, vec![2, 3]);
        assert_eq!(launched(&d), 2);
    }

    #[test]
    fn terminating_instances_do_not_count() {
        let s = snap(vec![
            running(1),
            inst(2, InstanceState::Terminating, Health::Ok, 1.0),
        ]);
        let d = first(&config(2), &s);
        assert_eq!(launched(&d), 1);
        assert!(d.destroy.is_empty());
    }

    #[test]
    fn a_zombie_is_destroyed_again() {
        let s = snap(vec![
            running(1),
            inst(9, InstanceState::Terminating, Health::Zombie, 1.0),
        ]);
        let d = first(&config(1), &s);
        assert_eq!(d.destroy, vec![9]);
        assert_eq!(launched(&d), 0);
    }

    #[test]
    fn trims_not_running_then_newest_first() {
        let s = snap(vec![
            inst(1, InstanceState::Running, Health::Ok, 1.0),
            inst(2, InstanceState::Running, Health::Ok, 5.0),
            inst(3, InstanceState::Started, Health::Unknown, 2.0),
        ]);
        let d = first(&config(1), &s);
        assert_eq!(d.destroy, vec![3, 2]);
        assert_eq!(launched(&d), 0);
    }

    #[test]
    fn zero_destroys_everything() {
        let d = first(&config(0), &snap(vec![running(1), running(2)]));
        assert_eq!(d.destroy.len(), 2);
    }

    #[test]
    fn launches_carry_provisioner_vars() {
        let mut c = config(1);
        c.provisioner_vars = vec![("role".into(), "worker".into())];
        let d = first(&c, &snap(vec![]));
        assert_eq!(d.launches[0].vars, c.provisioner_vars);
    }

    #[test]
    fn deltas_update_the_table() {
        let c = config(2);
        let mut domain = Domain::default();
        let d = decide(&c, &mut domain, &snap(vec![running(1), running(2)]));
        assert_eq!(d.status, EngineStatus::Stable);
        // Instance 2 dies: the next snapshot carries only that change.
        let mut delta = snap(vec![inst(2, InstanceState::Failed, Health::Unknown, 5.0)]);
        delta.full = false;
        let d = decide(&c, &mut domain, &delta);
        assert_eq!(launched(&d), 1);
        // An empty delta sees the same table: instance 1 plus nothing new.
        delta.instances.clear();
        let d = decide(&c, &mut domain, &delta);
        assert_eq!(launched(&d), 1);
        assert_eq!(domain.instances().len(), 1);
    }

    #[test]
    fn devmode_neither_destroys_nor_replaces_failures_and_remembers_them() {
        let mut c = config(3);
        c.devmode = true;
        let mut domain = Domain::default();
        let s = snap(vec![
            running(1),
            inst(2, InstanceState::Running, Health::Missing, 1.0),
            inst(3, InstanceState::Failed, Health::Unknown, 99.0),
        ]);
        let d = decide(&c, &mut domain, &s);
        assert!(
            d.destroy.is_empty(),
            "devmode keeps the unhealthy instance for inspection"
        );
        assert_eq!(
            launched(&d),
            0,
            "one healthy + one unhealthy + one failed fill N=3"
        );
        assert_eq!(d.status, EngineStatus::DevmodeFailed);
        assert_eq!(remembered_failures(d.memo.as_deref().unwrap()), 1);

        // The next decide no longer sees the failure but still remembers it: the engine keeps
        // the memo it returned, and after a restart the daemon gives it back.
        let mut next = snap(vec![]);
        next.full = false;
        let d2 = decide(&c, &mut domain, &next);
        assert_eq!(launched(&d2), 0);
        assert_eq!(d2.status, EngineStatus::DevmodeFailed);
        let mut restarted = snap(vec![
            running(1),
            inst(2, InstanceState::Running, Health::Missing, 1.0),
        ]);
        restarted.memo = d2.memo.clone();
        let d3 = first(&c, &restarted);
        assert_eq!(launched(&d3), 0);
        assert_eq!(remembered_failures(d3.memo.as_deref().unwrap()), 1);
    }

    #[test]
    fn engine_destroyed_instances_are_not_devmode_failures() {
        let mut c = config(2);
        c.devmode = true;
        let s = snap(vec![
            running(1),
            inst(2, InstanceState::Terminated, Health::Unknown, 99.0),
        ]);
        let d = first(&c, &s);
        assert_eq!(launched(&d), 1);
        assert_eq!(d.status, EngineStatus::Pending);
    }

    #[test]
    fn leaving_devmode_clears_the_memory_and_replaces() {
        let mut s = snap(vec![running(1)]);
        s.memo = Some(2u32.to_le_bytes().to_vec());
        let d = first(&config(3), &s);
        assert_eq!(launched(&d), 2);
        assert_eq!(d.memo, Some(vec![]));
    }
}
