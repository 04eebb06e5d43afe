//! The daemon: one per state dir. It opens the store, recovers workers and controllers after a
//! restart, and offers the operations the API exposes.

#[cfg(feature = "cluster")]
mod clustered;
#[cfg(not(feature = "cluster"))]
#[path = "unclustered.rs"]
mod clustered;
mod deployables;
pub mod dropin;
mod engine_ops;
mod instances;
mod removal;
pub mod runs;
mod shadows;
mod startup;
mod status;

#[cfg(feature = "cluster")]
pub use clustered::host_name;
pub use status::DomainStatus;

use removal::TERMINATING;
use startup::{fd_budget, lock_state_dir};
pub use startup::{DEFAULT_MAX_CONNECTIONS, FD_RESERVE, UNIX_MAX_CONNECTIONS};

use crate::controller::{self, ControllerHandle, Services};
use crate::engine::{EngineHost, EngineInstance, LoadedEngine};
use crate::health::HealthMonitor;
use crate::model::DomainSpec;
use crate::plan::Plan;
use crate::provisioner::{DriverContext, Provisioner};
use crate::sensors::{PushError, SensorBoard};
use crate::store::Store;
use crate::wakeups::Wakeups;
use anyhow::{Context, Result};
use nix::fcntl::Flock;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// A failed operation, typed by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// A domain's controller has stopped or did not answer in time.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl OpError {
    /// A controller's answer: a refusal is `refused` (bad input, or a conflict with the
    /// domain's state), a stopped controller is unavailable, and a store failure is internal.
    fn from_command(e: controller::CommandError, refused: fn(String) -> OpError) -> OpError {
        use controller::CommandError as C;
        match e {
            C::Refused(why) => refused(why),
            C::Stopped(why) => OpError::Unavailable(why),
            C::Store(why) => OpError::Internal(anyhow::anyhow!(why)),
        }
    }
}

fn unknown_domain(name: &str) -> OpError {
    OpError::NotFound(format!("unknown domain '{name}'"))
}

fn domain_exists(name: &str) -> OpError {
    OpError::Conflict(format!("domain '{name}' already exists"))
}

/// Where a request for a domain another node owns goes.
pub struct ForwardTarget {
    /// The owner's name and TCP API address.
    pub node: String,
    pub addr: String,
    /// The cluster's token, which the owner admits.
    pub token: String,
    /// This node's name.
    pub me: String,
}

/// How a daemon is started.
#[derive(Clone, Debug, Default)]
pub struct DaemonOptions {
    /// The drop-in directory watched for engines (default: `<state dir>/plugins`).
    pub plugins_dir: Option<PathBuf>,
    /// A TCP address for the API (for workers on other machines and remote tools), which
    /// then requires a token. Port 0 picks a free port; `<state dir>/listen.addr` names it.
    pub listen: Option<String>,
    /// Serve `/metrics` on TCP without a token (for scrapers on a trusted network).
    pub metrics_open: bool,
    /// The largest engine component accepted, in bytes (default 64 MiB).
    pub max_engine_bytes: Option<u64>,
    /// The public key every engine given by spec must be signed with.
    pub require_signed: Option<PathBuf>,
    /// The most TCP connections served at once (default [`DEFAULT_MAX_CONNECTIONS`]).
    pub max_connections: Option<usize>,
    /// How much of the process workers' logs is kept.
    pub log_retention: crate::provisioner::process::logs::Retention,
    /// The cluster to join as a node (the store then holds only the domains it owns).
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::cluster::ClusterOptions>,
}

pub struct Daemon {
    pub state_dir: PathBuf,
    /// The tokens of the TCP API.
    pub tokens: Arc<crate::tokens::Tokens>,
    /// The TCP listener, until the API server takes it.
    pub tcp: std::sync::Mutex<Option<std::net::TcpListener>>,
    /// Whether `/metrics` on TCP needs no token.
    pub metrics_open: bool,
    /// The most TCP connections served at once.
    pub tcp_max_connections: usize,
    /// Rate-limits the log lines of refused TCP requests.
    pub refusals: crate::tokens::RefusalLog,
    pub services: Arc<Services>,
    pub health: Arc<HealthMonitor>,
    controllers: tokio::sync::Mutex<BTreeMap<String, ControllerHandle>>,
    /// Held by run operations (boot, terminate, clean), one at a time.
    pub(crate) run_ops: tokio::sync::Mutex<()>,
    /// Becomes true when the daemon should stop serving.
    shutdown: watch::Sender<bool>,
    /// The domains being removed, which the cluster's balance leaves alone.
    removing: tokio::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The daemon's node, in a cluster.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    cluster: Option<Arc<clustered::Node>>,
    _lock: Flock<File>,
}

impl Daemon {
    /// Opens the state dir, recovers workers, and starts a controller for every domain.
    pub async fn start(state_dir: &Path, options: DaemonOptions) -> Result<Arc<Daemon>> {
        crate::statedir::private_umask();
        let state_dir = crate::statedir::prepare(state_dir)?;
        let lock = lock_state_dir(&state_dir)?;
        let store = Arc::new(Store::open(&state_dir.join("epu.db"))?);
        let engine_options = crate::engine::HostOptions {
            max_engine_bytes: options
                .max_engine_bytes
                .unwrap_or(crate::engine::DEFAULT_MAX_ENGINE_BYTES),
            ..Default::default()
        };
        let trusted = match &options.require_signed {
            Some(path) => Some(crate::signing::TrustedKey::load(path)?),
            None => None,
        };
        let engines = Arc::new(
            EngineHost::with_options(&state_dir, engine_options)?.requiring_signatures(trusted),
        );
        // Engines that no domain uses any more (or that a crash left unrecorded) go.
        let deleted = engines.forget_unused(&store.engine_shas()?)?;
        if deleted > 0 {
            tracing::info!("deleted {deleted} unused engine file(s) from the state dir");
        }
        let wakeups = Arc::new(Wakeups::default());
        let tokens = Arc::new(crate::tokens::Tokens::load(&state_dir, None)?);
        let tcp = match &options.listen {
            Some(addr) => {
                let l = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("listening on {addr}"))?;
                l.set_nonblocking(true)?;
                let local = l.local_addr()?;
                crate::statedir::write_private(
                    &state_dir.join("listen.addr"),
                    &format!("{local}\n"),
                )?;
                Some(l)
            }
            None => {
                let _ = std::fs::remove_file(state_dir.join("listen.addr"));
                None
            }
        };
        let heartbeat_url = tcp
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| format!("http://{a}/v1/heartbeat"));
        #[cfg(feature = "cluster")]
        let (cluster, live_ids, peer_env) = match &options.cluster {
            Some(c) => {
                let listen = tcp
                    .as_ref()
                    .and_then(|l| l.local_addr().ok())
                    .map(|a| a.to_string());
                let socket = state_dir.join("epu.sock").display().to_string();
                let (node, live_ids) = clustered::join(c, &store, listen, socket).await?;
                tokens.admit_cluster(node.token.clone());
                let peers = node.clone();
                let peer_env: crate::provisioner::PeerEnv = Arc::new(move || peers.peer_env());
                (Some(node), Some(live_ids), Some(peer_env))
            }
            None => (None, None, None),
        };
        #[cfg(not(feature = "cluster"))]
        let (cluster, live_ids, peer_env): (Option<Arc<clustered::Node>>, _, _) =
            (None, None, None);
        let provisioner = Arc::new(Provisioner::new(DriverContext {
            store: store.clone(),
            wakeups: wakeups.clone(),
            tokens: tokens.clone(),
            state_dir: state_dir.clone(),
            heartbeat_url,
            live_ids,
            peer_env,
            log_retention: options.log_retention,
        })?);
        #[cfg(feature = "cluster")]
        if let Some(node) = &cluster {
            let node = Arc::downgrade(node);
            provisioner.set_gate(Box::new(move || {
                node.upgrade().is_some_and(|n| n.is_live())
            }));
        }
        let zombies = provisioner.clone();
        let health = Arc::new(HealthMonitor::new(
            store.clone(),
            wakeups.clone(),
            Box::new(move |inst| zombies.kill_zombie(inst)),
        ));
        let sensors = Arc::new(SensorBoard::new(store.clone(), wakeups.clone()));
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let writes = metrics.store_write_seconds.clone();
        store.observe_writes(move |s| writes.observe(s));
        let shadows = controller::shadow::ShadowRunner::start(engines.clone(), store.clone());
        let services = Arc::new(Services {
            store,
            engines,
            provisioner,
            wakeups,
            sensors,
            threads: controller::DecideThreads::start(),
            metrics,
            shadows,
        });
        let daemon = Arc::new(Daemon {
            state_dir,
            tokens,
            tcp: std::sync::Mutex::new(tcp),
            metrics_open: options.metrics_open,
            tcp_max_connections: fd_budget(
                options.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            ),
            refusals: Default::default(),
            services,
            health: health.clone(),
            controllers: Default::default(),
            run_ops: Default::default(),
            shutdown: watch::channel(false).0,
            removing: Default::default(),
            cluster,
            _lock: lock,
        });
        daemon.services.store.event(
            None,
            None,
            "daemon-started",
            serde_json::json!({"pid": std::process::id()}),
        )?;
        let store = daemon.services.store.clone();
        let held = store.held_domains()?;
        for (name, why) in &held {
            tracing::error!("holding domain '{name}': {why}");
            let detail = serde_json::json!({"error": why});
            store.event(Some(name), None, "domain-held", detail)?;
        }
        let held: Vec<String> = held.into_iter().map(|(n, _)| n).collect();
        daemon.services.provisioner.recover(&held)?;
        let unfinished = crate::daemon::runs::recover(&store)?;
        let terminating = store.flag(TERMINATING)?;
        let removing = store.removing_domains()?;
        let mut finish = Vec::new();
        for record in store.domains()? {
            let name = record.spec.name.clone();
            let in_terminating_run = record
                .spec
                .run
                .as_ref()
                .is_some_and(|r| unfinished.contains(r));
            if terminating || in_terminating_run || removing.contains(&name) {
                // Its removal was under way: finish it, and launch nothing.
                finish.push(name);
                continue;
            }
            let services = daemon.services.clone();
            let spec = record.spec.clone();
            let sha = record.engine_sha.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let loaded = services.engines.load(&sha)?;
                anyhow::Ok((loaded, shadows::load(&services, &spec)))
            })
            .await?;
            match loaded {
                Ok((loaded, shadows)) => {
                    daemon.services.provisioner.attach(&record.spec);
                    let handle =
                        controller::start(daemon.services.clone(), record, loaded, None, shadows);
                    daemon.controllers.lock().await.insert(name, handle);
                }
                Err(e) => {
                    daemon.services.store.event(
                        Some(&name),
                        None,
                        "engine-load-failed",
                        serde_json::json!({"error": format!("{e:#}")}),
                    )?;
                }
            }
        }
        tokio::spawn(health.run());
        daemon.services.provisioner.run_background();
        let plugins_dir = options
            .plugins_dir
            .unwrap_or_else(|| daemon.state_dir.join("plugins"));
        std::fs::create_dir_all(&plugins_dir)
            .with_context(|| format!("creating the plugins dir {}", plugins_dir.display()))?;
        tokio::spawn(crate::daemon::dropin::watch(daemon.clone(), plugins_dir));
        tokio::spawn(daemon.clone().balance_forever());
        if terminating || !unfinished.is_empty() || !finish.is_empty() {
            tokio::spawn(
                daemon
                    .clone()
                    .finish_removals(terminating, unfinished, finish),
            );
        }
        Ok(daemon)
    }

    /// Asks the daemon to stop serving; its workers keep running.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once a shutdown was requested.
    pub async fn stopping(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Tries `spec`'s engine as [`controller::trial::start`] does, off the async runtime.
    pub(crate) async fn try_engine(
        &self,
        spec: &DomainSpec,
    ) -> Result<(Arc<LoadedEngine>, EngineInstance), OpError> {
        let engines = self.services.engines.clone();
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || controller::trial::start(&engines, &spec))
            .await
            .map_err(|e| OpError::Internal(e.into()))?
            .map_err(|e| OpError::Invalid(e.to_string()))
    }

    /// Tries the engine of the plan's domain at `index`, as
    /// [`controller::trial::try_plan_domain`] does, off the async runtime.
    pub(crate) async fn try_plan_domain(&self, plan: &Plan, index: usize) -> Result<(), OpError> {
        let engines = self.services.engines.clone();
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || {
            controller::trial::try_plan_domain(&engines, &plan, index)
        })
        .await
        .map_err(|e| OpError::Internal(e.into()))?
        .map(|_| ())
        .map_err(|e| OpError::Invalid(format!("{e:#}")))
    }

    /// Validates and creates a domain: the engine must load, implement the world and accept
    /// the config before anything is stored. Compiling and initializing take no lock.
    pub async fn add_domain(&self, mut spec: DomainSpec) -> Result<(), OpError> {
        spec.check()
            .map_err(|e| OpError::Invalid(format!("{e:#}")))?;
        if !spec.placement.is_empty() && self.node_state().is_none() {
            return Err(OpError::Invalid(
                "placement (nodes, labels) applies only to a daemon in a cluster (--cluster)"
                    .into(),
            ));
        }
        self.services
            .provisioner
            .check(&spec)
            .await
            .map_err(OpError::Invalid)?;
        if self.exists(&spec.name)? || self.in_cluster(&spec.name).await? {
            return Err(domain_exists(&spec.name));
        }
        let (loaded, instance) = self.try_engine(&spec).await?;
        spec.engine = crate::engine::engine_name(&spec.engine);
        #[cfg(feature = "cluster")]
        if let Some(node) = &self.cluster {
            return self.add_to_cluster(node, &spec, &loaded).await;
        }
        let mut controllers = self.controllers.lock().await;
        if controllers.contains_key(&spec.name) || self.exists(&spec.name)? {
            return Err(domain_exists(&spec.name));
        }
        self.services.engines.keep(&loaded)?;
        self.services.store.insert_domain(&spec, &loaded.sha)?;
        let record = self
            .services
            .store
            .domain(&spec.name)?
            .ok_or_else(|| unknown_domain(&spec.name))?;
        self.services.provisioner.attach(&record.spec);
        let handle = controller::start(
            self.services.clone(),
            record,
            loaded,
            Some(instance),
            Vec::new(),
        );
        controllers.insert(spec.name, handle);
        Ok(())
    }

    /// The handle of a domain's controller, taken under the lock and used after it is let go,
    /// so that no command waits on an engine while holding the lock.
    async fn handle(&self, name: &str) -> Result<ControllerHandle, OpError> {
        let handle = self.controllers.lock().await.get(name).cloned();
        match handle {
            Some(h) => Ok(h),
            None => Err(self
                .elsewhere(name)
                .await
                .unwrap_or_else(|| unknown_domain(name))),
        }
    }

    /// Whether a domain of that name is stored, held or not.
    fn exists(&self, name: &str) -> Result<bool> {
        let store = &self.services.store;
        Ok(store.domain(name)?.is_some() || store.held_domains()?.iter().any(|(n, _)| n == name))
    }

    /// Applies a config change to a domain's engine; returns the new config version.
    pub async fn reconfigure(
        &self,
        name: &str,
        change: Map<String, Value>,
    ) -> Result<i64, OpError> {
        if change.is_empty() {
            return Err(OpError::Invalid("no config keys given".into()));
        }
        let handle = self.handle(name).await?;
        handle
            .reconfigure(change)
            .await
            .map_err(|e| OpError::from_command(e, OpError::Invalid))
    }

    /// Records a reading of a domain's pushed sensor; it is kept across restarts.
    pub fn push_reading(&self, domain: &str, sensor: &str, value: f64) -> Result<(), OpError> {
        if self.services.store.domain(domain)?.is_none() {
            return Err(unknown_domain(domain));
        }
        if !value.is_finite() {
            return Err(OpError::Invalid(format!(
                "the value must be a finite number, got {value}"
            )));
        }
        let board = &self.services.sensors;
        board.check_push(domain, sensor).map_err(|e| match e {
            PushError::Unknown(..) => OpError::NotFound(e.to_string()),
            PushError::NotPushed(..) => OpError::Invalid(e.to_string()),
        })?;
        let time = crate::model::now();
        self.services
            .store
            .save_pushed_reading(domain, sensor, value, time)?;
        board.record(domain, sensor, Ok(value), time);
        Ok(())
    }
}
