//! The sensor decision: replace the unhealthy, step the count the engine holds when the metric
//! crosses a threshold, then launch or trim to it.

use crate::config::Config;
use crate::{Decision, Domain, EngineStatus, Instance, Launch, Snapshot};
use engine_kit::{DetailsEntry, PoolEntry, ReadingEntry, SnapshotParts, Vars};
use serde_json::{json, Value};

/// Applies the snapshot to what the engine keeps of its domain, then decides.
pub fn decide(config: &Config, domain: &mut Domain, snapshot: &Snapshot) -> Decision {
    domain.apply(snapshot.parts());
    let decision = decide_on(config, domain, snapshot.now);
    domain.remember(decision.memo.as_deref());
    decision
}

/// The memo: the time of the last step (none yet) and the count the engine holds, as
/// `{"desired":N,"last_step":T}`. The Python build writes the same text.
fn remembered(memo: &[u8]) -> (Option<f64>, Option<u32>) {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(memo) else {
        return (None, None);
    };
    let step = m.get("last_step").and_then(Value::as_f64);
    let desired = m.get("desired").and_then(Value::as_u64);
    (step, desired.map(|d| d.min(u64::from(u32::MAX)) as u32))
}

/// The metric over the fresh readings of its sensors, and the newest of their times.
fn sample(config: &Config, domain: &Domain) -> Option<(f64, f64)> {
    let prefix = format!("{}/", config.metric);
    let mut values = Vec::new();
    let mut newest = f64::MIN;
    for r in domain.readings() {
        if !r.stale && (r.name() == config.metric || r.name().starts_with(&prefix)) {
            values.push(r.value);
            newest = newest.max(r.time);
        }
    }
    (!values.is_empty()).then(|| (config.function.apply(&values), newest))
}

fn decide_on(config: &Config, domain: &Domain, now: f64) -> Decision {
    let live = domain.instances();
    let destroy: Vec<u64> = live
        .iter()
        .filter(|i| i.unhealthy())
        .map(|i| i.handle)
        .collect();
    let mut pool: Vec<&Instance> = live
        .iter()
        .filter(|i| i.counts() && !i.unhealthy())
        .collect();
    let count = pool.len() as u32;
    let bound = |n: u32| n.min(config.max.unwrap_or(u32::MAX)).max(config.min);

    let (mut step, desired) = remembered(domain.memo());
    let mut desired = bound(desired.unwrap_or(count));
    let sampled = sample(config, domain);
    if let Some((value, newest)) = sampled {
        let cooling = step.is_some_and(|t| now - t < config.cooldown);
        // A step needs a reading newer than the last one: decides come after every instance
        // change, and each would otherwise step again on the same value.
        let news = step.is_none_or(|t| newest > t);
        if !cooling && news {
            let target = if value > config.up_threshold {
                bound(desired.saturating_add(config.up_n))
            } else if value < config.down_threshold {
                bound(desired.saturating_sub(config.down_n))
            } else {
                desired
            };
            // A step the bounds cancel is no step: the cooldown does not restart.
            if target != desired {
                (step, desired) = (Some(now), target);
            }
        }
    }

    let launches = launches(config, domain, &pool, desired.saturating_sub(count));
    let mut trim = Vec::new();
    if count > desired {
        let retirable = |i: &Instance| {
            domain
                .details(i.handle)
                .is_some_and(|d| config.retirable.iter().any(|r| r == d.id()))
        };
        // Protected instances last: the daemon would not destroy them while they are healthy.
        pool.sort_by(|a, b| {
            a.protected
                .cmp(&b.protected)
                .then(retirable(b).cmp(&retirable(a)))
                .then(a.up().cmp(&b.up()))
                .then(b.state_time.total_cmp(&a.state_time))
                .then(b.handle.cmp(&a.handle))
        });
        trim = pool
            .iter()
            .take((count - desired) as usize)
            .map(|i| i.handle)
            .collect();
    }

    let memo = json!({"last_step": step, "desired": desired})
        .to_string()
        .into_bytes();
    let settling = pool.iter().any(|i| !i.up());
    let status = if !launches.is_empty() || !destroy.is_empty() || !trim.is_empty() || settling {
        EngineStatus::Pending
    } else if sampled.is_none() {
        EngineStatus::Unknown
    } else {
        EngineStatus::Stable
    };
    Decision {
        launches,
        destroy: destroy.into_iter().chain(trim).collect(),
        next_decide_ms: None,
        memo: (memo != domain.memo()).then_some(memo),
        status,
    }
}

/// `n` launches. With `unique_key`, each takes the first of `unique_values` that no instance of
/// the pool has, as a var; the rest launch without one.
fn launches(config: &Config, domain: &Domain, pool: &[&Instance], n: u32) -> Vec<Launch> {
    let mut out = Vec::new();
    let mut left = n;
    if let Some(key) = &config.unique_key {
        let mut in_use: Vec<&str> = pool
            .iter()
            .filter_map(|i| domain.details(i.handle))
            .filter_map(|d| d.vars().iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.as_str())
            .collect();
        for value in &config.unique_values {
            if left == 0 {
                break;
            }
            if in_use.contains(&value.as_str()) {
                continue;
            }
            in_use.push(value);
            let mut vars: Vars = config
                .provisioner_vars
                .iter()
                .filter(|(k, _)| k != key)
                .cloned()
                .collect();
            vars.push((key.clone(), value.clone()));
            out.push(Launch { count: 1, vars });
            left -= 1;
        }
    }
    if left > 0 {
        out.push(Launch {
            count: left,
            vars: config.provisioner_vars.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Health, InstanceDetails, InstanceState, SensorReading};

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"{{"metric": "cpu", "scale_up_threshold": 2.0, "scale_down_threshold": 0.5,
                "minimum_vms": 1, "maximum_vms": 3{extra}}}"#
        );
        Config::parse(&text, None).unwrap()
    }

    fn inst(handle: u64, state: InstanceState) -> Instance {
        let health = if state == InstanceState::Running {
            Health::Ok
        } else {
            Health::Unknown
        };
        Instance {
            handle,
            state,
            state_time: handle as f64,
            health,
            health_time: 0.0,
            protected: false,
            draining: false,
        }
    }

    fn up(handle: u64) -> Instance {
        inst(handle, InstanceState::Running)
    }

    /// A delta at `now` with these instances (each with its vars) and cpu readings.
    fn at(now: f64, instances: Vec<(Instance, Vars)>, cpu: &[(&str, f64)]) -> Snapshot {
        let details = instances
            .iter()
            .map(|(i, vars)| InstanceDetails {
                handle: i.handle,
                id: format!("i-{}", i.handle),
                launch_id: String::new(),
                vars: vars.clone(),
            })
            .collect::<Vec<_>>();
        let sensors = cpu
            .iter()
            .map(|(name, value)| SensorReading {
                name: name.to_string(),
                value: *value,
                time: now,
                stale: false,
            })
            .collect::<Vec<_>>();
        Snapshot {
            now,
            full: false,
            instances: instances.into_iter().map(|(i, _)| i).collect(),
            details: (!details.is_empty()).then_some(details),
            sensors: (!sensors.is_empty()).then_some(sensors),
            memo: None,
        }
    }

    fn launched(d: &Decision) -> u32 {
        d.launches.iter().map(|l| l.count).sum()
    }

    /// The original `test_basic`: 1 to 3 on a high average, back to 1 on a low one.
    #[test]
    fn scales_up_to_the_maximum_and_down_to_the_minimum() {
        let c = config("");
        let mut d = Domain::default();
        let mut first = at(1.0, vec![], &[]);
        first.full = true;
        assert_eq!(launched(&decide(&c, &mut d, &first)), 1, "the minimum");
        let high = [("cpu", 3.0)];
        let got = decide(&c, &mut d, &at(2.0, vec![(up(1), vec![])], &high));
        assert_eq!(launched(&got), 1);
        let got = decide(&c, &mut d, &at(3.0, vec![(up(2), vec![])], &high));
        assert_eq!(launched(&got), 1);
        let got = decide(&c, &mut d, &at(4.0, vec![(up(3), vec![])], &high));
        assert_eq!((launched(&got), got.destroy.len()), (0, 0), "the maximum");
        assert_eq!(got.status, EngineStatus::Stable);
        let low = [("cpu", 0.33)];
        let got = decide(&c, &mut d, &at(5.0, vec![], &low));
        assert_eq!(got.destroy, [3], "the newest goes");
        let got = decide(
            &c,
            &mut d,
            &at(
                6.0,
                vec![(inst(3, InstanceState::Terminated), vec![])],
                &low,
            ),
        );
        assert_eq!(got.destroy, [2]);
        let got = decide(
            &c,
            &mut d,
            &at(
                7.0,
                vec![(inst(2, InstanceState::Terminated), vec![])],
                &low,
            ),
        );
        assert!(got.destroy.is_empty(), "the minimum holds");
    }

    #[test]
    fn one_step_per_reading_and_none_in_a_cooldown() {
        let c = config(r#", "cooldown_period": 10"#);
        let mut d = Domain::default();
        let mut s = at(100.0, vec![(up(1), vec![])], &[("cpu", 3.0)]);
        s.full = true;
        assert_eq!(launched(&decide(&c, &mut d, &s)), 1);
        // An instance change with no new reading: no second step.
        let got = decide(
            &c,
            &mut d,
            &at(
                101.0,
                vec![(inst(2, InstanceState::Requesting), vec![])],
                &[],
            ),
        );
        assert_eq!(launched(&got), 0);
        let got = decide(&c, &mut d, &at(105.0, vec![], &[("cpu", 3.0)]));
        assert_eq!(launched(&got), 0, "cooling down");
        let got = decide(&c, &mut d, &at(111.0, vec![], &[("cpu", 3.0)]));
        assert_eq!(launched(&got), 1);
    }

    #[test]
    fn no_data_holds_and_per_instance_readings_are_averaged_over_the_readings() {
        let c = config("");
        let mut d = Domain::default();
        let mut s = at(1.0, vec![(up(1), vec![]), (up(2), vec![])], &[]);
        s.full = true;
        let got = decide(&c, &mut d, &s);
        assert_eq!((launched(&got), got.destroy.len()), (0, 0));
        assert_eq!(got.status, EngineStatus::Unknown, "no data is no signal");
        // One instance reports 3.0 and the other nothing: the average is 3.0, not 1.5.
        let got = decide(&c, &mut d, &at(2.0, vec![], &[("cpu/i-1", 3.0)]));
        assert_eq!(launched(&got), 1);
    }

    #[test]
    fn failures_are_replaced_in_a_cooldown() {
        let c = config(r#", "cooldown_period": 1000"#);
        let mut d = Domain::default();
        let mut s = at(1.0, vec![(up(1), vec![]), (up(2), vec![])], &[("cpu", 3.0)]);
        s.full = true;
        assert_eq!(launched(&decide(&c, &mut d, &s)), 1);
        let got = decide(
            &c,
            &mut d,
            &at(2.0, vec![(inst(2, InstanceState::Failed), vec![])], &[]),
        );
        assert_eq!(launched(&got), 2, "the failed one and the step still owed");
    }

    #[test]
    fn a_step_the_bounds_cancel_keeps_the_cooldown_and_the_memo() {
        let c = config(r#", "cooldown_period": 100"#);
        let mut d = Domain::default();
        let pool = vec![(up(1), vec![]), (up(2), vec![]), (up(3), vec![])];
        let mut s = at(1.0, pool, &[("cpu", 3.0)]);
        s.full = true;
        s.memo = Some(br#"{"desired":3,"last_step":null}"#.to_vec());
        let got = decide(&c, &mut d, &s);
        assert_eq!(got.memo, None, "no step at the maximum");
    }

    #[test]
    fn retirable_nodes_go_first() {
        let c = config(r#", "minimum_vms": 0, "retirable_nodes": ["i-1"]"#);
        let mut d = Domain::default();
        let mut s = at(1.0, vec![(up(1), vec![]), (up(2), vec![])], &[("cpu", 0.1)]);
        s.full = true;
        assert_eq!(decide(&c, &mut d, &s).destroy, [1]);
    }

    /// The original `test_uniques`: each launch takes the next free value; a replacement reuses
    /// the value of the instance it replaces; values run out into launches without one.
    #[test]
    fn unique_values_go_to_launches_in_order() {
        let c = config(r#", "minimum_vms": 2, "unique_key": "somekey", "unique_values": [1, 2]"#);
        let mut d = Domain::default();
        let mut s = at(1.0, vec![], &[]);
        s.full = true;
        let got = decide(&c, &mut d, &s);
        let vars: Vec<_> = got
            .launches
            .iter()
            .map(|l| (l.count, l.vars.clone()))
            .collect();
        let var = |v: &str| vec![("somekey".to_string(), v.to_string())];
        assert_eq!(vars, [(1, var("1")), (1, var("2"))]);
        let got = decide(
            &c,
            &mut d,
            &at(
                2.0,
                vec![
                    (inst(1, InstanceState::Failed), var("1")),
                    (up(2), var("2")),
                ],
                &[],
            ),
        );
        assert_eq!(got.launches[0].vars, var("1"));
        let more = Config::parse(r#"{"minimum_vms": 3}"#, Some(&c)).unwrap();
        let got = decide(&more, &mut d, &at(3.0, vec![], &[]));
        assert_eq!(launched(&got), 2);
        assert!(
            got.launches.iter().any(|l| l.vars.is_empty()),
            "out of values"
        );
    }
}
