//! The rolling refresh of a domain, make-before-break. Each step launches replacements of the
//! current deployable version, up to the refresh's batch, each with the vars of an instance it
//! is to replace. The engine is not shown a replacement until it runs healthy; then it goes
//! into service, and an instance of another version is retired in its place (drained first,
//! when the domain drains). The engine sees one instance leave and one come, and its count
//! holds. The refresh is in the store, and so are the replacements under way (`surge`), so a
//! restart picks it up where it was, and launches nothing twice.

use super::guard::healthy;
use super::{short_id, Controller};
use crate::model::{is_unhealthy, now, Health, InstanceState, Refresh, MAX_REFRESH_FAILURES};
use crate::store::{DecideView, InstanceRecord, NewInstance};

/// Whether an instance is on its way out: being stopped, or draining.
fn leaving(r: &InstanceRecord) -> bool {
    r.state >= InstanceState::Terminating || r.draining()
}

impl Controller {
    /// Follows the store's deployable: new instances run its current version.
    pub(super) fn follow_deployable(&mut self, view: &DecideView) {
        if let Some((version, deployable)) = &view.deployable {
            if *version != self.deployable_version {
                self.spec.deployable = deployable.clone();
                self.deployable_version = *version;
            }
        }
    }

    /// One step of the refresh under way, if any. Returns whether it changed anything.
    pub(super) fn refresh_step(&mut self, view: &DecideView) -> anyhow::Result<bool> {
        let Some(refresh) = view.refresh.as_ref().filter(|r| r.failed.is_none()) else {
            return Ok(false);
        };
        if self.spec.dry_run || refresh.to_version != self.deployable_version {
            return Ok(false);
        }
        let mut old: Vec<&InstanceRecord> = view
            .live
            .iter()
            .filter(|r| !leaving(r) && !r.surge && r.version != refresh.to_version)
            .collect();
        // The unhealthy go first (they would anyway), then the oldest.
        old.sort_by_key(|r| (healthy(r), r.handle));
        let in_service = view.live.iter().filter(|r| !leaving(r) && !r.surge);
        let floor = (u64::from(refresh.min_healthy_percent) * in_service.count() as u64)
            .div_ceil(100) as usize;
        let mut healthy_now = view.live.iter().filter(|r| healthy(r)).count();
        // Whether the store changed (to be read again), and whether a replacement went into
        // service (the engine is then told the whole domain: it has a handle it was not told of).
        let (mut changed, mut shown) = (false, false);
        let mut in_flight = Vec::new();
        for s in view.live.iter().filter(|r| r.surge && !leaving(r)) {
            // A replacement gone unhealthy (silent, or in error) counts as failed, and one of
            // another version (from a refresh this one replaced) is not wanted: both go.
            if is_unhealthy(s.state, s.health) || s.version != refresh.to_version {
                self.services.provisioner.destroy(s, &self.spec)?;
                changed = true;
                continue;
            }
            let ready = s.state == InstanceState::Running && s.health == Health::Ok;
            if !ready {
                in_flight.push(s);
                continue;
            }
            // The one it replaces: one of the same vars if there is one.
            let Some(at) = old
                .iter()
                .position(|o| o.vars == s.vars)
                .or((!old.is_empty()).then_some(0))
            else {
                self.services.store.put_in_service(&s.id, None)?;
                (changed, shown) = (true, true);
                continue;
            };
            let retired = old[at];
            // It joins and the retired one leaves: the healthy must stay at the floor.
            let after = healthy_now + 1 - usize::from(healthy(retired));
            if after < floor {
                in_flight.push(s);
                continue;
            }
            self.services
                .store
                .put_in_service(&s.id, Some(&retired.id))?;
            self.destroy_or_drain(retired, now())?;
            healthy_now = after;
            old.remove(at);
            (changed, shown) = (true, true);
        }
        if shown {
            if let Some(instance) = self.instance.as_mut() {
                instance.synced = None;
            }
        }
        let failed = self
            .services
            .store
            .failed_replacements(&self.spec.name, refresh.started)?;
        if failed >= MAX_REFRESH_FAILURES {
            let why = format!(
                "{failed} replacements of version {} failed (exited, or never ran healthy); \
                 fix the deployable and refresh again, or roll back with `epu domain refresh \
                 {} --rollback`",
                refresh.to_version, self.spec.name
            );
            self.services
                .store
                .end_refresh(&self.spec.name, refresh, Err(why))?;
            return Ok(true);
        }
        if old.is_empty() && in_flight.is_empty() {
            self.services
                .store
                .end_refresh(&self.spec.name, refresh, Ok(()))?;
            return Ok(true);
        }
        // Replacements for the next of the old instances, up to the batch.
        let room = (refresh.batch as usize).min(old.len());
        let new: Vec<NewInstance> = old
            .iter()
            .skip(in_flight.len())
            .take(room.saturating_sub(in_flight.len()))
            .map(|o| NewInstance {
                id: format!("i-{}", short_id()),
                launch_id: format!("l-{}", short_id()),
                vars: o.vars.clone(),
                surge: true,
            })
            .collect();
        self.launch_replacements(view, refresh, &new)?;
        Ok(changed || !new.is_empty())
    }

    fn launch_replacements(
        &self,
        view: &DecideView,
        refresh: &Refresh,
        new: &[NewInstance],
    ) -> anyhow::Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        let store = &self.services.store;
        store.record_decision(&self.spec.name, view.last_seq, None, new, None)?;
        tracing::info!(
            domain = %self.spec.name,
            "refresh to version {}: launching {} replacement(s)",
            refresh.to_version,
            new.len()
        );
        for n in new {
            if let Some(inst) = store.instance(&n.id)? {
                self.services.provisioner.launch(&inst, &self.spec)?;
            }
        }
        Ok(())
    }
}
