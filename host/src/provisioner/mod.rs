//! The instance lifecycle: launching, destroying and watching workers, and reconciling the
//! store with the processes that really exist after a restart.
//!
//! Every launch is recorded (state `requesting`, by the controller) before anything is spawned.
//! After a crash, a `requesting` instance is matched against `/proc` by its instance id, so a
//! worker is adopted rather than launched a second time.

#[cfg(feature = "ec2")]
pub mod ec2;
pub mod process;
mod reconcile;

use crate::model::{Deployable, DomainSpec, InstanceState, ProcessDeployable};
use crate::store::{InstanceRecord, StateUpdate, Store};
use crate::tokens::Tokens;
use crate::wakeups::Wakeups;
use anyhow::Result;
use nix::sys::signal::Signal;
use process::{FoundWorker, Liveness};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A deployable's grace, as a duration (a stored value out of range is clamped, never a
/// panic).
pub fn grace(p: &ProcessDeployable) -> Duration {
    crate::model::secs(p.grace_seconds.min(crate::model::GRACE_RANGE.1))
}

/// How often adopted workers (not our children) are checked for exit.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// Launches, destroys and watches the workers of every domain, with the driver of each
/// domain's deployable: `process` here, `ec2` in [`ec2`].
pub struct Provisioner {
    #[cfg(feature = "ec2")]
    pub ec2: Arc<ec2::Ec2Driver>,
    tokens: Arc<Tokens>,
    heartbeat_url: Option<String>,
    store: Arc<Store>,
    wakeups: Arc<Wakeups>,
    state_dir: PathBuf,
    api_socket: PathBuf,
    logs_dir: PathBuf,
}

impl Provisioner {
    /// `heartbeat_url` is the daemon's TCP listener's, for workers on other machines.
    pub fn new(
        store: Arc<Store>,
        wakeups: Arc<Wakeups>,
        state_dir: PathBuf,
        tokens: Arc<Tokens>,
        heartbeat_url: Option<String>,
    ) -> Result<Self> {
        let logs_dir = state_dir.join("logs");
        crate::statedir::private_subdir(&logs_dir)?;
        Ok(Provisioner {
            #[cfg(feature = "ec2")]
            ec2: Arc::new(ec2::Ec2Driver::new(
                store.clone(),
                wakeups.clone(),
                tokens.clone(),
                heartbeat_url.clone(),
            )),
            tokens,
            heartbeat_url,
            api_socket: state_dir.join("epu.sock"),
            store,
            wakeups,
            state_dir,
            logs_dir,
        })
    }

    /// Checks that a domain's deployable can be served (before the domain is created).
    pub async fn check(&self, spec: &DomainSpec) -> Result<(), String> {
        match &spec.deployable {
            Deployable::Process(p) if p.command.is_empty() => {
                Err("the deployable's command is empty".into())
            }
            Deployable::Process(_) => Ok(()),
            #[cfg(feature = "ec2")]
            Deployable::Ec2(e) => self.ec2.check(e).await,
            #[cfg(not(feature = "ec2"))]
            Deployable::Ec2(_) => Err("this epu was built without the ec2 driver \
                                       (cargo feature `ec2`)"
                .into()),
        }
    }

    /// Starts what a domain's driver runs for the whole domain (the `ec2` poller).
    pub fn attach(&self, spec: &DomainSpec) {
        #[cfg(feature = "ec2")]
        if let Deployable::Ec2(e) = &spec.deployable {
            self.ec2.attach(spec, e);
        }
        let _ = spec;
    }

    /// Stops what [`Provisioner::attach`] started.
    pub fn detach(&self, domain: &str) {
        #[cfg(feature = "ec2")]
        self.ec2.detach(domain);
        let _ = domain;
    }

    /// Starts the worker of a recorded launch of `spec`'s domain.
    pub fn launch(self: &Arc<Self>, inst: &InstanceRecord, spec: &DomainSpec) -> Result<()> {
        match &spec.deployable {
            Deployable::Process(p) => self.launch_process(inst, p),
            #[cfg(feature = "ec2")]
            Deployable::Ec2(e) => {
                self.ec2.launch(inst, spec, e);
                Ok(())
            }
            #[cfg(not(feature = "ec2"))]
            Deployable::Ec2(_) => anyhow::bail!("this epu was built without the ec2 driver"),
        }
    }

    /// Destroys an instance of `spec`'s domain.
    pub fn destroy(self: &Arc<Self>, inst: &InstanceRecord, spec: &DomainSpec) -> Result<()> {
        match &spec.deployable {
            Deployable::Process(p) => self.destroy_process(inst, grace(p)),
            #[cfg(feature = "ec2")]
            Deployable::Ec2(e) => {
                self.ec2.destroy(inst, e);
                Ok(())
            }
            #[cfg(not(feature = "ec2"))]
            Deployable::Ec2(_) => anyhow::bail!("this epu was built without the ec2 driver"),
        }
    }

    /// Spawns the worker of a recorded launch and starts watching it.
    fn launch_process(
        self: &Arc<Self>,
        inst: &InstanceRecord,
        dep: &ProcessDeployable,
    ) -> Result<()> {
        let env = self.worker_env(inst);
        let log = self.logs_dir.join(format!("{}.log", inst.id));
        match process::spawn(dep, &env, &log) {
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
                    process::signal_group(spawned.pid, Signal::SIGKILL);
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
        // For a worker that sends its heartbeats over TCP instead of the socket.
        env.push(("EPU_TOKEN".into(), self.tokens.worker_token(&inst.id)));
        if let Some(url) = &self.heartbeat_url {
            env.push(("EPU_HEARTBEAT_URL".into(), url.clone()));
        }
        for (k, v) in &inst.vars {
            env.push((format!("EPU_VAR_{}", k.to_uppercase()), v.clone()));
        }
        env
    }

    /// Destroys a worker process: SIGTERM to its process group, then SIGKILL after `grace`
    /// to whatever of the group is left, its leader gone or not. Destroying an instance that
    /// is already terminating signals it again.
    fn destroy_process(self: &Arc<Self>, inst: &InstanceRecord, grace: Duration) -> Result<()> {
        self.store
            .advance(&inst.id, InstanceState::Terminating, StateUpdate::default())?;
        let (Some(pid), Some(start)) = (inst.pid, inst.pid_start) else {
            // Never spawned: nothing to stop.
            self.store
                .advance(&inst.id, InstanceState::Terminated, StateUpdate::default())?;
            self.wakeups.wake(&inst.domain);
            return Ok(());
        };
        if process::liveness(pid, start) == Liveness::Gone {
            self.exited(&inst.id, Some((pid, start)), "already gone");
            return Ok(());
        }
        process::signal_worker(pid, start, Signal::SIGTERM);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            process::signal_worker(pid, start, Signal::SIGKILL);
        });
        Ok(())
    }

    /// Kills every process of a worker (its group, and what carries its instance id): for a
    /// worker that must not run on, such as a zombie. Returns how many were signalled.
    pub fn kill_worker(&self, inst: &InstanceRecord) -> usize {
        let mut killed = match (inst.pid, inst.pid_start) {
            (Some(pid), Some(start)) => process::signal_worker(pid, start, Signal::SIGKILL),
            _ => 0,
        };
        for (pid, _, _) in process::scan_worker_processes(&self.state_dir)
            .into_iter()
            .filter(|(_, _, id)| *id == inst.id)
        {
            process::kill(pid);
            killed += 1;
        }
        killed
    }

    /// Ends a zombie, an instance that still reports after it was destroyed: its processes
    /// are killed (an `ec2` instance is terminated again), and that is recorded. The engine
    /// cannot do it: the instance has ended, so it is no longer the engine's to destroy.
    pub fn kill_zombie(self: &Arc<Self>, inst: &InstanceRecord) {
        let Ok(Some(domain)) = self.store.domain(&inst.domain) else {
            return;
        };
        let detail = match &domain.spec.deployable {
            Deployable::Process(_) => {
                let killed = self.kill_worker(inst);
                if killed == 0 {
                    return;
                }
                serde_json::json!({"killed": killed, "pid": inst.pid})
            }
            #[cfg(feature = "ec2")]
            Deployable::Ec2(e) => {
                self.ec2.terminate_again(inst, e);
                serde_json::json!({"cloud_id": inst.cloud_id})
            }
            #[cfg(not(feature = "ec2"))]
            Deployable::Ec2(_) => return,
        };
        let event = self
            .store
            .event(Some(&inst.domain), Some(&inst.id), "zombie-killed", detail);
        if let Err(e) = event {
            tracing::error!("recording a zombie's end: {e:#}");
        }
    }

    /// A worker's process ended: terminated if it was being destroyed, failed otherwise.
    /// `worker` is its leader's pid and start time: what it left in its group is killed.
    fn exited(&self, id: &str, worker: Option<(i32, u64)>, how: &str) {
        if let Some((pid, start)) = worker {
            process::signal_worker(pid, start, Signal::SIGKILL);
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
    /// start time, or one `/proc` cannot tell about) is adopted; a vanished one is marked
    /// failed (or terminated, if it was being destroyed) and what it left in its group is
    /// killed; a launch that was recorded but never confirmed is matched through `/proc`; a
    /// worker whose destroy the crash cut short is destroyed again. Every process from this
    /// state dir whose instance is not live in the store is killed. Instances of `held`
    /// domains (whose stored spec is bad) are left as they are. (The instances of `ec2`
    /// domains are recovered by their domain's poller.)
    pub fn recover(self: &Arc<Self>, held: &[String]) -> Result<()> {
        let found = process::scan_workers(&self.state_dir);
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
                (Some(pid), Some(start)) => match process::liveness(pid, start) {
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
                        self.destroy_process(inst, graces[&inst.domain])?;
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
    pub fn kill_strays(&self) -> Result<usize> {
        // Processes first: a worker's launch is recorded before it is spawned, so every
        // process found has its instance in the store read after.
        let found = process::scan_worker_processes(&self.state_dir);
        let live = self.store.live_instances(None)?;
        let known: std::collections::HashSet<&str> = live.iter().map(|i| i.id.as_str()).collect();
        let mut killed = 0;
        for (pid, _, id) in found {
            if known.contains(id.as_str()) {
                continue;
            }
            process::kill(pid);
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

    /// Watches a worker that is not our child by polling `/proc`.
    fn watch_adopted(self: &Arc<Self>, id: String, pid: i32, start: u64) {
        let me = self.clone();
        tokio::spawn(async move {
            // Unknown (an unreadable `/proc`) is not an end: look again.
            while process::liveness(pid, start) != Liveness::Gone {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            me.exited(&id, Some((pid, start)), "adopted worker ended");
        });
    }
}
