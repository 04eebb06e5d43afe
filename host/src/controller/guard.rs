//! The disruption guard: what of an engine's decision the daemon holds back. A protected,
//! healthy instance is never destroyed; a domain's budget caps launches and destroys in any
//! sliding window, and keeps destroys from taking the healthy instances below a share of the
//! engine's highest target in the window. Whatever is held back is asked for again by later
//! decides, never dropped silently: the controller reports it as events and in its status.

use crate::engine::bindings::{Decision, Launch};
use crate::model::{is_unhealthy, Budget, InstanceState};
use crate::store::InstanceRecord;
use serde::Serialize;
use std::collections::VecDeque;

/// Why a destroy or a launch was held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldReason {
    /// The instance is protected and healthy.
    Protected,
    /// `max_destroys` or `max_launches` within the window.
    Budget,
    /// `min_healthy_percent`.
    MinHealthy,
}

/// What the guard held back of one decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Held {
    /// Each held destroy: the instance and why.
    pub destroys: Vec<(String, HoldReason)>,
    /// Launches held back by `max_launches`.
    pub launches: u32,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.destroys.is_empty() && self.launches == 0
    }
}

/// The guard's memory within the window: the launches and destroys carried out (kept only
/// while the budget caps them, so at most `max_launches` and `max_destroys` of each), and the
/// engine's targets as a sliding-window maximum (each target is kept only while no later one
/// is as large, so one entry while the target holds steady).
#[derive(Debug, Default)]
pub struct Guard {
    launches: VecDeque<f64>,
    destroys: VecDeque<f64>,
    targets: VecDeque<(f64, u32)>,
}

/// Whether an instance counts as healthy for `min_healthy_percent`: up, in service (not
/// draining, not a hidden replacement) and not unhealthy.
pub fn healthy(r: &InstanceRecord) -> bool {
    r.state >= InstanceState::Started
        && r.state < InstanceState::Terminating
        && !r.draining()
        && !r.surge
        && !is_unhealthy(r.state, r.health)
}

/// How many of the live instances stay after a decision: those not leaving (stopping or
/// draining), not destroyed by it, and not a refresh's replacement the engine is not shown.
pub fn staying(live: &[InstanceRecord], d: &Decision) -> usize {
    live.iter()
        .filter(|r| r.state < InstanceState::Terminating && !r.draining() && !r.surge)
        .filter(|r| !d.destroy.contains(&r.handle))
        .count()
}

impl Guard {
    /// A domain's guard, with what its decisions carried out within the budget's window (so
    /// that a restart does not reset the budget).
    pub fn seeded(store: &crate::store::Store, spec: &crate::model::DomainSpec) -> Guard {
        let mut guard = Guard::default();
        if spec.budget.is_empty() {
            return guard;
        }
        let since = crate::model::now() - spec.budget.window();
        match store.carried_out_since(&spec.name, since) {
            Ok(mut done) => {
                done.reverse();
                guard.seed(&spec.budget, done);
            }
            Err(e) => tracing::error!(domain = %spec.name, "reading the budget's window: {e:#}"),
        }
        guard
    }

    /// Remembers launches and destroys carried out before (at a restart: from the log), oldest
    /// first, as far as the budget caps them.
    pub fn seed(&mut self, budget: &Budget, done: impl IntoIterator<Item = (f64, u32, u32)>) {
        for (time, launches, destroys) in done {
            if budget.max_launches.is_some() {
                self.launches
                    .extend(std::iter::repeat_n(time, launches as usize));
            }
            if budget.max_destroys.is_some() {
                self.destroys
                    .extend(std::iter::repeat_n(time, destroys as usize));
            }
        }
    }

    fn prune(&mut self, since: f64) {
        self.launches.retain(|t| *t > since);
        self.destroys.retain(|t| *t > since);
        self.targets.retain(|(t, _)| *t > since);
    }

    /// The decision the daemon carries out, and what it holds back. `live` are the domain's
    /// live instances; the decision's destroys name their handles.
    pub fn apply(
        &mut self,
        budget: &Budget,
        live: &[InstanceRecord],
        d: &Decision,
        now: f64,
    ) -> (Decision, Held) {
        self.prune(now - budget.window());
        let mut held = Held::default();
        let find = |h: &u64| live.iter().find(|r| r.handle == *h);
        // The engine's target: what stays plus what it launches.
        let staying = staying(live, d) as u32;
        let launching: u32 = d.launches.iter().map(|l| l.count).sum();
        if budget.min_healthy_percent.is_some() {
            let target = staying + launching;
            while self.targets.back().is_some_and(|(_, t)| *t <= target) {
                self.targets.pop_back();
            }
            self.targets.push_back((now, target));
        }

        // Unhealthy instances go first: they are what a budget should let through.
        let mut destroy: Vec<u64> = d.destroy.clone();
        destroy.sort_by_key(|h| find(h).is_none_or(healthy));
        let mut kept = Vec::new();
        let mut healthy_now = live.iter().filter(|r| healthy(r)).count() as u32;
        let peak = self.targets.front().map_or(0, |(_, t)| *t);
        let floor = budget
            .min_healthy_percent
            .map_or(0, |p| (u64::from(p) * u64::from(peak)).div_ceil(100) as u32);
        let mut destroys_left = budget
            .max_destroys
            .map(|m| m.saturating_sub(self.destroys.len() as u32));
        for h in destroy {
            let Some(r) = find(&h) else {
                kept.push(h);
                continue;
            };
            let is_healthy = healthy(r);
            let reason = if r.protected && is_healthy {
                Some(HoldReason::Protected)
            } else if destroys_left == Some(0) {
                Some(HoldReason::Budget)
            } else if is_healthy && healthy_now <= floor {
                Some(HoldReason::MinHealthy)
            } else {
                None
            };
            match reason {
                Some(why) => held.destroys.push((r.id.clone(), why)),
                None => {
                    kept.push(h);
                    healthy_now -= u32::from(is_healthy);
                    if let Some(left) = destroys_left.as_mut() {
                        *left -= 1;
                    }
                }
            }
        }
        let mut launches_left = budget
            .max_launches
            .map(|m| m.saturating_sub(self.launches.len() as u32));
        let mut launches = Vec::new();
        for l in &d.launches {
            let count = launches_left.map_or(l.count, |left| l.count.min(left));
            held.launches += l.count - count;
            if let Some(left) = launches_left.as_mut() {
                *left -= count;
            }
            if count > 0 {
                launches.push(Launch {
                    count,
                    vars: l.vars.clone(),
                });
            }
        }
        if budget.max_launches.is_some() {
            let launched: u32 = launches.iter().map(|l| l.count).sum();
            self.launches
                .extend(std::iter::repeat_n(now, launched as usize));
        }
        if budget.max_destroys.is_some() {
            self.destroys.extend(std::iter::repeat_n(now, kept.len()));
        }
        let guarded = Decision {
            launches,
            destroy: kept,
            next_decide_ms: d.next_decide_ms,
            memo: d.memo.clone(),
            status: d.status,
        };
        (guarded, held)
    }

    /// When a held launch or destroy could go: as the oldest launch, destroy or target
    /// counted leaves the window.
    pub fn retry_at(&self, budget: &Budget) -> Option<f64> {
        let target = self.targets.front().map(|(t, _)| t);
        let oldest = [self.launches.front(), self.destroys.front(), target]
            .into_iter()
            .flatten()
            .copied()
            .reduce(f64::min)?;
        Some(oldest + budget.window())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bindings::EngineStatus;
    use crate::model::Health;

    fn running(n: u64) -> Vec<InstanceRecord> {
        (1..=n)
            .map(|h| InstanceRecord::for_test(h, InstanceState::Running, 0))
            .collect()
    }

    fn decision(launch: u32, destroy: Vec<u64>) -> Decision {
        Decision {
            launches: (launch > 0)
                .then(|| Launch {
                    count: launch,
                    vars: vec![],
                })
                .into_iter()
                .collect(),
            destroy,
            next_decide_ms: None,
            memo: None,
            status: EngineStatus::Unknown,
        }
    }

    #[test]
    fn a_protected_healthy_instance_is_never_destroyed_but_an_unhealthy_one_is() {
        let mut live = running(3);
        live[0].protected = true;
        live[1].protected = true;
        live[1].health = Health::Missing;
        let mut g = Guard::default();
        let (d, held) = g.apply(&Budget::default(), &live, &decision(0, vec![1, 2, 3]), 0.0);
        assert_eq!(d.destroy, vec![2, 3]);
        assert_eq!(held.destroys, vec![("i-1".into(), HoldReason::Protected)]);
    }

    #[test]
    fn max_destroys_counts_a_sliding_window_and_lets_the_rest_go_later() {
        let budget = Budget {
            max_destroys: Some(2),
            window_seconds: Some(30.0),
            ..Default::default()
        };
        let live = running(6);
        let mut g = Guard::default();
        let all: Vec<u64> = (1..=6).collect();
        let (d, held) = g.apply(&budget, &live, &decision(0, all.clone()), 0.0);
        assert_eq!((d.destroy.len(), held.destroys.len()), (2, 4));
        let (d, _) = g.apply(&budget, &live[2..], &decision(0, all[2..].to_vec()), 29.0);
        assert!(d.destroy.is_empty());
        assert_eq!(g.retry_at(&budget), Some(30.0));
        // The held ones are asked for again, and go once the first two left the window.
        let (d, held) = g.apply(&budget, &live[2..], &decision(0, all[2..].to_vec()), 30.5);
        assert_eq!((d.destroy.len(), held.destroys.len()), (2, 2));
        assert!(held.destroys.iter().all(|(_, r)| *r == HoldReason::Budget));
    }

    #[test]
    fn min_healthy_percent_keeps_a_share_of_the_highest_target_in_the_window() {
        let budget = Budget {
            min_healthy_percent: Some(50),
            window_seconds: Some(60.0),
            ..Default::default()
        };
        let live = running(6);
        let mut g = Guard::default();
        // Steady at 6, then an engine that destroys everything and launches nothing.
        g.apply(&budget, &live, &decision(0, vec![]), 0.0);
        let (d, held) = g.apply(&budget, &live, &decision(0, (1..=6).collect()), 1.0);
        assert_eq!(d.destroy.len(), 3, "{held:?}");
        assert_eq!(held.destroys.len(), 3);
        assert!(held
            .destroys
            .iter()
            .all(|(_, r)| *r == HoldReason::MinHealthy));
        // Unhealthy instances do not count, and go whatever the floor.
        let mut sick = running(4);
        sick[0].health = Health::Missing;
        let (d, _) = g.apply(&budget, &sick, &decision(0, vec![1]), 2.0);
        assert_eq!(d.destroy, vec![1]);
    }

    #[test]
    fn the_guard_s_memory_stays_small_however_many_decides() {
        let budget = Budget {
            min_healthy_percent: Some(50),
            max_destroys: Some(2),
            window_seconds: Some(86_400.0),
            ..Default::default()
        };
        let live = running(4);
        let mut g = Guard::default();
        for i in 0..100_000 {
            g.apply(&budget, &live, &decision(0, vec![]), f64::from(i) * 0.01);
        }
        assert_eq!(g.targets.len(), 1);
        assert!(g.launches.is_empty() && g.destroys.is_empty());
        // A falling target is remembered behind the peak, until the peak leaves the window.
        g.apply(&budget, &live[..2], &decision(0, vec![]), 2000.0);
        assert_eq!(g.targets.len(), 2);
        assert_eq!(g.targets.front().unwrap().1, 4);
    }

    #[test]
    fn max_launches_trims_launch_counts() {
        let budget = Budget {
            max_launches: Some(3),
            ..Default::default()
        };
        let mut g = Guard::default();
        g.seed(&budget, [(0.0, 1, 0)]);
        let (d, held) = g.apply(&budget, &[], &decision(5, vec![]), 1.0);
        assert_eq!(d.launches[0].count, 2);
        assert_eq!(held.launches, 3);
        let (d, held) = g.apply(&budget, &[], &decision(5, vec![]), 2.0);
        assert!(d.launches.is_empty());
        assert_eq!(held.launches, 5);
    }
}
