//! One task per domain: it decides on the engine's pulse and at once on any instance change,
//! checks each decision, records it, and has the provisioner carry it out.
//!
//! The task owns its engine instance, so decide and reconfigure never overlap for one domain.

mod backoff;
mod decision;
mod snapshot;

use crate::engine::bindings::{Decision, EngineStatus, LogLevel};
use crate::engine::{EngineError, EngineHost, EngineInstance, LoadedEngine};
use crate::model::{now, DomainSpec};
use crate::provisioner::Provisioner;
use crate::store::{NewInstance, Store};
use backoff::Backoff;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

/// The daemon's shared services, as a controller needs them.
pub struct Services {
    pub store: Arc<Store>,
    pub engines: Arc<EngineHost>,
    pub provisioner: Arc<Provisioner>,
    pub wakeups: Arc<Wakeups>,
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
    /// The last engine fault or error, if the last decide failed.
    pub last_fault: Option<String>,
    pub consecutive_faults: u32,
    /// The crash-loop backoff in force: how long a change waits before it triggers a decide.
    pub backoff_ms: u64,
}

enum Command {
    Reconfigure(Map<String, Value>, oneshot::Sender<Result<i64, String>>),
    Stop(oneshot::Sender<()>),
}

/// The handle the daemon keeps for a running controller.
pub struct ControllerHandle {
    tx: mpsc::Sender<Command>,
    pub status: Arc<Mutex<ControllerStatus>>,
}

impl ControllerHandle {
    /// Applies a config change through the engine; returns the new config version, or the
    /// engine's reason for rejecting it (then nothing changed).
    pub async fn reconfigure(&self, change: Map<String, Value>) -> Result<i64, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Reconfigure(change, tx))
            .await
            .map_err(|_| "the domain's controller has stopped".to_string())?;
        rx.await
            .map_err(|_| "the domain's controller has stopped".to_string())?
    }

    /// Stops the controller after its current decide and tells the engine it is dying.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Starts the controller of a domain. `instance` is an engine instance already initialized
/// with the domain's config, if the caller has one.
pub fn start(
    services: Arc<Services>,
    spec: DomainSpec,
    loaded: Arc<LoadedEngine>,
    instance: Option<EngineInstance>,
) -> ControllerHandle {
    let (tx, rx) = mpsc::channel(16);
    let status = Arc::new(Mutex::new(ControllerStatus::default()));
    let wake = services.wakeups.register(&spec.name);
    let controller = Controller {
        services,
        spec,
        loaded,
        instance,
        status: status.clone(),
        last_status: None,
        backoff: Backoff::default(),
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

    fn update_backoff(&mut self, records: &[crate::store::InstanceRecord], last_seq: i64) {
        if let Some(failures) = self.backoff.observe(records, last_seq, self.pulse()) {
            let ms = self.backoff.current().as_millis() as u64;
            self.event(
                "crash-loop-backoff",
                json!({"fast_failures": failures, "backoff_ms": ms}),
            );
        }
        self.status.lock().unwrap().backoff_ms = self.backoff.current().as_millis() as u64;
    }

    async fn stop(&mut self) {
        self.services.wakeups.unregister(&self.spec.name);
        if let Some(inst) = self.instance.take() {
            let _ = tokio::task::spawn_blocking(move || inst.dying()).await;
        }
    }

    fn pulse(&self) -> Duration {
        Duration::from_millis(u64::from(self.spec.pulse_ms))
    }

    /// Runs `f` on the engine instance off the async runtime, making the instance first if
    /// there is none. The instance is kept unless the call trapped.
    async fn with_engine<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut EngineInstance) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let existing = self.instance.take();
        let engines = self.services.engines.clone();
        let loaded = self.loaded.clone();
        let config = Value::Object(self.spec.config.clone()).to_string();
        let (inst, result, logs) = tokio::task::spawn_blocking(move || {
            let mut inst = match existing {
                Some(i) => i,
                None => match engines.instantiate(&loaded, &config) {
                    Ok(i) => i,
                    Err(e) => return (None, Err(e), (Vec::new(), 0)),
                },
            };
            let result = f(&mut inst);
            let logs = inst.take_logs();
            let keep = !matches!(result, Err(EngineError::Trap(_)));
            (keep.then_some(inst), result, logs)
        })
        .await
        .unwrap_or_else(|e| {
            (
                None,
                Err(EngineError::Trap(format!("engine task failed: {e}"))),
                (Vec::new(), 0),
            )
        });
        self.instance = inst;
        self.record_logs(logs);
        result
    }

    fn record_logs(&self, (lines, dropped): (Vec<(LogLevel, String)>, usize)) {
        for (level, message) in lines {
            let level = format!("{level:?}").to_lowercase();
            self.event("engine-log", json!({"level": level, "message": message}));
        }
        if dropped > 0 {
            self.event(
                "engine-log",
                json!({"level": "warn", "message": format!("{dropped} more log lines dropped")}),
            );
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

    /// Records a failed decide. The memo and the instances stay as they were.
    fn fault(&self, kind: &str, message: String) {
        self.event(kind, json!({"error": message}));
        let mut st = self.status.lock().unwrap();
        st.last_fault = Some(message);
        st.consecutive_faults += 1;
    }

    /// One decide cycle. Returns how long to wait before the next one.
    async fn decide(&mut self) -> Duration {
        let pulse = self.pulse();
        let store = self.services.store.clone();
        let (record, records, seen_seq) = match store.decide_view(&self.spec.name) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(domain = %self.spec.name, "reading the store: {e:#}");
                return pulse;
            }
        };
        self.update_backoff(&records, record.last_decide_seq);
        let snap = snapshot::build(
            &self.spec.name,
            now(),
            &records,
            record.last_decide_seq,
            record.memo,
        );
        let decision = match self.with_engine(move |e| e.decide(&snap)).await {
            Ok(d) => d,
            Err(EngineError::Rejected(m)) => {
                self.fault("engine-error", m);
                return pulse;
            }
            Err(EngineError::Trap(m)) => {
                self.fault("engine-trap", m);
                return pulse;
            }
        };
        let live: Vec<_> = records
            .into_iter()
            .filter(|r| !r.state.is_final())
            .collect();
        if let Err(e) = decision::check(&decision, &live, self.spec.max_instances) {
            self.fault("invalid-decision", e.to_string());
            return pulse;
        }
        if let Err(e) = self.carry_out(&decision, &live, seen_seq) {
            tracing::error!(domain = %self.spec.name, "carrying out a decision: {e:#}");
            self.fault("provisioning-error", format!("{e:#}"));
            return pulse;
        }
        decision
            .next_decide_ms
            .map(|ms| Duration::from_millis(u64::from(ms.max(10))))
            .unwrap_or(pulse)
    }

    /// Records a checked decision (launches before any spawn), then destroys and launches.
    fn carry_out(
        &mut self,
        d: &Decision,
        live: &[crate::store::InstanceRecord],
        seen_seq: i64,
    ) -> anyhow::Result<()> {
        let new: Vec<NewInstance> = d
            .launches
            .iter()
            .flat_map(|l| {
                let launch_id = format!("l-{}", short_id());
                (0..l.count).map(move |_| NewInstance {
                    id: format!("i-{}", short_id()),
                    launch_id: launch_id.clone(),
                    vars: l.vars.clone(),
                })
            })
            .collect();
        let status_changed = self.last_status != Some(d.status);
        let detail = (!new.is_empty() || !d.destroy.is_empty() || status_changed).then(|| {
            json!({
                "launch": new.iter().map(|n| &n.id).collect::<Vec<_>>(),
                "destroy": d.destroy,
                "status": engine_status_name(d.status),
            })
        });
        let store = &self.services.store;
        store.record_decision(
            &self.spec.name,
            seen_seq,
            d.memo.as_deref(),
            &new,
            detail.as_ref(),
        )?;
        {
            let mut st = self.status.lock().unwrap();
            st.engine_status = Some(engine_status_name(d.status).into());
            st.decides += 1;
            st.last_decide = Some(now());
            st.last_fault = None;
            st.consecutive_faults = 0;
        }
        self.last_status = Some(d.status);

        let prov = &self.services.provisioner;
        let grace = Duration::from_secs_f64(self.spec.deployable.grace_seconds.max(0.0));
        for id in &d.destroy {
            if let Some(inst) = live.iter().find(|i| &i.id == id) {
                prov.destroy(inst, grace)?;
            }
        }
        for n in &new {
            if let Some(inst) = store.instance(&n.id)? {
                prov.launch(&inst, &self.spec.deployable)?;
            }
        }
        Ok(())
    }

    async fn reconfigure(&mut self, change: Map<String, Value>) -> Result<i64, String> {
        let text = Value::Object(change.clone()).to_string();
        let had_instance = self.instance.is_some();
        let mut merged = self.spec.config.clone();
        merged.extend(change.clone());
        let result = if had_instance {
            self.with_engine(move |e| e.reconfigure(&text)).await
        } else {
            // A fresh instance initialized with the merged config is the check.
            let old = std::mem::replace(&mut self.spec.config, merged.clone());
            let r = self.with_engine(|_| Ok(())).await;
            self.spec.config = old;
            r
        };
        if let Err(e) = result {
            // The engine may have applied part of the change: start over from the old config.
            self.instance = None;
            let msg = match e {
                EngineError::Rejected(m) => m,
                EngineError::Trap(m) => format!("the engine trapped: {m}"),
            };
            self.event(
                "reconfigure-rejected",
                json!({"change": change, "error": msg}),
            );
            return Err(msg);
        }
        let version = self
            .services
            .store
            .save_config(&self.spec.name, &merged, &change)
            .map_err(|e| {
                self.instance = None;
                format!("storing the config: {e:#}")
            })?;
        self.spec.config = merged;
        self.services.wakeups.wake(&self.spec.name);
        Ok(version)
    }
}

/// The kebab-case name of an engine status.
pub fn engine_status_name(s: EngineStatus) -> &'static str {
    match s {
        EngineStatus::Pending => "pending",
        EngineStatus::Stable => "stable",
        EngineStatus::Unknown => "unknown",
        EngineStatus::DevmodeFailed => "devmode-failed",
    }
}

/// 12 hex digits of a random uuid: short enough to read, unique enough for a state dir.
fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}
