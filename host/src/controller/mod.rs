//! One task per domain: it decides on the engine's pulse and at once on any instance change,
//! checks each decision, records it, and has the provisioner carry it out.
//!
//! The task owns its engine instance, so decide, reconfigure and swap never overlap for one
//! domain. Faults are counted; after `quarantine_after` in a row the engine is quarantined
//! and the domain's fallback runs instead, until a swap or `epu engine resume`.

mod backoff;
mod cycle;
mod decision;
mod engine_ops;
mod faults;
mod log_budget;
mod snapshot;

use crate::engine::bindings::EngineStatus;
use crate::engine::{EngineHost, EngineInstance, LoadedEngine};
use crate::model::DomainSpec;
use crate::provisioner::Provisioner;
use crate::sensors::{self, Pollers, SensorBoard};
use crate::store::Store;
use backoff::Backoff;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

pub use faults::FaultKind;

/// The daemon's shared services, as a controller needs them.
pub struct Services {
    pub store: Arc<Store>,
    pub engines: Arc<EngineHost>,
    pub provisioner: Arc<Provisioner>,
    pub wakeups: Arc<Wakeups>,
    pub sensors: Arc<SensorBoard>,
}

/// Wakes a domain's controller for an early decide. Wakes that arrive during a decide are
/// kept, so a change is never missed.
#[derive(Default)]
pub struct Wakeups {
    map: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakeups {
    pub fn wake(&self, domain: &str) {
        if let Some(n) = self.map.lock().unwrap().get(domain) {
            n.notify_one();
        }
    }

    fn register(&self, domain: &str) -> Arc<Notify> {
        let n = Arc::new(Notify::new());
        self.map
            .lock()
            .unwrap()
            .insert(domain.to_string(), n.clone());
        n
    }

    fn unregister(&self, domain: &str) {
        self.map.lock().unwrap().remove(domain);
    }
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
    /// Faults by kind since the daemon started.
    pub faults: HashMap<FaultKind, u64>,
    /// Whether the engine is quarantined and the fallback runs instead.
    pub quarantined: bool,
    /// The crash-loop backoff in force: how long a change waits before it triggers a decide.
    pub backoff_ms: u64,
}

/// A request to a controller, answered on its channel.
enum Command {
    Reconfigure(Map<String, Value>, oneshot::Sender<Result<i64, String>>),
    Swap(
        Arc<LoadedEngine>,
        String,
        oneshot::Sender<Result<i64, String>>,
    ),
    Resume(oneshot::Sender<Result<(), String>>),
    Stop(oneshot::Sender<()>),
}

/// The handle the daemon keeps for a running controller.
pub struct ControllerHandle {
    tx: mpsc::Sender<Command>,
    pub status: Arc<Mutex<ControllerStatus>>,
}

impl ControllerHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, String> {
        let stopped = || "the domain's controller has stopped".to_string();
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// Applies a config change through the engine; returns the new config version, or the
    /// engine's reason for rejecting it (then nothing changed).
    pub async fn reconfigure(&self, change: Map<String, Value>) -> Result<i64, String> {
        self.ask(|tx| Command::Reconfigure(change, tx)).await?
    }

    /// Validates `loaded` against the live domain and makes it the engine; returns the new
    /// engine version, or why it was refused (then the old engine runs on untouched).
    pub async fn swap(&self, loaded: Arc<LoadedEngine>, name: String) -> Result<i64, String> {
        self.ask(|tx| Command::Swap(loaded, name, tx)).await?
    }

    /// Lifts a quarantine: the engine gets a fresh instance and decides again.
    pub async fn resume(&self) -> Result<(), String> {
        self.ask(Command::Resume).await?
    }

    /// Stops the controller after its current decide and tells the engine it is dying.
    pub async fn stop(&self) {
        let _ = self.ask(Command::Stop).await;
    }
}

/// Starts the controller of a domain. `instance` is an engine instance already initialized
/// with the domain's config, if the caller has one.
pub fn start(
    services: Arc<Services>,
    record: crate::store::DomainRecord,
    loaded: Arc<LoadedEngine>,
    instance: Option<EngineInstance>,
) -> ControllerHandle {
    let (tx, rx) = mpsc::channel(16);
    let status = Arc::new(Mutex::new(ControllerStatus {
        quarantined: record.quarantined,
        ..Default::default()
    }));
    let wake = services.wakeups.register(&record.spec.name);
    let pollers = sensors::start(&services.sensors, &record.spec.name, &record.spec.sensors);
    let controller = Controller {
        services,
        spec: record.spec,
        loaded,
        instance,
        status: status.clone(),
        last_status: None,
        backoff: Backoff::default(),
        quarantined: record.quarantined,
        preserve_target: record.preserve_target,
        last_target: None,
        log_budget: Default::default(),
        sensor_seen: 0,
        _pollers: pollers,
    };
    tokio::spawn(controller.run(rx, wake));
    ControllerHandle { tx, status }
}

struct Controller {
    services: Arc<Services>,
    spec: DomainSpec,
    loaded: Arc<LoadedEngine>,
    /// None after a trap or a rejected reconfigure; the next call makes a fresh one.
    instance: Option<EngineInstance>,
    status: Arc<Mutex<ControllerStatus>>,
    last_status: Option<EngineStatus>,
    backoff: Backoff,
    quarantined: bool,
    /// The count the `preserve` fallback holds while quarantined.
    preserve_target: Option<u32>,
    /// The count the last good decision aimed at.
    last_target: Option<u32>,
    log_budget: log_budget::LogBudget,
    /// The sensor board's change counter as the last carried-out decide saw it.
    sensor_seen: u64,
    /// Polls the domain's sensors for as long as the controller runs.
    _pollers: Pollers,
}

impl Controller {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, wake: Arc<Notify>) {
        let mut next = Instant::now();
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    let delay = self.decide().await;
                    last = Instant::now();
                    next = last + delay;
                }
                // A change: decide early, but not before the crash-loop backoff allows.
                _ = wake.notified() => next = next.min(last + self.backoff.current()).max(Instant::now()),
                cmd = rx.recv() => match cmd {
                    Some(Command::Reconfigure(change, reply)) => {
                        let _ = reply.send(self.reconfigure(change).await);
                    }
                    Some(Command::Swap(loaded, name, reply)) => {
                        let _ = reply.send(self.swap(loaded, name).await);
                    }
                    Some(Command::Resume(reply)) => {
                        let _ = reply.send(self.resume());
                    }
                    Some(Command::Stop(reply)) => {
                        self.stop().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        self.stop().await;
                        return;
                    }
                },
            }
        }
    }

    async fn stop(&mut self) {
        self.services.wakeups.unregister(&self.spec.name);
        self.services.sensors.forget(&self.spec.name);
        if let Some(inst) = self.instance.take() {
            let _ = tokio::task::spawn_blocking(move || inst.dying()).await;
        }
    }

    fn pulse(&self) -> Duration {
        Duration::from_millis(u64::from(self.spec.pulse_ms))
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

/// 12 hex digits of a random uuid: short enough to read, unique enough for a state dir.
fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
