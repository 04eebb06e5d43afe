//! The queuelen decision: replace the unhealthy, keep the minimum, then follow the queue.

use crate::config::Config;
use crate::{Decision, Domain, EngineStatus, Instance, InstanceState, Launch, Snapshot};
use engine_kit::{PoolEntry, SnapshotParts};

/// The time of the reading the last scaling step was taken on, kept in the memo (an f64, little
/// endian). A step needs a reading newer than that: decides come at once after every instance
/// change, and without this rule each one would scale again on the same old queue length.
fn last_step(memo: &[u8]) -> f64 {
    memo.try_into().map(f64::from_le_bytes).unwrap_or(f64::MIN)
}

/// Applies the snapshot to what the engine keeps of its domain, then decides.
pub fn decide(c: &Config, domain: &mut Domain, s: &Snapshot) -> Decision {
    domain.apply(s.parts());
    let decision = decide_on(c, domain);
    domain.remember(decision.memo.as_deref());
    decision
}

fn decide_on(c: &Config, domain: &Domain) -> Decision {
    // The unhealthy go; the rest that count make the pool. An instance being destroyed as
    // unhealthy does not hold scaling back; one still coming up does.
    let mut destroy = Vec::new();
    let mut pool: Vec<&Instance> = Vec::new();
    let mut settling = false;
    for i in domain.instances() {
        if i.unhealthy() {
            destroy.push(i.handle);
        } else if i.counts() {
            settling |= i.state < InstanceState::Running;
            pool.push(i);
        }
    }
    let count = pool.len() as u32;
    let max = c.max_instances.unwrap_or(u32::MAX);
    let reading = domain.reading(&c.sensor).filter(|r| !r.stale);
    let new_reading = reading.filter(|r| r.time > last_step(domain.memo()));

    // Topping up to the minimum needs no reading; the step on a new reading comes in the same
    // decide, counted from the topped-up pool, unless an instance is still coming up.
    let mut launch = c.min_instances.saturating_sub(count);
    let count = count + launch;
    let mut trim = Vec::new();
    // The reading a scaling step is taken on, which the memo then keeps.
    let mut step_on = None;
    if let (false, Some(r)) = (settling, new_reading) {
        let queue = r.value;
        let mut stepped = false;
        if queue > f64::from(c.high_water) {
            let n = c.scale_step.min(max.saturating_sub(count));
            launch += n;
            stepped = n > 0;
        } else if queue > 0.0 && count == 0 {
            launch = 1.min(max);
            stepped = launch > 0;
        } else if queue < f64::from(c.low_water) && count > c.min_instances {
            // Never the last instance while work remains.
            let floor = if queue > 0.0 {
                c.min_instances.max(1)
            } else {
                c.min_instances
            };
            let n = c.scale_step.min(count.saturating_sub(floor)) as usize;
            // Protected instances last: the daemon would not destroy them while healthy.
            pool.sort_by(|a, b| {
                a.protected
                    .cmp(&b.protected)
                    .then(b.state_time.total_cmp(&a.state_time))
                    .then(b.handle.cmp(&a.handle))
            });
            trim = pool.iter().take(n).map(|i| i.handle).collect();
            stepped = n > 0;
        }
        if stepped {
            step_on = Some(r.time);
        }
    }

    let status = if launch > 0 || !destroy.is_empty() || !trim.is_empty() || settling {
        EngineStatus::Pending
    } else if reading.is_none() {
        EngineStatus::Unknown
    } else {
        EngineStatus::Stable
    };
    let launches = if launch > 0 {
        vec![Launch {
            count: launch,
            vars: c.provisioner_vars.clone(),
        }]
    } else {
        vec![]
    };
    Decision {
        launches,
        destroy: destroy.into_iter().chain(trim).collect(),
        next_decide_ms: None,
        memo: step_on.map(|t: f64| t.to_le_bytes().to_vec()),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Health, SensorReading};

    fn config(min: u32, max: Option<u32>, step: u32) -> Config {
        let mut c = Config::parse(
            r#"{"queuelen_high_water": 10, "queuelen_low_water": 3}"#,
            None,
        )
        .unwrap();
        c.min_instances = min;
        c.max_instances = max;
        c.scale_step = step;
        c
    }

    /// Decides on a fresh engine's first snapshot.
    fn decide(c: &Config, s: &Snapshot) -> Decision {
        super::decide(c, &mut Domain::default(), s)
    }

    /// An instance `handle` in `state` with `health`, which entered its state at `since`.
    fn node(handle: u64, state: InstanceState, health: Health, since: f64) -> Instance {
        Instance {
            handle,
            state,
            state_time: since,
            health,
            health_time: since,
            protected: false,
            draining: false,
        }
    }

    fn up(handle: u64, since: f64) -> Instance {
        node(handle, InstanceState::Running, Health::Ok, since)
    }

    /// A snapshot with these instances and a queue-length reading (None: no reading).
    fn at(instances: Vec<Instance>, queue: Option<(f64, bool)>) -> Snapshot {
        Snapshot {
            now: 100.0,
            full: true,
            instances,
            details: None,
            sensors: queue.map(|(value, stale)| {
                vec![SensorReading {
                    name: "queue-length".into(),
                    value,
                    time: 99.0,
                    stale,
                }]
            }),
            memo: None,
        }
    }

    fn fresh(q: f64) -> Option<(f64, bool)> {
        Some((q, false))
    }

    fn launched(d: &Decision) -> u32 {
        d.launches.iter().map(|l| l.count).sum()
    }

    #[test]
    fn tops_up_to_the_minimum_even_without_a_reading() {
        let d = decide(&config(2, None, 1), &at(vec![], None));
        assert_eq!(launched(&d), 2);
        assert_eq!(d.status, EngineStatus::Pending);
    }

    #[test]
    fn unhealthy_are_destroyed_first_and_replaced_up_to_the_minimum() {
        let s = at(
            vec![
                up(1, 1.0),
                node(2, InstanceState::Running, Health::Missing, 1.0),
                node(26, InstanceState::Terminating, Health::Zombie, 1.0),
            ],
            fresh(5.0),
        );
        let d = decide(&config(2, None, 1), &s);
        assert_eq!(d.destroy, [2, 26]);
        assert_eq!(launched(&d), 1);
    }

    #[test]
    fn a_starting_instance_holds_scaling() {
        let s = at(
            vec![
                up(1, 1.0),
                node(2, InstanceState::Started, Health::Unknown, 2.0),
            ],
            fresh(500.0),
        );
        let d = decide(&config(0, None, 1), &s);
        assert_eq!(launched(&d), 0);
        assert!(d.destroy.is_empty());
        assert_eq!(d.status, EngineStatus::Pending);
    }

    #[test]
    fn a_pending_instance_destroyed_as_unhealthy_does_not_hold_scaling() {
        let s = at(
            vec![
                up(1, 1.0),
                node(2, InstanceState::Started, Health::Missing, 2.0),
            ],
            fresh(500.0),
        );
        let d = decide(&config(0, None, 1), &s);
        assert_eq!(d.destroy, [2]);
        assert_eq!(launched(&d), 1);
    }

    #[test]
    fn above_high_water_launches_one() {
        let d = decide(&config(0, None, 1), &at(vec![up(1, 1.0)], fresh(11.0)));
        assert_eq!(launched(&d), 1);
        let d = decide(&config(0, None, 1), &at(vec![up(1, 1.0)], fresh(10.0)));
        assert_eq!(launched(&d), 0, "at high water exactly, nothing happens");
        assert_eq!(d.status, EngineStatus::Stable);
    }

    #[test]
    fn scale_step_launches_several_up_to_the_maximum() {
        let d = decide(&config(0, None, 3), &at(vec![up(1, 1.0)], fresh(50.0)));
        assert_eq!(launched(&d), 3);
        let d = decide(&config(0, Some(2), 3), &at(vec![up(1, 1.0)], fresh(50.0)));
        assert_eq!(launched(&d), 1);
        let d = decide(&config(0, Some(1), 3), &at(vec![up(1, 1.0)], fresh(50.0)));
        assert_eq!(launched(&d), 0);
    }

    #[test]
    fn work_and_no_instance_launches_one() {
        let d = decide(&config(0, None, 4), &at(vec![], fresh(1.0)));
        assert_eq!(launched(&d), 1);
        let d = decide(&config(0, None, 4), &at(vec![], fresh(0.0)));
        assert_eq!(launched(&d), 0);
        assert_eq!(d.status, EngineStatus::Stable);
    }

    #[test]
    fn below_low_water_removes_the_newest_down_to_the_minimum() {
        let pool = vec![up(1, 1.0), up(2, 3.0), up(3, 2.0)];
        let d = decide(&config(1, None, 1), &at(pool.clone(), fresh(0.0)));
        assert_eq!(d.destroy, [2]);
        assert_eq!(launched(&d), 0);
        let d = decide(&config(1, None, 5), &at(pool.clone(), fresh(0.0)));
        assert_eq!(
            d.destroy,
            [2, 3],
            "scale_step removes several, not below min"
        );
        let d = decide(&config(3, None, 1), &at(pool, fresh(0.0)));
        assert!(d.destroy.is_empty(), "at the minimum nothing is removed");
        assert_eq!(d.status, EngineStatus::Stable);
    }

    #[test]
    fn never_to_zero_while_work_remains() {
        let d = decide(&config(0, None, 1), &at(vec![up(1, 1.0)], fresh(2.0)));
        assert!(d.destroy.is_empty());
        let d = decide(
            &config(0, None, 9),
            &at(vec![up(1, 1.0), up(2, 2.0)], fresh(2.0)),
        );
        assert_eq!(d.destroy, [2]);
        let d = decide(&config(0, None, 1), &at(vec![up(1, 1.0)], fresh(0.0)));
        assert_eq!(d.destroy, [1], "an empty queue may go to zero");
    }

    #[test]
    fn a_stale_or_missing_reading_holds_the_count() {
        for queue in [Some((500.0, true)), Some((0.0, true)), None] {
            let d = decide(
                &config(1, None, 1),
                &at(vec![up(1, 1.0), up(2, 2.0)], queue),
            );
            assert_eq!(launched(&d), 0, "{queue:?}");
            assert!(d.destroy.is_empty(), "{queue:?}");
            assert_eq!(d.status, EngineStatus::Unknown);
        }
    }

    #[test]
    fn between_the_marks_is_stable_and_other_sensors_are_ignored() {
        let mut s = at(vec![up(1, 1.0)], fresh(5.0));
        s.sensors.as_mut().unwrap().push(SensorReading {
            name: "other".into(),
            value: 1e9,
            time: 99.0,
            stale: false,
        });
        let d = decide(&config(0, None, 1), &s);
        assert_eq!((launched(&d), d.destroy.len()), (0, 0));
        assert_eq!(d.status, EngineStatus::Stable);
    }

    #[test]
    fn one_step_per_new_reading() {
        let c = config(0, None, 1);
        let mut domain = Domain::default();
        let d = super::decide(&c, &mut domain, &at(vec![up(1, 1.0)], fresh(50.0)));
        assert_eq!(launched(&d), 1);
        let memo = d.memo.expect("a step is remembered");
        assert_eq!(f64::from_le_bytes(memo.clone().try_into().unwrap()), 99.0);
        // The next decide comes at once (the launch changed an instance), with no new reading.
        let mut again = at(vec![up(2, 2.0)], None);
        again.full = false;
        let d = super::decide(&c, &mut domain, &again);
        assert_eq!(launched(&d), 0, "no second step on the same reading");
        assert_eq!(d.memo, None, "the memo is kept as it is");
        // After a restart the daemon gives the memo back: still no step on that reading.
        let mut restarted = at(vec![up(1, 1.0), up(2, 2.0)], fresh(50.0));
        restarted.memo = Some(memo);
        assert_eq!(launched(&decide(&c, &restarted)), 0);
        // A newer reading allows the next step, down as well as up.
        let mut newer = at(vec![], fresh(50.0));
        newer.full = false;
        newer.sensors.as_mut().unwrap()[0].time = 100.0;
        assert_eq!(launched(&super::decide(&c, &mut domain, &newer)), 1);
        newer.sensors.as_mut().unwrap()[0].time = 101.0;
        newer.sensors.as_mut().unwrap()[0].value = 0.0;
        assert_eq!(super::decide(&c, &mut domain, &newer).destroy, [2]);
    }

    #[test]
    fn topping_up_ignores_the_step_rule_and_keeps_the_memo() {
        let mut s = at(vec![], fresh(50.0));
        s.memo = Some(99.0f64.to_le_bytes().to_vec());
        let d = decide(&config(2, None, 1), &s);
        assert_eq!(launched(&d), 2);
        assert_eq!(d.memo, None);
    }

    #[test]
    fn topping_up_and_a_step_up_come_in_one_decide() {
        let d = decide(&config(2, None, 1), &at(vec![up(1, 1.0)], fresh(50.0)));
        assert_eq!(launched(&d), 2, "one to the minimum, one for the queue");
        assert!(d.memo.is_some(), "the step is remembered");
        let d = decide(&config(2, Some(2), 1), &at(vec![], fresh(50.0)));
        assert_eq!(launched(&d), 2, "the maximum holds the step back");
        assert_eq!(d.memo, None, "no step, so none is remembered");
        let s = at(
            vec![
                up(1, 1.0),
                node(2, InstanceState::Pending, Health::Unknown, 2.0),
            ],
            fresh(50.0),
        );
        let d = decide(&config(3, None, 1), &s);
        assert_eq!(
            launched(&d),
            1,
            "an instance coming up holds the step, not the top-up"
        );
    }

    #[test]
    fn launches_carry_the_provisioner_vars() {
        let mut c = config(1, None, 1);
        c.provisioner_vars = vec![("role".into(), "worker".into())];
        let d = decide(&c, &at(vec![], None));
        assert_eq!(d.launches[0].vars, c.provisioner_vars);
    }
}
