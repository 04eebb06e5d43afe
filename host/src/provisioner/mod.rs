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

use crate::api::auth::Tokens;
use crate::controller::Wakeups;
use crate::model::{Deployable, DomainSpec, InstanceState, ProcessDeployable};
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
        std::fs::create_dir_all(&logs_dir)?;
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
            Deployable::Process(p) => {
                self.destroy_process(inst, Duration::from_secs_f64(p.grace_seconds.max(0.0)))
            }
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

    /// Destroys a worker process: SIGTERM to its process group, then SIGKILL after `grace`.
    /// Destroying an instance that is already terminating signals it again.
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
    /// destroyed); a launch that was recorded but never confirmed is matched through `/proc`;
    /// a worker whose destroy the crash cut short is destroyed again.
    /// Workers from this state dir that the store does not know are killed. (The instances
    /// of `ec2` domains are recovered by their domain's poller.)
    pub fn recover(self: &Arc<Self>) -> Result<()> {
        let found = process::scan_workers(&self.state_dir);
        let by_id: HashMap<&str, &FoundWorker> =
            found.iter().map(|w| (w.instance_id.as_str(), w)).collect();
        let graces: HashMap<String, Duration> = self
            .store
            .domains()?
            .into_iter()
            .filter_map(|d| match d.spec.deployable {
                Deployable::Process(p) => Some((
                    d.spec.name,
                    Duration::from_secs_f64(p.grace_seconds.max(0.0)),
                )),
                _ => None,
            })
            .collect();
        let mut live = self.store.live_instances(None)?;
        live.retain(|i| graces.contains_key(&i.domain));
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
