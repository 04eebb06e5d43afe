//! The npreserving decision: destroy the unhealthy, keep each unique served by one instance of
//! its own, then top up or trim the generic instances to N minus the uniques.

use crate::config::{Config, Vars};
use crate::memo::Memo;
use crate::{Decision, Domain, EngineStatus, Instance, InstanceState, Launch, Snapshot};
use engine_kit::{DetailsEntry, PoolEntry, SnapshotParts};
use std::collections::BTreeSet;

/// Applies the snapshot to what the engine keeps of its domain, then decides. Victims of a trim
/// are chosen deterministically: instances that are not yet running go first, then the newest.
pub fn decide(config: &Config, domain: &mut Domain, snapshot: &Snapshot) -> Decision {
    domain.apply(snapshot.parts());
    let decision = decide_on(config, domain, snapshot);
    domain.remember(decision.memo.as_deref());
    decision
}

/// The destroys of one decide, each handle once.
#[derive(Default)]
struct Destroys(Vec<u64>);

impl Destroys {
    fn add(&mut self, handle: u64) {
        if !self.0.contains(&handle) {
            self.0.push(handle);
        }
    }
    fn has(&self, handle: u64) -> bool {
        self.0.contains(&handle)
    }
}

fn decide_on(config: &Config, domain: &Domain, snapshot: &Snapshot) -> Decision {
    let live = domain.instances();
    let find = |h: u64| {
        live.binary_search_by_key(&h, |i| i.handle)
            .ok()
            .map(|n| &live[n])
    };
    let mut memo = Memo::parse(domain.memo());
    let mut destroy = Destroys::default();
    let ended_badly: BTreeSet<u64> = snapshot
        .instances
        .iter()
        .filter(|c| matches!(c.state, InstanceState::Failed | InstanceState::Rejected))
        .map(|c| c.handle)
        .collect();
    let serving_before: BTreeSet<u64> = memo.uniques.values().copied().collect();

    // A unique whose key was removed: its instance is destroyed and forgotten.
    let configured = |key: &str| config.uniques.iter().any(|(k, _)| k == key);
    memo.uniques.retain(|key, h| {
        if !configured(key) {
            if let Some(i) = find(*h).filter(|i| i.counts()) {
                destroy.add(i.handle);
            }
        }
        configured(key)
    });
    memo.failed.retain(|key| config.devmode && configured(key));
    // A unique whose instance ended or is being destroyed loses it; in devmode a failure keeps
    // its place instead of being relaunched.
    memo.uniques.retain(|key, h| {
        let kept = find(*h).is_some_and(|i| i.counts());
        if !kept && config.devmode && ended_badly.contains(h) {
            memo.failed.insert(key.clone());
        }
        kept
    });
    claim(config, domain, &mut memo);

    // The unhealthy go (devmode leaves them in place for inspection); a unique whose instance
    // goes is relaunched in the same decide.
    let mut kept_unhealthy = 0;
    for i in live.iter().filter(|i| i.unhealthy()) {
        if config.devmode {
            kept_unhealthy += usize::from(i.counts());
        } else {
            destroy.add(i.handle);
        }
    }
    memo.uniques.retain(|_, h| !destroy.has(*h));
    let mut launches: Vec<Launch> = config
        .uniques
        .iter()
        .filter(|(key, _)| !memo.uniques.contains_key(key) && !memo.failed.contains(key))
        .map(|(_, own)| Launch {
            count: 1,
            vars: config.unique_vars(own),
        })
        .collect();

    // The generic instances: the rest of the pool.
    let serving: BTreeSet<u64> = memo.uniques.values().copied().collect();
    let mut healthy: Vec<&Instance> = live
        .iter()
        .filter(|i| i.counts() && !i.unhealthy() && !serving.contains(&i.handle))
        .filter(|i| !destroy.has(i.handle))
        .collect();
    let failures = if config.devmode {
        let generic_failed = ended_badly.difference(&serving_before).count() as u32;
        memo.failures = memo.failures.saturating_add(generic_failed);
        let unhealthy_generic = live
            .iter()
            .filter(|i| i.counts() && i.unhealthy() && !serving.contains(&i.handle))
            .count();
        memo.failures as usize + unhealthy_generic
    } else {
        memo.failures = 0;
        0
    };
    let target = (config.preserve_n as usize).saturating_sub(config.uniques.len());
    let occupied = healthy.len() + failures;
    if occupied < target {
        launches.push(Launch {
            count: (target - occupied) as u32,
            vars: config.provisioner_vars.clone(),
        });
    } else if healthy.len() > target.saturating_sub(failures) {
        let excess = healthy.len() - target.saturating_sub(failures);
        // Protected instances last: the daemon would not destroy them while they are healthy.
        healthy.sort_by(|a, b| {
            a.protected
                .cmp(&b.protected)
                .then(a.up().cmp(&b.up()))
                .then(b.state_time.total_cmp(&a.state_time))
                .then(b.handle.cmp(&a.handle))
        });
        for i in healthy.iter().take(excess) {
            destroy.add(i.handle);
        }
    }

    let settling = live
        .iter()
        .any(|i| i.counts() && !i.up() && !destroy.has(i.handle));
    let devmode_failed =
        config.devmode && (failures > 0 || kept_unhealthy > 0 || !memo.failed.is_empty());
    let status = if devmode_failed {
        EngineStatus::DevmodeFailed
    } else if launches.is_empty() && destroy.0.is_empty() && !settling {
        EngineStatus::Stable
    } else {
        EngineStatus::Pending
    };
    let encoded = memo.encode();
    Decision {
        launches,
        destroy: destroy.0,
        next_decide_ms: None,
        memo: (encoded != domain.memo()).then_some(encoded),
        status,
    }
}

/// Gives each unique that has no instance one of the live instances no unique has, launched
/// with its vars: first one launched with exactly the vars it would get now, then one whose
/// vars include its own (launched before its vars changed), oldest first. This finds the
/// instance of a unique just launched, and recovers the uniques after a restart without a memo.
fn claim(config: &Config, domain: &Domain, memo: &mut Memo) {
    let mut taken: BTreeSet<u64> = memo.uniques.values().copied().collect();
    for (key, own) in &config.uniques {
        if memo.uniques.contains_key(key) || memo.failed.contains(key) {
            continue;
        }
        let want = sorted(config.unique_vars(own));
        let free = || {
            domain
                .instances()
                .iter()
                .filter(|i| i.counts() && !taken.contains(&i.handle))
                .filter_map(|i| Some((i.handle, domain.details(i.handle)?.vars())))
        };
        let exact = free().find(|(_, vars)| sorted(vars.to_vec()) == want);
        let within =
            || free().find(|(_, vars)| !own.is_empty() && own.iter().all(|v| vars.contains(v)));
        if let Some((handle, _)) = exact.or_else(within) {
            memo.uniques.insert(key.clone(), handle);
            taken.insert(handle);
        }
    }
}

fn sorted(mut vars: Vars) -> Vars {
    vars.sort();
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Health, InstanceDetails};

    fn inst(handle: u64, state: InstanceState, health: Health, time: f64) -> Instance {
        Instance {
            handle,
            state,
            state_time: time,
            health,
            health_time: time,
            protected: false,
            draining: false,
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
    fn draining_instances_are_leaving_and_are_not_destroyed_again() {
        let mut leaving = running(2);
        leaving.draining = true;
        let d = first(&config(2), &snap(vec![running(1), leaving]));
        assert_eq!(launched(&d), 1, "the draining one does not count");
        assert!(d.destroy.is_empty());
    }

    #[test]
    fn protected_instances_are_picked_last() {
        let mut kept = inst(3, InstanceState::Running, Health::Ok, 9.0);
        kept.protected = true;
        let s = snap(vec![running(1), running(2), kept]);
        let d = first(&config(1), &s);
        assert_eq!(d.destroy, vec![2, 1], "the newest unprotected ones go");
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
        let memo = d.memo.clone().expect("the failure is remembered");
        assert_eq!(Memo::parse(&memo).failures, 1);

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
        assert_eq!(d2.memo, None, "nothing new to remember");
        restarted.memo = Some(memo);
        let d3 = first(&c, &restarted);
        assert_eq!(launched(&d3), 0);
        assert_eq!(d3.memo, None, "the memo given back stands");
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

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `snapshot` with `instances`, each given with its launch vars.
    fn snap_with(instances: Vec<(Instance, Vars)>) -> Snapshot {
        let details = instances
            .iter()
            .map(|(i, v)| InstanceDetails {
                handle: i.handle,
                id: format!("i-{}", i.handle),
                launch_id: String::new(),
                vars: v.clone(),
            })
            .collect();
        let mut s = snap(instances.into_iter().map(|(i, _)| i).collect());
        s.details = Some(details);
        s
    }

    fn delta(s: Vec<(Instance, Vars)>) -> Snapshot {
        let mut s = snap_with(s);
        s.full = false;
        s
    }

    fn uniques(n: u32, list: &[(&str, &[(&str, &str)])]) -> Config {
        let text = serde_json::json!({
            "preserve_n": n,
            "unique_instances": list
                .iter()
                .map(|(k, v)| {
                    let own: serde_json::Map<String, serde_json::Value> =
                        v.iter().map(|(a, b)| (a.to_string(), serde_json::json!(b))).collect();
                    (k.to_string(), serde_json::Value::Object(own))
                })
                .collect::<serde_json::Map<_, _>>(),
        });
        Config::parse(&text.to_string(), &Config::default()).unwrap()
    }

    fn launch_vars(d: &Decision) -> Vec<Vars> {
        let mut out: Vec<Vars> = d
            .launches
            .iter()
            .flat_map(|l| std::iter::repeat_n(l.vars.clone(), l.count as usize))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn uniques_launch_with_their_vars_and_generics_fill_the_rest() {
        let c = uniques(3, &[("1", &[("akey", "u1")]), ("2", &[("akey", "u2")])]);
        let d = first(&c, &snap(vec![]));
        assert_eq!(
            launch_vars(&d),
            [vec![], vars(&[("akey", "u1")]), vars(&[("akey", "u2")])]
        );
    }

    #[test]
    fn a_lost_unique_is_replaced_with_its_vars_and_the_memo_names_its_instance() {
        let c = uniques(2, &[("1", &[("akey", "u1")])]);
        let mut domain = Domain::default();
        let d = decide(&c, &mut domain, &snap(vec![]));
        assert_eq!(launched(&d), 2);
        let d = decide(
            &c,
            &mut domain,
            &delta(vec![
                (running(1), vec![]),
                (running(2), vars(&[("akey", "u1")])),
            ]),
        );
        assert_eq!((launched(&d), d.destroy.len()), (0, 0));
        assert_eq!(d.memo.as_deref(), Some(&br#"{"uniques":{"1":2}}"#[..]));
        // The unique's instance goes unhealthy: destroyed once, replaced at once with its vars.
        let sick = inst(2, InstanceState::Running, Health::Missing, 1.0);
        let d = decide(&c, &mut domain, &delta(vec![(sick, vec![])]));
        assert_eq!(d.destroy, [2]);
        assert_eq!(launch_vars(&d), [vars(&[("akey", "u1")])]);
        // A generic going unhealthy is replaced as a generic.
        let d = decide(
            &c,
            &mut domain,
            &delta(vec![
                (
                    inst(2, InstanceState::Terminating, Health::Missing, 2.0),
                    vec![],
                ),
                (running(3), vars(&[("akey", "u1")])),
                (
                    inst(1, InstanceState::Running, Health::Missing, 2.0),
                    vec![],
                ),
            ]),
        );
        assert_eq!(d.destroy, [1]);
        assert_eq!(launch_vars(&d), [vec![]]);
        assert_eq!(d.memo.as_deref(), Some(&br#"{"uniques":{"1":3}}"#[..]));
    }

    #[test]
    fn a_removed_unique_is_destroyed_once_and_forgotten() {
        let c = uniques(2, &[("1", &[("k", "a")]), ("2", &[("k", "b")])]);
        let mut domain = Domain::default();
        let s = snap_with(vec![
            (running(1), vars(&[("k", "a")])),
            (running(2), vars(&[("k", "b")])),
        ]);
        let d = decide(&c, &mut domain, &s);
        assert_eq!((launched(&d), d.destroy.len()), (0, 0), "recovered by vars");
        let fewer = Config::parse(
            r#"{"preserve_n": 1, "unique_instances": {"1": {"k": "a"}}}"#,
            &c,
        )
        .unwrap();
        // Unique 2's instance is also unhealthy: it is destroyed once, not twice.
        let sick = inst(2, InstanceState::Running, Health::Missing, 2.0);
        let d = decide(&fewer, &mut domain, &delta(vec![(sick, vec![])]));
        assert_eq!(d.destroy, [2]);
        assert_eq!(launched(&d), 0);
        assert_eq!(d.memo.as_deref(), Some(&br#"{"uniques":{"1":1}}"#[..]));
        // Forgotten: once it is gone, nothing is relaunched for it, and it is no generic.
        let gone = inst(2, InstanceState::Terminated, Health::Unknown, 3.0);
        let d = decide(&fewer, &mut domain, &delta(vec![(gone, vec![])]));
        assert_eq!((launched(&d), d.destroy.len()), (0, 0));
        assert_eq!(d.status, EngineStatus::Stable);
    }

    #[test]
    fn changed_vars_wait_for_the_next_replacement() {
        let c = uniques(1, &[("1", &[("k", "a")])]);
        let mut domain = Domain::default();
        decide(
            &c,
            &mut domain,
            &snap_with(vec![(running(1), vars(&[("k", "a")]))]),
        );
        let changed = Config::parse(r#"{"unique_instances": {"1": {"k": "b"}}}"#, &c).unwrap();
        let d = decide(&changed, &mut domain, &delta(vec![]));
        assert_eq!(
            (launched(&d), d.destroy.len()),
            (0, 0),
            "no relaunch for new vars"
        );
        let failed = inst(1, InstanceState::Failed, Health::Unknown, 5.0);
        let d = decide(&changed, &mut domain, &delta(vec![(failed, vec![])]));
        assert_eq!(launch_vars(&d), [vars(&[("k", "b")])]);
    }

    #[test]
    fn a_new_key_launches_one_and_a_renamed_key_replaces_its_instance() {
        let c = uniques(2, &[("1", &[("k", "a")])]);
        let mut domain = Domain::default();
        decide(
            &c,
            &mut domain,
            &snap_with(vec![
                (running(1), vars(&[("k", "a")])),
                (running(2), vec![]),
            ]),
        );
        let more = Config::parse(
            r#"{"unique_instances": {"1": {"k": "a"}, "2": {"k": "b"}}}"#,
            &c,
        )
        .unwrap();
        let d = decide(&more, &mut domain, &delta(vec![]));
        assert_eq!(launch_vars(&d), [vars(&[("k", "b")])]);
        assert_eq!(d.destroy, [2], "the generic target drops to 0");
        let renamed = Config::parse(
            r#"{"unique_instances": {"1": {"k": "a"}, "3": {"k": "b"}}}"#,
            &more,
        )
        .unwrap();
        let leaving = inst(2, InstanceState::Terminating, Health::Ok, 2.0);
        let d = decide(
            &more,
            &mut domain,
            &delta(vec![(leaving, vec![]), (running(3), vars(&[("k", "b")]))]),
        );
        assert_eq!((launched(&d), d.destroy.len()), (0, 0));
        let d = decide(&renamed, &mut domain, &delta(vec![]));
        assert_eq!(d.destroy, [3], "unique 2's instance goes with its key");
        assert_eq!(launch_vars(&d), [vars(&[("k", "b")])], "and 3 gets its own");
    }

    #[test]
    fn without_a_memo_uniques_are_recovered_by_their_vars_and_the_rest_are_generic() {
        let c = uniques(3, &[("1", &[("akey", "u1")]), ("2", &[("akey", "u2")])]);
        let s = snap_with(vec![
            (running(1), vars(&[("akey", "u1")])),
            (running(2), vec![]),
        ]);
        let d = first(&c, &s);
        assert_eq!(launch_vars(&d), [vars(&[("akey", "u2")])]);
        assert!(d.destroy.is_empty());
    }

    #[test]
    fn trims_never_take_a_unique() {
        let c = uniques(1, &[("1", &[("k", "a")])]);
        let s = snap_with(vec![
            (running(1), vec![]),
            (running(2), vars(&[("k", "a")])),
            (running(3), vec![]),
        ]);
        let d = first(&c, &s);
        let mut got = d.destroy.clone();
        got.sort();
        assert_eq!(got, [1, 3]);
    }
}
