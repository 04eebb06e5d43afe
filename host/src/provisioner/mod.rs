//! The instance lifecycle: launching, destroying and watching workers, and reconciling the
//! store with the workers that really exist after a restart.
//!
//! Every launch is recorded (state `requesting`, by the controller) before its driver is
//! asked for anything, so a crash never loses a worker: each driver finds its recorded
//! launches again on restart. The drivers sit in their own folders behind [`Driver`]:
//! [`process`] runs workers as local processes, `ec2` (cargo feature `ec2`) as cloud
//! instances.

mod driver;
#[cfg(feature = "ec2")]
pub mod ec2;
pub mod process;

pub use driver::{wrong_driver, Check, Driver};

use crate::model::{Deployable, DomainSpec};
use crate::store::{InstanceRecord, Store};
use crate::tokens::Tokens;
use crate::wakeups::Wakeups;
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What every driver is made with.
pub struct DriverContext {
    pub store: Arc<Store>,
    pub wakeups: Arc<Wakeups>,
    pub tokens: Arc<Tokens>,
    pub state_dir: PathBuf,
    /// The heartbeat URL of the daemon's TCP listener, for workers on other machines.
    pub heartbeat_url: Option<String>,
    /// The ids of the live instances of every domain, where the store holds only some (a
    /// node of a cluster holds the domains it owns; its workers may belong to another node's
    /// domain now). A process of the state dir whose instance is not among them is a stray.
    pub live_ids: Option<LiveIds>,
    /// Env vars every worker gets beside its own (in a cluster: [`crate::cluster::Node::peer_env`]).
    pub peer_env: Option<PeerEnv>,
    /// How much of the process workers' logs is kept.
    pub log_retention: process::logs::Retention,
}

/// Makes the env vars of [`DriverContext::peer_env`].
pub type PeerEnv = Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

/// Reads the ids of every live instance (see [`DriverContext::live_ids`]).
pub type LiveIds = Arc<dyn Fn() -> Result<std::collections::HashSet<String>> + Send + Sync>;

/// Whether the daemon may act now; asked before every launch and destroy.
pub type Gate = Box<dyn Fn() -> bool + Send + Sync>;

/// Launches, destroys and watches the workers of every domain, each with the driver its
/// deployable names.
pub struct Provisioner {
    drivers: Vec<Box<dyn Driver>>,
    store: Arc<Store>,
    gate: std::sync::OnceLock<Gate>,
}

impl Provisioner {
    /// Makes every driver this build has.
    pub fn new(ctx: DriverContext) -> Result<Self> {
        let store = ctx.store.clone();
        let drivers: Vec<Box<dyn Driver>> = vec![
            Box::new(process::ProcessDriver::new(&ctx)?),
            #[cfg(feature = "ec2")]
            Box::new(ec2::Ec2Driver::new(&ctx)),
        ];
        Ok(Provisioner {
            drivers,
            store,
            gate: std::sync::OnceLock::new(),
        })
    }

    /// Makes every later launch and destroy ask `gate` first (a node of a cluster acts only
    /// while its lease surely holds).
    pub fn set_gate(&self, gate: Gate) {
        if self.gate.set(gate).is_err() {
            tracing::warn!("the provisioner's gate was set twice; the first stays");
        }
    }

    fn open(&self) -> Result<()> {
        match self.gate.get() {
            Some(gate) if !gate() => anyhow::bail!(
                "this node is not live in its cluster: it holds, and launches and destroys nothing"
            ),
            _ => Ok(()),
        }
    }

    /// The driver of a deployable.
    fn driver(&self, deployable: &Deployable) -> Result<&dyn Driver, String> {
        let name = deployable.driver();
        match self.drivers.iter().find(|d| d.name() == name) {
            Some(d) => Ok(d.as_ref()),
            None => Err(format!(
                "this epu was built without the {name} driver (cargo feature `{name}`)"
            )),
        }
    }

    /// Checks that a domain's deployable can be served (before the domain is created).
    pub async fn check(&self, spec: &DomainSpec) -> Result<(), String> {
        self.driver(&spec.deployable)?.check(spec).await
    }

    /// Starts what a domain's driver runs for the whole domain (the `ec2` poller).
    pub fn attach(&self, spec: &DomainSpec) {
        if let Ok(d) = self.driver(&spec.deployable) {
            d.attach(spec);
        }
    }

    /// Stops what [`Provisioner::attach`] started.
    pub fn detach(&self, domain: &str) {
        for d in &self.drivers {
            d.detach(domain);
        }
    }

    /// Starts the worker of a recorded launch of `spec`'s domain.
    pub fn launch(&self, inst: &InstanceRecord, spec: &DomainSpec) -> Result<()> {
        self.open()?;
        self.driver(&spec.deployable)
            .map_err(anyhow::Error::msg)?
            .launch(inst, spec)
    }

    /// Destroys an instance of `spec`'s domain.
    pub fn destroy(&self, inst: &InstanceRecord, spec: &DomainSpec) -> Result<()> {
        self.open()?;
        self.driver(&spec.deployable)
            .map_err(anyhow::Error::msg)?
            .destroy(inst, spec)
    }

    /// How long destroying the instances of `spec`'s domain may take, at most.
    pub fn stop_within(&self, spec: &DomainSpec) -> Duration {
        match self.driver(&spec.deployable) {
            Ok(d) => d.stop_within(spec),
            Err(_) => Duration::ZERO,
        }
    }

    /// Ends a zombie, an instance that still reports after it was destroyed, and records
    /// that. The engine cannot do it: the instance has ended, so it is no longer the
    /// engine's to destroy.
    pub fn kill_zombie(&self, inst: &InstanceRecord) {
        let Ok(Some(domain)) = self.store.domain(&inst.domain) else {
            return;
        };
        let Ok(driver) = self.driver(&domain.spec.deployable) else {
            return;
        };
        let Some(detail) = driver.end_zombie(inst, &domain.spec) else {
            return;
        };
        let event = self
            .store
            .event(Some(&inst.domain), Some(&inst.id), "zombie-killed", detail);
        if let Err(e) = event {
            tracing::error!("recording a zombie's end: {e:#}");
        }
    }

    /// Re-attaches every driver to the workers of the store after a restart; the instances
    /// of `held` domains (whose stored spec is bad) are left as they are.
    pub fn recover(&self, held: &[String]) -> Result<()> {
        self.drivers.iter().try_for_each(|d| d.recover(held))
    }

    /// Starts what the drivers run in the background (the `process` driver's
    /// reconciliation with the OS).
    pub fn run_background(&self) {
        for d in &self.drivers {
            d.run_background();
        }
    }
}
