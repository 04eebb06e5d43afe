//! Recovery after a restart: the store's worker processes are found again through `/proc`
//! and adopted, and what no live instance owns is killed.

use super::os::{self, FoundWorker, Liveness};
use super::{grace, ProcessDriver};
use crate::model::{Deployable, InstanceState};
use crate::store::{InstanceRecord, StateUpdate};
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How often adopted workers (not our children) are checked for exit.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

impl ProcessDriver {
    /// Re-attaches to the workers of the store after a restart. A live worker (same pid and
    /// start time, or one `/proc` cannot tell about) is adopted; a vanished one is marked
    /// failed (or terminated, if it was being destroyed) and what it left in its group is
    /// killed; a launch that was recorded but never confirmed is matched through `/proc`; a
    /// worker whose destroy the crash cut short is destroyed again. Every process from this
    /// state dir whose instance is not live in the store is killed. Instances of `held`
    /// domains (whose stored spec is bad) are left as they are.
    pub(super) fn recover_workers(self: &Arc<Self>, held: &[String]) -> Result<()> {
        let found = os::scan_workers(&self.state_dir);
        let by_id: HashMap<&str, &FoundWorker> =
            found.iter().map(|w| (w.instance_id.as_str(), w)).collect();
        let graces: HashMap<String, Duration> = self
            .store
            .domains()?
            .into_iter()
            .filter_map(|d| match d.spec.deployable {
                Deployable::Process(p) => Some((d.spec.name, grace(&p))),
                _ => None,
            })
            .collect();
        let all_live = self.store.live_instances(None)?;
        let live: Vec<&InstanceRecord> = all_live
            .iter()
            .filter(|i| graces.contains_key(&i.domain) && !held.contains(&i.domain))
            .collect();
        for inst in live {
            let worker = match (inst.pid, inst.pid_start) {
                (Some(pid), Some(start)) => match os::liveness(pid, start) {
                    Liveness::Gone => None,
                    _ => Some((pid, start)),
                },
                (Some(_), None) => None,
                (None, _) => by_id.get(inst.id.as_str()).map(|w| (w.pid, w.start)),
            };
            match worker {
                Some((pid, start)) => {
                    if inst.pid.is_none() {
                        let update = StateUpdate {
                            pid: Some(pid),
                            pid_start: Some(start),
                            error: None,
                        };
                        self.store
                            .advance(&inst.id, InstanceState::Started, update)?;
                    }
                    self.store.event(
                        Some(&inst.domain),
                        Some(&inst.id),
                        "adopted",
                        serde_json::json!({"pid": pid}),
                    )?;
                    self.watch_adopted(inst.id.clone(), pid, start);
                    if inst.state == InstanceState::Terminating {
                        // The crash cut its destroy short (a worker may ignore SIGTERM, and
                        // its SIGKILL was due from the daemon that died): destroy it again.
                        self.stop_worker(inst, graces[&inst.domain])?;
                    }
                }
                None if inst.pid.is_none() => {
                    let why = "the launch was interrupted before the worker started";
                    self.store
                        .advance(&inst.id, InstanceState::Failed, StateUpdate::error(why))?;
                }
                None => self.exited(
                    &inst.id,
                    inst.pid.zip(inst.pid_start),
                    "gone while the daemon was down",
                ),
            }
        }
        self.kill_strays()?;
        Ok(())
    }

    /// Kills every process from this state dir whose instance is not live in the store: what
    /// a dead worker left behind, wherever it moved, as long as it kept its environment.
    /// Returns how many were killed.
    pub(super) fn kill_strays(&self) -> Result<usize> {
        // Processes first: a worker's launch is recorded before it is spawned, so every
        // process found has its instance in the store read after.
        let found = os::scan_worker_processes(&self.state_dir);
        let known: HashSet<String> = match &self.live_ids {
            Some(read) => read()?,
            None => self
                .store
                .live_instances(None)?
                .into_iter()
                .map(|i| i.id)
                .collect(),
        };
        let mut killed = 0;
        for (pid, _, id) in found {
            if known.contains(&id) {
                continue;
            }
            os::kill(pid);
            killed += 1;
            self.store.event(
                None,
                Some(&id),
                "stray-killed",
                serde_json::json!({"pid": pid}),
            )?;
        }
        Ok(killed)
    }

    /// Watches a worker that is not our child: through a pidfd, which tells its end at once,
    /// and by polling `/proc` where there is none.
    fn watch_adopted(self: &Arc<Self>, id: String, pid: i32, start: u64) {
        let me = self.clone();
        tokio::spawn(async move {
            // The pidfd is opened before the start time is checked, so it is the worker's and
            // not a later process's that took its pid.
            if let Some(fd) = os::pidfd(pid) {
                if os::liveness(pid, start) == Liveness::Alive {
                    // SAFETY: the AsyncFd owns the pidfd, which nothing else closes or
                    // replaces while it is registered.
                    if let Ok(fd) = unsafe { tokio::io::unix::AsyncFd::register(fd) } {
                        let _ = fd.readable().await;
                    }
                }
            }
            // Unknown (an unreadable `/proc`) is not an end: look again.
            while os::liveness(pid, start) != Liveness::Gone {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            me.exited(&id, Some((pid, start)), "adopted worker ended");
        });
    }
}
