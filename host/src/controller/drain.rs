//! Drains: a domain with `drain_timeout_seconds` lets a destroyed, healthy worker finish its
//! work before it is stopped. Its heartbeat answer says `drain`; the drain ends when the worker
//! exits, says it is done (`drained`), turns unhealthy (its heartbeats stop), or its timeout
//! passes, and the destroy then goes on as any other (SIGTERM, grace, SIGKILL). The deadline is
//! in the store, so a drain survives a restart.
//!
//! A drain is taken back when the engine launches while an instance of the same vars drains:
//! the instance returns to service in place of a new one.

use super::Controller;
use crate::engine::bindings::Decision;
use crate::model::{is_unhealthy, InstanceState};
use crate::store::InstanceRecord;
use serde_json::json;

/// Why a drain ended.
fn drain_over(r: &InstanceRecord, now: f64) -> Option<&'static str> {
    let until = r.drain_until.filter(|_| r.draining())?;
    if r.drained {
        Some("drained")
    } else if is_unhealthy(r.state, r.health) {
        Some("unhealthy")
    } else if now >= until {
        Some("timeout")
    } else {
        None
    }
}

/// Whether a destroy of `r` drains first: the domain drains, and the worker is up and
/// healthy (a worker that is not has no work to finish).
fn drains_first(timeout: Option<u32>, r: &InstanceRecord) -> bool {
    timeout.is_some()
        && (InstanceState::Started..=InstanceState::Running).contains(&r.state)
        && !is_unhealthy(r.state, r.health)
}

/// When the next drain of `live` ends at the latest.
pub(super) fn next_drain_end(live: &[InstanceRecord]) -> Option<f64> {
    live.iter()
        .filter(|r| r.draining())
        .filter_map(|r| r.drain_until)
        .min_by(f64::total_cmp)
}

/// The decision without its destroys of instances that drain already (an engine of the
/// 0.3.0 contract cannot see a drain, and asks again): None when it has none.
pub(super) fn without_draining(d: &Decision, live: &[InstanceRecord]) -> Option<Decision> {
    let draining = |h: &u64| live.iter().any(|r| r.handle == *h && r.draining());
    if !d.destroy.iter().any(draining) {
        return None;
    }
    let mut d = d.clone();
    d.destroy.retain(|h| !draining(h));
    Some(d)
}

impl Controller {
    /// Ends the drains that are over, going on with their destroys. Returns whether any ended.
    pub(super) fn end_drains(&self, live: &[InstanceRecord], now: f64) -> anyhow::Result<bool> {
        let mut ended = false;
        for r in live {
            let Some(reason) = drain_over(r, now) else {
                continue;
            };
            let store = &self.services.store;
            let since = r.drain_until.unwrap_or(now) - self.drain_timeout();
            let detail = json!({"reason": reason, "drained_s": (now - since).max(0.0)});
            store.event(Some(&self.spec.name), Some(&r.id), "drain-ended", detail)?;
            self.services.provisioner.destroy(r, &self.spec)?;
            ended = true;
        }
        Ok(ended)
    }

    /// The domain's drain timeout, in seconds (0 when it does not drain).
    fn drain_timeout(&self) -> f64 {
        f64::from(self.spec.drain_timeout_seconds.unwrap_or(0))
    }

    /// Destroys an instance, or starts its drain when the domain drains.
    pub(super) fn destroy_or_drain(&self, r: &InstanceRecord, now: f64) -> anyhow::Result<()> {
        if drains_first(self.spec.drain_timeout_seconds, r) {
            self.services
                .store
                .start_drain(&r.id, now + self.drain_timeout())?;
            Ok(())
        } else {
            self.services.provisioner.destroy(r, &self.spec)
        }
    }

    /// Takes back draining instances in place of the decision's launches of the same vars
    /// (newest drain first), and takes those launches out of the decision. Returns the ids
    /// taken back. A worker that said it is done is not taken back.
    pub(super) fn take_back(
        &self,
        d: &mut Decision,
        live: &[InstanceRecord],
    ) -> anyhow::Result<Vec<String>> {
        let mut draining: Vec<&InstanceRecord> = live
            .iter()
            .filter(|r| r.draining() && !r.drained && !is_unhealthy(r.state, r.health))
            .collect();
        draining.sort_by(|a, b| {
            b.drain_until
                .unwrap_or(0.0)
                .total_cmp(&a.drain_until.unwrap_or(0.0))
        });
        let mut taken = Vec::new();
        for launch in &mut d.launches {
            while launch.count > 0 {
                let Some(i) = draining.iter().position(|r| r.vars == launch.vars) else {
                    break;
                };
                let r = draining.remove(i);
                let why = "the engine launched while it drained";
                if self.services.store.cancel_drain(&r.id, why)?.is_some() {
                    taken.push(r.id.clone());
                    launch.count -= 1;
                }
            }
        }
        d.launches.retain(|l| l.count > 0);
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Health;

    fn draining(handle: u64, until: f64) -> InstanceRecord {
        let mut r = InstanceRecord::for_test(handle, InstanceState::Running, 1);
        r.drain_until = Some(until);
        r
    }

    #[test]
    fn a_drain_ends_when_done_unhealthy_or_out_of_time() {
        let r = draining(1, 100.0);
        assert_eq!(drain_over(&r, 50.0), None);
        assert_eq!(drain_over(&r, 100.0), Some("timeout"));
        let mut done = draining(2, 100.0);
        done.drained = true;
        assert_eq!(drain_over(&done, 50.0), Some("drained"));
        let mut silent = draining(3, 100.0);
        silent.health = Health::Missing;
        assert_eq!(drain_over(&silent, 50.0), Some("unhealthy"));
        let mut stopping = draining(4, 100.0);
        stopping.state = InstanceState::Terminating;
        assert_eq!(drain_over(&stopping, 200.0), None, "already being stopped");
        let not = InstanceRecord::for_test(5, InstanceState::Running, 1);
        assert_eq!(drain_over(&not, 200.0), None);
    }

    #[test]
    fn only_up_healthy_workers_of_a_draining_domain_drain() {
        let up = InstanceRecord::for_test(1, InstanceState::Running, 1);
        assert!(drains_first(Some(30), &up));
        assert!(!drains_first(None, &up));
        let pending = InstanceRecord::for_test(2, InstanceState::Pending, 1);
        assert!(!drains_first(Some(30), &pending));
        let mut sick = up.clone();
        sick.health = Health::Missing;
        assert!(!drains_first(Some(30), &sick));
    }

    #[test]
    fn destroys_of_draining_instances_are_dropped() {
        let live = vec![
            draining(1, 100.0),
            InstanceRecord::for_test(2, InstanceState::Running, 1),
        ];
        let d = Decision {
            launches: vec![],
            destroy: vec![1, 2],
            next_decide_ms: None,
            memo: None,
            status: crate::engine::bindings::EngineStatus::Pending,
        };
        assert_eq!(without_draining(&d, &live).unwrap().destroy, vec![2]);
        assert_eq!(next_drain_end(&live), Some(100.0));
        let d2 = Decision {
            destroy: vec![2],
            ..d
        };
        assert!(without_draining(&d2, &live).is_none());
    }
}
