//! The npreserving decision: destroy the unhealthy, then top up or trim to N.

use crate::config::Config;
use crate::{Decision, EngineStatus, Health, Instance, InstanceState, Launch, Snapshot};

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

/// Decides for one snapshot. Victims of a trim are chosen deterministically: instances that are
/// not yet running go first, then the newest.
pub fn decide(config: &Config, snapshot: &Snapshot) -> Decision {
    let n = config.preserve_n as usize;
    let (unhealthy, mut healthy): (Vec<&Instance>, Vec<&Instance>) = snapshot
        .instances
        .iter()
        .filter(|i| is_valid(i) || i.health == Health::Zombie)
        .partition(|i| is_unhealthy(i));
    healthy.retain(|i| is_valid(i));

    let mut destroy: Vec<String> = Vec::new();
    let mut memo = None;
    let failures = if config.devmode {
        // Leave failures in place and count them against N so that they are not replaced.
        let ended_badly = snapshot
            .instance_changes
            .iter()
            .filter(|c| matches!(c.state, InstanceState::Failed | InstanceState::Rejected))
            .count() as u32;
        let remembered = remembered_failures(&snapshot.memo).saturating_add(ended_badly);
        memo = Some(remembered.to_le_bytes().to_vec());
        remembered as usize + unhealthy.iter().filter(|i| is_valid(i)).count()
    } else {
        destroy.extend(unhealthy.iter().map(|i| i.id.clone()));
        if !snapshot.memo.is_empty() {
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
                .then(a.id.cmp(&b.id))
        });
        destroy.extend(healthy.iter().take(excess).map(|i| i.id.clone()));
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
    use crate::InstanceChange;

    fn inst(id: &str, state: InstanceState, health: Health, time: f64) -> Instance {
        Instance {
            id: id.into(),
            launch_id: format!("l-{id}"),
            state,
            state_time: time,
            health,
            health_time: time,
            last_heartbeat: None,
            vars: vec![],
        }
    }

    fn running(id: &str) -> Instance {
        inst(id, InstanceState::Running, Health::Ok, 1.0)
    }

    fn snap(instances: Vec<Instance>) -> Snapshot {
        Snapshot {
            domain: "d".into(),
            now: 100.0,
            instances,
            instance_changes: vec![],
            sensors: vec![],
            sensor_changes: vec![],
            memo: vec![],
        }
    }

    fn config(n: u32) -> Config {
        Config {
            preserve_n: n,
            preserve_n_set: true,
            ..Config::default()
        }
    }

    fn launched(d: &Decision) -> u32 {
        d.launches.iter().map(|l| l.count).sum()
    }

    #[test]
    fn tops_up_from_empty() {
        let d = decide(&config(3), &snap(vec![]));
        assert_eq!(launched(&d), 3);
        assert!(d.destroy.is_empty());
        assert_eq!(d.status, EngineStatus::Pending);
    }

    #[test]
    fn stable_at_n() {
        let d = decide(&config(2), &snap(vec![running("a"), running("b")]));
        assert_eq!(launched(&d), 0);
        assert!(d.destroy.is_empty());
        assert_eq!(d.status, EngineStatus::Stable);
    }

    #[test]
    fn starting_instances_count_but_keep_status_pending() {
        let s = snap(vec![
            running("a"),
            inst("b", InstanceState::Started, Health::Unknown, 2.0),
        ]);
        let d = decide(&config(2), &s);
        assert_eq!(launched(&d), 0);
        assert_eq!(d.status, EngineStatus::Pending);
    }

    #[test]
    fn unhealthy_are_destroyed_and_replaced() {
        let s = snap(vec![
            running("a"),
            inst("b", InstanceState::Running, Health::Missing, 1.0),
            inst("c", InstanceState::RunningFailed, Health::Ok, 1.0),
        ]);
        let d = decide(&config(3), &s);
        assert_eq!(d.destroy, vec!["b".to_string(), "c".to_string()]);
        assert_eq!(launched(&d), 2);
    }

    #[test]
    fn terminating_instances_do_not_count() {
        let s = snap(vec![
            running("a"),
            inst("b", InstanceState::Terminating, Health::Ok, 1.0),
        ]);
        let d = decide(&config(2), &s);
        assert_eq!(launched(&d), 1);
        assert!(d.destroy.is_empty());
    }

    #[test]
    fn a_zombie_is_destroyed_again() {
        let s = snap(vec![
            running("a"),
            inst("z", InstanceState::Terminating, Health::Zombie, 1.0),
        ]);
        let d = decide(&config(1), &s);
        assert_eq!(d.destroy, vec!["z".to_string()]);
        assert_eq!(launched(&d), 0);
    }

    #[test]
    fn trims_not_running_then_newest_first() {
        let s = snap(vec![
            inst("old", InstanceState::Running, Health::Ok, 1.0),
            inst("new", InstanceState::Running, Health::Ok, 5.0),
            inst("booting", InstanceState::Started, Health::Unknown, 2.0),
        ]);
        let d = decide(&config(1), &s);
        assert_eq!(d.destroy, vec!["booting".to_string(), "new".to_string()]);
        assert_eq!(launched(&d), 0);
    }

    #[test]
    fn zero_destroys_everything() {
        let d = decide(&config(0), &snap(vec![running("a"), running("b")]));
        assert_eq!(d.destroy.len(), 2);
    }

    #[test]
    fn launches_carry_provisioner_vars() {
        let mut c = config(1);
        c.provisioner_vars = vec![("role".into(), "worker".into())];
        let d = decide(&c, &snap(vec![]));
        assert_eq!(d.launches[0].vars, c.provisioner_vars);
    }

    #[test]
    fn devmode_neither_destroys_nor_replaces_failures_and_remembers_them() {
        let mut c = config(3);
        c.devmode = true;
        let mut s = snap(vec![
            running("a"),
            inst("b", InstanceState::Running, Health::Missing, 1.0),
        ]);
        s.instance_changes = vec![InstanceChange {
            id: "c".into(),
            state: InstanceState::Failed,
            health: Health::Unknown,
            time: 99.0,
        }];
        let d = decide(&c, &s);
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

        // The next decide no longer sees the change but still remembers the failure.
        let mut next = snap(vec![
            running("a"),
            inst("b", InstanceState::Running, Health::Missing, 1.0),
        ]);
        next.memo = d.memo.clone().unwrap();
        let d2 = decide(&c, &next);
        assert_eq!(launched(&d2), 0);
        assert_eq!(d2.status, EngineStatus::DevmodeFailed);
    }

    #[test]
    fn engine_destroyed_instances_are_not_devmode_failures() {
        let mut c = config(2);
        c.devmode = true;
        let mut s = snap(vec![running("a")]);
        s.instance_changes = vec![InstanceChange {
            id: "b".into(),
            state: InstanceState::Terminated,
            health: Health::Unknown,
            time: 99.0,
        }];
        let d = decide(&c, &s);
        assert_eq!(launched(&d), 1);
        assert_eq!(d.status, EngineStatus::Pending);
    }

    #[test]
    fn leaving_devmode_clears_the_memory_and_replaces() {
        let mut s = snap(vec![running("a")]);
        s.memo = 2u32.to_le_bytes().to_vec();
        let d = decide(&config(3), &s);
        assert_eq!(launched(&d), 2);
        assert_eq!(d.memo, Some(vec![]));
    }
}
