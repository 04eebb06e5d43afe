//! One controller per domain: it decides on the engine's pulse and at once on any instance
//! change, checks each decision, records it, and has the provisioner carry it out. Controllers
//! run on the decide threads (`threads`).
//!
//! A controller owns its engine instance and runs one thing at a time, so decide, reconfigure
//! and swap never overlap for one domain. Faults are counted; once `quarantine_after` of the
//! last `fault_window` engine calls faulted, the engine is quarantined and the domain's
//! fallback runs instead, until a swap or `epu engine resume`.
//!
//! Commands wait for the controller with a deadline, and nobody holds a lock while they wait:
//! an engine call is bounded by its limits, and a controller that is told to stop carries out
//! nothing more, even if its engine call was still running.

mod backoff;
mod cycle;
mod drain;
mod engine_ops;
mod event_budget;
pub mod explain;
mod faults;
pub mod guard;
mod recording;
mod refresh;
pub mod shadow;
mod threads;
pub mod trial;

use crate::engine::bindings::EngineStatus;
use crate::engine::{EngineHost, EngineInstance, LoadedEngine};
use crate::model::DomainSpec;
use crate::provisioner::Provisioner;
use crate::sensors::{self, Pollers, SensorBoard};
use crate::store::Store;
use crate::wakeups::Wakeups;
use backoff::Backoff;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use threads::{Msg, Route};
use tokio::sync::oneshot;

pub use faults::FaultKind;
pub use threads::DecideThreads;
pub use trial::{empty_snapshot, trial_decide, TrialError};

/// The daemon's shared services, as a controller needs them.
pub struct Services {
    pub store: Arc<Store>,
    pub engines: Arc<EngineHost>,
    pub provisioner: Arc<Provisioner>,
    pub wakeups: Arc<Wakeups>,
    pub sensors: Arc<SensorBoard>,
    pub threads: DecideThreads,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The shadow thread, which runs the domains' shadow engines.
    pub shadows: shadow::ShadowRunner,
}

/// What `epu status` shows of a controller.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ControllerStatus {
    /// The engine's own status from its last decision.
    pub engine_status: Option<String>,
    pub decides: u64,
    pub last_decide: Option<f64>,
    /// The last fault, if the last decide failed.
    pub last_fault: Option<String>,
    pub last_fault_kind: Option<FaultKind>,
    pub consecutive_faults: u32,
    /// Faults among the engine's last `fault_window` calls.
    pub faults_in_window: u32,
    /// Faults by kind since the daemon started.
    pub faults: HashMap<FaultKind, u64>,
    /// Whether the engine is quarantined and the fallback runs instead.
    pub quarantined: bool,
    /// The crash-loop backoff in force: how long a change waits before it triggers a decide.
    pub backoff_ms: u64,
    /// Why the last instance that failed did (a spawn error, an exit status), while the
    /// domain is in a crash-loop backoff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Whether the engine ran past its time budget and so runs on the isolation thread, apart
    /// from the domains it could delay.
    pub isolated: bool,
    /// The instance count the last decision aims at.
    pub desired: Option<u32>,
    /// What the domain's protections and budget hold back of the last decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<guard::Held>,
}

/// One decide as recorded: the snapshot in, the decision out, and the seed of the random
/// stream the engine drew from.
pub type RecordedStep = (
    crate::engine::bindings::Snapshot,
    crate::engine::bindings::Decision,
    u64,
);

/// What a domain's engine saw and decided, with the config it ran with.
pub type Recorded = (Map<String, Value>, Vec<RecordedStep>);

/// A request to a controller, answered on its channel.
pub(super) enum Command {
    Reconfigure(
        Map<String, Value>,
        oneshot::Sender<Result<i64, CommandError>>,
    ),
    Swap(
        Arc<LoadedEngine>,
        String,
        Option<Map<String, Value>>,
        oneshot::Sender<Result<i64, CommandError>>,
    ),
    Resume(oneshot::Sender<Result<(), CommandError>>),
    Recording(oneshot::Sender<Recorded>),
    /// The shadows that run beside the engine from now on.
    Shadows(Vec<Arc<shadow::Shadow>>, oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// The handle the daemon keeps for a running controller. Clones share the controller.
#[derive(Clone)]
pub struct ControllerHandle {
    route: Route,
    pub status: Arc<Mutex<ControllerStatus>>,
    /// The last decides, explained.
    pub explained: explain::Explanations,
    /// Set when the controller is told to stop: from then on it carries out nothing.
    stopping: Arc<AtomicBool>,
    /// How long a command waits for the controller's answer.
    deadline: Duration,
}

/// Why a command to a controller did not go through. Each kind maps to its own HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The engine or the daemon's checks refused it; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The controller has stopped, or did not answer in time.
    #[error("{0}")]
    Stopped(String),
    /// The store could not keep the change (a full disk, say); nothing changed.
    #[error("{0}")]
    Store(String),
}

/// How long a command waits for a controller: a few seconds, plus what its engine calls may
/// take (a swap makes two: initialize and the canary decide).
fn command_deadline(limits: &crate::model::EngineLimits) -> Duration {
    Duration::from_secs(10) + Duration::from_millis(3 * u64::from(limits.wall_timeout_ms))
}

impl ControllerHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, CommandError> {
        let stopped = || CommandError::Stopped("the domain's controller has stopped".into());
        let (tx, rx) = oneshot::channel();
        if !self.route.send(|key| Msg::Command(key, make(tx))) {
            return Err(stopped());
        }
        match tokio::time::timeout(self.deadline, rx).await {
            Ok(answer) => answer.map_err(|_| stopped()),
            Err(_) => Err(CommandError::Stopped(format!(
                "the domain's controller did not answer within {} s (its engine may be stuck \
                 in a call); try again, or remove the domain",
                self.deadline.as_secs()
            ))),
        }
    }

    /// Applies a config change through the engine; returns the new config version, or the
    /// engine's reason for rejecting it (then nothing changed).
    pub async fn reconfigure(&self, change: Map<String, Value>) -> Result<i64, CommandError> {
        self.ask(|tx| Command::Reconfigure(change, tx)).await?
    }

    /// Validates `loaded` against the live domain (with `config` as the domain's new config, if
    /// given) and makes it the engine; returns the new engine version, or why it was refused
    /// (then the old engine runs on untouched).
    pub async fn swap(
        &self,
        loaded: Arc<LoadedEngine>,
        name: String,
        config: Option<Map<String, Value>>,
    ) -> Result<i64, CommandError> {
        self.ask(|tx| Command::Swap(loaded, name, config, tx))
            .await?
    }

    /// Lifts a quarantine: the engine gets a fresh instance and decides again.
    pub async fn resume(&self) -> Result<(), CommandError> {
        self.ask(Command::Resume).await?
    }

    /// The config and the decides the engine made since its last full snapshot (and the
    /// stretch before it), for a scenario file.
    pub async fn recording(&self) -> Result<Recorded, CommandError> {
        self.ask(Command::Recording).await
    }

    /// Sets the shadows that run beside the engine.
    pub async fn set_shadows(&self, shadows: Vec<Arc<shadow::Shadow>>) -> Result<(), CommandError> {
        self.ask(|reply| Command::Shadows(shadows, reply)).await
    }

    /// Stops the controller after its current decide and tells the engine it is dying. From
    /// the moment this is called, the controller launches and destroys nothing.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        if let Err(e) = self.ask(Command::Stop).await {
            tracing::warn!("stopping a controller: {e}");
        }
    }
}

/// Starts the controller of a domain on a decide thread. `instance` is an engine instance
/// already initialized with the domain's config, if the caller has one. Call it within the
/// daemon's runtime (the sensor pollers start there).
pub fn start(
    services: Arc<Services>,
    record: crate::store::DomainRecord,
    loaded: Arc<LoadedEngine>,
    instance: Option<EngineInstance>,
    shadows: Vec<Arc<shadow::Shadow>>,
) -> ControllerHandle {
    let status = Arc::new(Mutex::new(ControllerStatus {
        quarantined: record.quarantined,
        ..Default::default()
    }));
    let pollers = sensors::start(&services.sensors, &record.spec.name, &record.spec.sensors);
    let name = record.spec.name.clone();
    let stopping = Arc::new(AtomicBool::new(false));
    let deadline = command_deadline(&record.spec.limits);
    let guard = guard::Guard::seeded(&services.store, &record.spec);
    let explained = explain::Explanations::default();
    let controller = Controller {
        generation: services.store.generation(&name),
        services: services.clone(),
        spec: record.spec,
        loaded,
        instance: instance.map(LiveEngine::fresh),
        status: status.clone(),
        explained: explained.clone(),
        last_status: None,
        backoff: Backoff::default(),
        quarantined: record.quarantined,
        preserve_target: record.preserve_target,
        last_target: None,
        recent_failures: 0,
        last_dry_run: None,
        metrics: services.metrics.domain(&name),
        log_budget: event_budget::EventBudget::new(event_budget::LOG_LINES_PER_WINDOW),
        faults: Default::default(),
        engine_events: 0,
        stopping: stopping.clone(),
        sensor_seen: 0,
        cached: None,
        recording: Default::default(),
        shadows,
        guard,
        last_held: Default::default(),
        next_drain_end: None,
        deployable_version: record.deployable_version,
        timed_out: false,
        _pollers: pollers,
    };
    let route = services.threads.place(controller);
    let waker = route.clone();
    services.wakeups.register(
        &name,
        Box::new(move || {
            waker.send(Msg::Wake);
        }),
    );
    ControllerHandle {
        route,
        status,
        explained,
        stopping,
        deadline,
    }
}

/// The controller's engine instance, and what its snapshots have told it.
struct LiveEngine {
    instance: EngineInstance,
    /// None for a fresh instance; set once a decision is carried out.
    synced: Option<crate::contract::Synced>,
}

impl LiveEngine {
    fn fresh(instance: EngineInstance) -> LiveEngine {
        LiveEngine {
            instance,
            synced: None,
        }
    }
}

struct Controller {
    services: Arc<Services>,
    spec: DomainSpec,
    loaded: Arc<LoadedEngine>,
    /// None after a trap or a rejected reconfigure; the next call makes a fresh one.
    instance: Option<LiveEngine>,
    status: Arc<Mutex<ControllerStatus>>,
    explained: explain::Explanations,
    last_status: Option<EngineStatus>,
    backoff: Backoff,
    quarantined: bool,
    /// The count the `preserve` fallback holds while quarantined.
    preserve_target: Option<u32>,
    /// The count the last good decision aimed at.
    last_target: Option<u32>,
    /// Instances that failed since the previous decide (for the replacements metric).
    recent_failures: usize,
    /// A dry-run domain's last decision (launches, destroyed ids), recorded when it changes.
    last_dry_run: Option<(usize, Vec<String>)>,
    metrics: crate::metrics::DomainMetrics,
    log_budget: event_budget::EventBudget,
    faults: faults::FaultBook,
    /// Engine-caused events written since the last prune of old ones.
    engine_events: u32,
    /// What the guard let through lately, and what it held back of the last decision.
    guard: guard::Guard,
    last_held: guard::Held,
    /// When the next of the domain's drains ends at the latest (a decide is due then).
    next_drain_end: Option<f64>,
    /// The version of `spec.deployable`, as the store had it at the last read.
    deployable_version: i64,
    /// Set by the handle's `stop`: carry out nothing more.
    stopping: Arc<AtomicBool>,
    /// The sensor board's change counter as the last carried-out decide saw it.
    sensor_seen: u64,
    /// The domain's change counter in the store, and the last read made under it: while the
    /// counter stays, a decide reuses the read.
    generation: Arc<std::sync::atomic::AtomicU64>,
    cached: Option<Arc<crate::store::DecideView>>,
    recording: recording::Recording,
    /// The shadow engines that decide beside this one.
    shadows: Vec<Arc<shadow::Shadow>>,
    /// Set once the engine runs past its time budget; its decide thread then isolates it.
    timed_out: bool,
    /// Polls the domain's sensors for as long as the controller runs.
    _pollers: Pollers,
}

impl Controller {
    /// Runs a command; returns true when the controller has stopped.
    fn command(&mut self, command: Command) -> bool {
        match command {
            Command::Reconfigure(change, reply) => {
                let _ = reply.send(self.reconfigure(change));
            }
            Command::Swap(loaded, name, config, reply) => {
                let _ = reply.send(self.swap(loaded, name, config));
            }
            Command::Resume(reply) => {
                let _ = reply.send(self.resume());
            }
            Command::Recording(reply) => {
                let _ = reply.send((self.spec.config.clone(), self.recording.steps()));
            }
            Command::Shadows(shadows, reply) => {
                self.shadows = shadows;
                let _ = reply.send(());
            }
            Command::Stop(reply) => {
                self.stop();
                let _ = reply.send(());
                return true;
            }
        }
        false
    }

    fn stop(&mut self) {
        self.services.wakeups.unregister(&self.spec.name);
        self.services.sensors.forget(&self.spec.name);
        if let Some(live) = self.instance.take() {
            live.instance.dying();
        }
    }

    fn pulse(&self) -> Duration {
        Duration::from_millis(u64::from(self.spec.pulse_ms))
    }

    /// Whether the controller was told to stop.
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// An event the engine caused (a log line, a fault, a status change): counted, and the
    /// oldest of the domain's such events are pruned past [`KEEP_ENGINE_EVENTS`].
    fn engine_event(&mut self, kind: &str, detail: Value) {
        self.event(kind, detail);
        self.count_engine_events(1);
    }

    fn count_engine_events(&mut self, n: u32) {
        self.engine_events += n;
        if self.engine_events >= PRUNE_EVERY {
            self.engine_events = 0;
            let store = &self.services.store;
            if let Err(e) = store.prune_engine_events(&self.spec.name, KEEP_ENGINE_EVENTS) {
                tracing::error!(domain = %self.spec.name, "pruning engine events: {e:#}");
            }
        }
    }

    fn event(&self, kind: &str, detail: Value) {
        if let Err(e) = self
            .services
            .store
            .event(Some(&self.spec.name), None, kind, detail)
        {
            tracing::error!(domain = %self.spec.name, "recording a {kind} event: {e:#}");
        }
    }
}

/// The engine-caused events (log lines, faults, status-only decisions) kept per domain; older
/// ones are deleted.
pub const KEEP_ENGINE_EVENTS: usize = 5000;
/// How many engine-caused events are written between two prunes.
const PRUNE_EVERY: u32 = 500;

/// 12 hex digits of a random uuid: short enough to read, unique enough for a state dir.
fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
