//! The `process` driver: workers are processes on this machine, each the leader of its own
//! process group, found again through `/proc` after a restart.
//!
//! A recorded launch (`requesting`) is matched against `/proc` by its instance id after a
//! crash, so a worker is adopted rather than launched a second time.

pub mod logs;
pub mod os;
mod reconcile;
mod recover;

use super::{wrong_driver, Check, Driver, DriverContext};
use crate::model::{DomainSpec, InstanceState, ProcessDeployable};
use crate::store::{InstanceRecord, StateUpdate, Store};
use crate::tokens::Tokens;
use crate::wakeups::Wakeups;
use anyhow::Result;
use nix::sys::signal::Signal;
use os::Liveness;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A deployable's grace, as a duration (a stored value out of range is clamped, never a
/// panic).
pub fn grace(p: &ProcessDeployable) -> Duration {
    crate::model::secs(p.grace_seconds.min(crate::model::GRACE_RANGE.1))
}

/// How long a destroy may take beyond the grace: the SIGKILL, and the exit being recorded.
const STOP_SLACK: Duration = Duration::from_secs(10);

/// Launches, destroys and watches the worker processes of every `process` domain.
pub struct ProcessDriver {
    tokens: Arc<Tokens>,
    heartbeat_url: Option<String>,
    store: Arc<Store>,
    wakeups: Arc<Wakeups>,
    state_dir: PathBuf,
    api_socket: PathBuf,
    logs_dir: PathBuf,
    /// See [`DriverContext::live_ids`].
    live_ids: Option<crate::provisioner::LiveIds>,
    /// See [`DriverContext::peer_env`].
    peer_env: Option<crate::provisioner::PeerEnv>,
    log_retention: logs::Retention,
}

impl ProcessDriver {
    /// Makes the driver, and the state dir's `logs/` for the workers' output.
    pub fn new(ctx: &DriverContext) -> Result<Arc<Self>> {
        let logs_dir = ctx.state_dir.join("logs");
        crate::statedir::private_subdir(&logs_dir)?;
        Ok(Arc::new(ProcessDriver {
            tokens: ctx.tokens.clone(),
            heartbeat_url: ctx.heartbeat_url.clone(),
            store: ctx.store.clone(),
            wakeups: ctx.wakeups.clone(),
            state_dir: ctx.state_dir.clone(),
            api_socket: ctx.state_dir.join("epu.sock"),
            logs_dir,
            live_ids: ctx.live_ids.clone(),
            peer_env: ctx.peer_env.clone(),
            log_retention: ctx.log_retention,
        }))
    }
}

/// The deployable of a domain this driver was given.
fn deployable(spec: &DomainSpec) -> Result<&ProcessDeployable> {
    spec.deployable
        .as_process()
        .ok_or_else(|| wrong_driver("process", spec))
}

impl Driver for Arc<ProcessDriver> {
    fn name(&self) -> &'static str {
        "process"
    }

    fn check<'a>(&'a self, spec: &'a DomainSpec) -> Check<'a> {
        let answer = match deployable(spec) {
            Ok(p) if p.command.is_empty() => Err("the deployable's command is empty".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        Box::pin(std::future::ready(answer))
    }

    fn launch(&self, inst: &InstanceRecord, spec: &DomainSpec) -> Result<()> {
        self.spawn_worker(inst, deployable(spec)?)
    }

    fn destroy(&self, inst: &InstanceRecord, spec: &DomainSpec) -> Result<()> {
        self.stop_worker(inst, grace(deployable(spec)?))
    }

    fn stop_within(&self, spec: &DomainSpec) -> Duration {
        deployable(spec).map(grace).unwrap_or_default() + STOP_SLACK
    }

    fn end_zombie(&self, inst: &InstanceRecord, _spec: &DomainSpec) -> Option<serde_json::Value> {
        let killed = self.kill_worker(inst);
        (killed > 0).then(|| serde_json::json!({"killed": killed, "pid": inst.pid}))
    }

    fn recover(&self, held: &[String]) -> Result<()> {
        self.recover_workers(held)
    }

    fn run_background(&self) {
        tokio::spawn(self.clone().reconcile_forever());
        tokio::spawn(self.clone().sweep_logs_forever());
    }
}

impl ProcessDriver {
    /// Bounds the workers' log files, every [`logs::SWEEP_EVERY`]; see [`logs`].
    async fn sweep_logs_forever(self: Arc<Self>) {
        loop {
            tokio::time::sleep(logs::SWEEP_EVERY).await;
            let me = self.clone();
            let sweep = move || {
                let live = match &me.live_ids {
                    Some(ids) => ids()?,
                    None => me
                        .store
                        .live_instances(None)?
                        .into_iter()
                        .map(|i| i.id)
                        .collect(),
                };
                logs::sweep(&me.logs_dir, &me.store, &live, me.log_retention)
            };
            match tokio::task::spawn_blocking(sweep).await {
                Ok(Ok(s)) if s != logs::Swept::default() => {
                    tracing::info!(
                        rotated = s.rotated,
                        removed = s.removed,
                        "worker logs swept"
                    )
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("sweeping the worker logs: {e:#}"),
                Err(e) => tracing::warn!("sweeping the worker logs: {e}"),
            }
        }
    }

    /// Spawns the worker of a recorded launch and starts watching it.
    fn spawn_worker(
        self: &Arc<Self>,
        inst: &InstanceRecord,
        dep: &ProcessDeployable,
    ) -> Result<()> {
        let env = self.worker_env(inst);
        let log = logs::path(&self.logs_dir, &inst.id);
        match os::spawn(dep, &env, &log) {
            Ok(spawned) => {
                let update = StateUpdate {
                    pid: Some(spawned.pid),
                    pid_start: Some(spawned.start),
                    error: None,
                };
                let mut child = spawned.child;
                if let Err(e) = self.store.advance(&inst.id, InstanceState::Started, update) {
                    // A worker the store cannot know must not run: reconciliation fails the
                    // launch once the store takes writes again, and the engine relaunches.
                    os::signal_group(spawned.pid, Signal::SIGKILL);
                    tokio::spawn(async move { child.wait().await });
                    return Err(e);
                }
                let me = self.clone();
                let id = inst.id.clone();
                tokio::spawn(async move {
                    let status = child.wait().await;
                    let how = match status {
                        Ok(s) => s.to_string(),
                        Err(e) => format!("wait failed: {e}"),
                    };
                    me.exited(&id, Some((spawned.pid, spawned.start)), &how);
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
            (os::NODE_ID_VAR.into(), inst.id.clone()),
            (
                os::STATE_DIR_VAR.into(),
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
        // For a worker that sends its heartbeats over TCP instead of the socket.
        env.push(("EPU_TOKEN".into(), self.tokens.worker_token(&inst.id)));
        if let Some(url) = &self.heartbeat_url {
            env.push(("EPU_HEARTBEAT_URL".into(), url.clone()));
        }
        if let Some(peers) = &self.peer_env {
            env.extend(peers());
        }
        for (k, v) in &inst.vars {
            env.push((format!("EPU_VAR_{}", k.to_uppercase()), v.clone()));
        }
        env
    }

    /// Destroys a worker process: SIGTERM to its process group, then SIGKILL after `grace`
    /// to whatever of the group is left, its leader gone or not. Destroying an instance that
    /// is already terminating signals it again.
    fn stop_worker(self: &Arc<Self>, inst: &InstanceRecord, grace: Duration) -> Result<()> {
        self.store
            .advance(&inst.id, InstanceState::Terminating, StateUpdate::default())?;
        let (Some(pid), Some(start)) = (inst.pid, inst.pid_start) else {
            // Never spawned: nothing to stop.
            self.store
                .advance(&inst.id, InstanceState::Terminated, StateUpdate::default())?;
            self.wakeups.wake(&inst.domain);
            return Ok(());
        };
        if os::liveness(pid, start) == Liveness::Gone {
            self.exited(&inst.id, Some((pid, start)), "already gone");
            return Ok(());
        }
        os::signal_worker(pid, start, Signal::SIGTERM);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            os::signal_worker(pid, start, Signal::SIGKILL);
        });
        Ok(())
    }

    /// Kills every process of a worker (its group, and what carries its instance id): for a
    /// worker that must not run on, such as a zombie. Returns how many were signalled.
    fn kill_worker(&self, inst: &InstanceRecord) -> usize {
        let mut killed = match (inst.pid, inst.pid_start) {
            (Some(pid), Some(start)) => os::signal_worker(pid, start, Signal::SIGKILL),
            _ => 0,
        };
        for (pid, _, _) in os::scan_worker_processes(&self.state_dir)
            .into_iter()
            .filter(|(_, _, id)| *id == inst.id)
        {
            os::kill(pid);
            killed += 1;
        }
        killed
    }

    /// A worker's process ended: terminated if it was being destroyed or drained (a draining
    /// worker that exits is done), failed otherwise.
    /// `worker` is its leader's pid and start time: what it left in its group is killed.
    fn exited(&self, id: &str, worker: Option<(i32, u64)>, how: &str) {
        if let Some((pid, start)) = worker {
            os::signal_worker(pid, start, Signal::SIGKILL);
        }
        let Ok(Some(inst)) = self.store.instance(id) else {
            return;
        };
        let result = if inst.state >= InstanceState::Terminating {
            self.store
                .advance(id, InstanceState::Terminated, StateUpdate::default())
        } else if inst.draining() {
            let detail = serde_json::json!({"reason": "exited", "how": how});
            self.store
                .event(Some(&inst.domain), Some(id), "drain-ended", detail)
                .and_then(|_| {
                    self.store
                        .advance(id, InstanceState::Terminated, StateUpdate::default())
                })
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
}
