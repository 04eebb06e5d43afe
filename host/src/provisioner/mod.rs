//! The instance lifecycle: launching, destroying and watching workers, and reconciling the
//! store with the processes that really exist after a restart.
//!
//! Every launch is recorded (state `requesting`, by the controller) before anything is spawned.
//! After a crash, a `requesting` instance is matched against `/proc` by its instance id, so a
//! worker is adopted rather than launched a second time.

pub mod process;

use crate::controller::Wakeups;
use crate::model::{InstanceState, ProcessDeployable};
use crate::store::{InstanceRecord, StateUpdate, Store};
use anyhow::Result;
use nix::sys::signal::Signal;
use process::FoundWorker;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often adopted workers (not our children) are checked for exit.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// Launches, destroys and watches the workers of every domain.
pub struct Provisioner {
    store: Arc<Store>,
    wakeups: Arc<Wakeups>,
    state_dir: PathBuf,
    api_socket: PathBuf,
    logs_dir: PathBuf,
}

impl Provisioner {
    pub fn new(store: Arc<Store>, wakeups: Arc<Wakeups>, state_dir: PathBuf) -> Result<Self> {
        let logs_dir = state_dir.join("logs");
        std::fs::create_dir_all(&logs_dir)?;
        Ok(Provisioner {
            api_socket: state_dir.join("epu.sock"),
            store,
            wakeups,
            state_dir,
            logs_dir,
        })
    }

    /// Spawns the worker of a recorded launch and starts watching it.
    pub fn launch(self: &Arc<Self>, inst: &InstanceRecord, dep: &ProcessDeployable) -> Result<()> {
        let env = self.worker_env(inst);
        let log = self.logs_dir.join(format!("{}.log", inst.id));
        match process::spawn(dep, &env, &log) {
            Ok(spawned) => {
                let update = StateUpdate {
                    pid: Some(spawned.pid),
                    pid_start: Some(spawned.start),
                    error: None,
                };
                self.store
                    .advance(&inst.id, InstanceState::Started, update)?;
                let me = self.clone();
                let id = inst.id.clone();
                let mut child = spawned.child;
                tokio::spawn(async move {
                    let status = child.wait().await;
                    let how = match status {
                        Ok(s) => s.to_string(),
                        Err(e) => format!("wait failed: {e}"),
                    };
                    me.exited(&id, Some(spawned.pid), &how);
                });
            }
            Err(e) => {
                self.store.advance(
                    &inst.id,
                    InstanceState::Failed,
                    StateUpdate::error(format!("{e:#}")),
                )?;
                self.wakeups.wake(&inst.domain);
            }
        }
        Ok(())
    }

    fn worker_env(&self, inst: &InstanceRecord) -> Vec<(String, String)> {
        let exe = std::env::current_exe().unwrap_or_else(|_| "epu".into());
        let mut env = vec![
            (process::NODE_ID_VAR.into(), inst.id.clone()),
            (
                process::STATE_DIR_VAR.into(),
                self.state_dir.display().to_string(),
            ),
            ("EPU_DOMAIN".into(), inst.domain.clone()),
            ("EPU_LAUNCH_ID".into(), inst.launch_id.clone()),
            (
                "EPU_API_SOCKET".into(),
                self.api_socket.display().to_string(),
            ),
            ("EPU_HEARTBEAT_PATH".into(), "/v1/heartbeat".into()),
            ("EPU_BIN".into(), exe.display().to_string()),
        ];
        for (k, v) in &inst.vars {
            env.push((format!("EPU_VAR_{}", k.to_uppercase()), v.clone()));
        }
        env
    }

    /// Destroys an instance: SIGTERM to its process group, then SIGKILL after `grace`.
    /// Destroying an instance that is already terminating signals it again.
    pub fn destroy(self: &Arc<Self>, inst: &InstanceRecord, grace: Duration) -> Result<()> {
        self.store
            .advance(&inst.id, InstanceState::Terminating, StateUpdate::default())?;
        let (Some(pid), Some(start)) = (inst.pid, inst.pid_start) else {
            // Never spawned: nothing to stop.
            self.store
                .advance(&inst.id, InstanceState::Terminated, StateUpdate::default())?;
            self.wakeups.wake(&inst.domain);
            return Ok(());
        };
        if !process::is_alive(pid, start) {
            self.exited(&inst.id, None, "already gone");
            return Ok(());
        }
        process::signal_group(pid, Signal::SIGTERM);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if process::is_alive(pid, start) {
                process::signal_group(pid, Signal::SIGKILL);
            }
        });
        Ok(())
    }

    /// A worker's process ended: terminated if it was being destroyed, failed otherwise.
    /// `reaped` is the pid of a child we just reaped: what it left in its group is killed.
    /// (For any other pid the group may be long gone and its number reused.)
    fn exited(&self, id: &str, reaped: Option<i32>, how: &str) {
        if let Some(pid) = reaped {
            process::signal_group(pid, Signal::SIGKILL);
        }
        let Ok(Some(inst)) = self.store.instance(id) else {
            return;
        };
        let result = if inst.state >= InstanceState::Terminating {
            self.store
                .advance(id, InstanceState::Terminated, StateUpdate::default())
        } else {
            let why = format!("worker exited unexpectedly ({how})");
            self.store
                .advance(id, InstanceState::Failed, StateUpdate::error(why))
        };
        if let Err(e) = result {
            tracing::error!("recording the exit of {id}: {e:#}");
        }
        self.wakeups.wake(&inst.domain);
    }

    /// Re-attaches to the workers of the store after a restart. A live worker (same pid and
    /// start time) is adopted; a vanished one is marked failed (or terminated, if it was being
    /// destroyed); a launch that was recorded but never confirmed is matched through `/proc`.
    /// Workers from this state dir that the store does not know are killed.
    pub fn recover(self: &Arc<Self>) -> Result<()> {
        let found = process::scan_workers(&self.state_dir);
        let by_id: HashMap<&str, &FoundWorker> =
            found.iter().map(|w| (w.instance_id.as_str(), w)).collect();
        let live = self.store.live_instances(None)?;
        for inst in &live {
            let worker = match (inst.pid, inst.pid_start) {
                (Some(pid), Some(start)) if process::is_alive(pid, start) => Some((pid, start)),
                (Some(_), _) => None,
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
                }
                None if inst.pid.is_none() => {
                    let why = "the launch was interrupted before the worker started";
                    self.store
                        .advance(&inst.id, InstanceState::Failed, StateUpdate::error(why))?;
                }
                None => self.exited(&inst.id, None, "gone while the daemon was down"),
            }
        }
        let known: std::collections::HashSet<&str> = live.iter().map(|i| i.id.as_str()).collect();
        for stray in found
            .iter()
            .filter(|w| !known.contains(w.instance_id.as_str()))
        {
            process::signal_group(stray.pid, Signal::SIGKILL);
            self.store.event(
                None,
                Some(&stray.instance_id),
                "stray-killed",
                serde_json::json!({"pid": stray.pid}),
            )?;
        }
        Ok(())
    }

    /// Watches a worker that is not our child by polling `/proc`.
    fn watch_adopted(self: &Arc<Self>, id: String, pid: i32, start: u64) {
        let me = self.clone();
        tokio::spawn(async move {
            while process::is_alive(pid, start) {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            me.exited(&id, None, "adopted worker ended");
        });
    }
}
