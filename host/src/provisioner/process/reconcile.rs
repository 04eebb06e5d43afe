//! Reconciliation: every few seconds the store's worker processes are held against the OS.
//! An exit the daemon saw but could not record (a full or read-only state dir, a locked store)
//! is recorded now; a launch left `requesting` because recording its spawn failed is ended (its
//! process, if any, killed) so the engine can launch again. A mismatch must be seen on two
//! passes in a row, so an exit being recorded as it happens is left to its waiter. Every few
//! passes, processes that a worker left behind after its instance ended are killed.

use super::os;
use super::ProcessDriver;
use crate::model::{Deployable, InstanceState};
use crate::store::StateUpdate;
use anyhow::Result;
use nix::sys::signal::Signal;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How often the store is held against the OS.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(2);
/// Every how many passes the environment of every process is scanned for strays: processes
/// of this state dir's workers whose instance has ended (every 10 s).
const STRAY_EVERY: u64 = 5;

impl ProcessDriver {
    /// Reconciles on an interval until the daemon stops.
    pub(super) async fn reconcile_forever(self: Arc<Self>) {
        let mut suspects = HashSet::new();
        let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
        for pass in 1u64.. {
            tick.tick().await;
            match self.reconcile(&suspects) {
                Ok(now) => suspects = now,
                Err(e) => tracing::warn!("reconciling workers with the store: {e:#}"),
            }
            if pass % STRAY_EVERY == 0 {
                let me = self.clone();
                match tokio::task::spawn_blocking(move || me.kill_strays()).await {
                    Ok(Err(e)) => tracing::warn!("looking for stray processes: {e:#}"),
                    Err(e) => tracing::warn!("looking for stray processes: {e}"),
                    Ok(Ok(_)) => {}
                }
            }
        }
    }

    /// One pass: settles what was suspect on the last pass and still is; returns this pass's
    /// suspects.
    fn reconcile(&self, last: &HashSet<String>) -> Result<HashSet<String>> {
        let processes: HashSet<String> = self
            .store
            .domains()?
            .into_iter()
            .filter(|d| matches!(d.spec.deployable, Deployable::Process(_)))
            .map(|d| d.spec.name)
            .collect();
        let mut suspects = HashSet::new();
        for inst in self.store.live_instances(None)? {
            if !processes.contains(&inst.domain) {
                continue;
            }
            // Only a definite "no such process" is gone: an unreadable `/proc` is not.
            let gone = match (inst.pid, inst.pid_start) {
                (Some(pid), Some(start)) => os::liveness(pid, start) == os::Liveness::Gone,
                _ => inst.state == InstanceState::Requesting,
            };
            if !gone {
                continue;
            }
            if !last.contains(&inst.id) {
                suspects.insert(inst.id);
            } else if inst.pid.is_some() {
                let worker = inst.pid.zip(inst.pid_start);
                self.exited(&inst.id, worker, "found gone by reconciliation");
            } else {
                let found = os::scan_workers(&self.state_dir);
                for w in found.iter().filter(|w| w.instance_id == inst.id) {
                    os::signal_group(w.pid, Signal::SIGKILL);
                }
                let why = "the launch was never recorded as started";
                self.store
                    .advance(&inst.id, InstanceState::Failed, StateUpdate::error(why))?;
                self.wakeups.wake(&inst.domain);
            }
        }
        Ok(suspects)
    }
}
