//! Health from heartbeats: a worker reports `ok` or `process-error`; a worker that stays silent
//! past its timeouts turns `missing`; one that still reports after it was destroyed is a
//! `zombie`, and is killed. Every change wakes the domain's controller.
//!
//! Silence is timed on the monotonic clock, so a wall-clock jump (NTP, a VM resumed, an
//! operator's `date -s`) neither marks every worker missing nor hides a silent one. The store
//! keeps wall-clock times for people to read.

use crate::model::{now, Health, InstanceState};
use crate::store::{InstanceRecord, StateUpdate, Store};
use crate::wakeups::Wakeups;
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often silent workers are looked for.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// What a worker reports about itself.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reported {
    Ok,
    ProcessError,
}

/// What a worker says in a heartbeat.
#[derive(Clone, Copy, Debug)]
pub struct Beat<'a> {
    pub reported: Reported,
    /// What went wrong, with `process-error`.
    pub error: Option<&'a str>,
    /// Protect the instance from destroys (true), or lift that (false).
    pub protect: Option<bool>,
    /// The worker finished draining: stop it now.
    pub drained: bool,
}

/// The daemon's answer to a heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Answer {
    /// The instance is draining: finish the work in hand, take no more, then exit (or say
    /// `drained`).
    pub drain: bool,
}

/// Why a heartbeat was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("unknown node '{0}'")]
    UnknownNode(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// What ends a zombie (the provisioner's [`kill_zombie`](crate::provisioner::Provisioner::kill_zombie)).
pub type ZombieKiller = Box<dyn Fn(&InstanceRecord) + Send + Sync>;

pub struct HealthMonitor {
    store: Arc<Store>,
    wakeups: Arc<Wakeups>,
    kill_zombie: ZombieKiller,
    /// When each watched worker was last heard from, or first watched by this daemon (which
    /// heard nothing while it was down).
    heard: Mutex<HashMap<String, Instant>>,
}

impl HealthMonitor {
    /// `kill_zombie` is called on every heartbeat of a zombie.
    pub fn new(store: Arc<Store>, wakeups: Arc<Wakeups>, kill_zombie: ZombieKiller) -> Self {
        HealthMonitor {
            store,
            wakeups,
            kill_zombie,
            heard: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a heartbeat from a worker, and answers whether it should drain.
    pub fn heartbeat(&self, node_id: &str, beat: Beat) -> Result<Answer, HeartbeatError> {
        let Beat {
            reported,
            error,
            protect,
            drained,
        } = beat;
        let inst = self
            .store
            .instance(node_id)?
            .ok_or_else(|| HeartbeatError::UnknownNode(node_id.to_string()))?;
        let t = now();
        self.store.touch_heartbeat(node_id, t)?;
        let mut changed = false;
        if inst.state >= InstanceState::Terminating {
            let zombie_after = self.zombie_timeout(&inst.domain);
            if t - inst.state_time > zombie_after {
                changed |= self.store.set_health(node_id, Health::Zombie)?.is_some();
                (self.kill_zombie)(&inst);
            }
        } else {
            if inst.state < InstanceState::Running {
                changed |= self
                    .store
                    .advance(node_id, InstanceState::Running, StateUpdate::default())?
                    .is_some();
            }
            self.heard
                .lock()
                .unwrap()
                .insert(node_id.to_string(), Instant::now());
            let health = match reported {
                Reported::Ok => Health::Ok,
                Reported::ProcessError => Health::ProcessError,
            };
            if let (Reported::ProcessError, Some(e)) = (reported, error) {
                if inst.health != Health::ProcessError {
                    self.store.event(
                        Some(&inst.domain),
                        Some(node_id),
                        "process-error",
                        serde_json::json!({"error": e}),
                    )?;
                }
            }
            changed |= self.store.set_health(node_id, health)?.is_some();
            if let Some(p) = protect {
                changed |= self.store.set_protected(node_id, p, "worker")?.is_some();
            }
            if drained {
                changed |= self.store.set_drained(node_id)?.is_some();
            }
        }
        if changed {
            self.wakeups.wake(&inst.domain);
        }
        Ok(Answer {
            drain: inst.draining(),
        })
    }

    fn zombie_timeout(&self, domain: &str) -> f64 {
        self.store
            .domain(domain)
            .ok()
            .flatten()
            .map(|d| d.spec.health.zombie_timeout)
            .unwrap_or(crate::model::HealthSettings::default().zombie_timeout)
    }

    /// Marks silent workers missing.
    pub fn sweep(&self) -> Result<()> {
        let t = Instant::now();
        let mut heard = self.heard.lock().unwrap();
        let mut watched = HashSet::new();
        for domain in self.store.domains()? {
            let settings = &domain.spec.health;
            for inst in self.store.live_instances(Some(&domain.spec.name))? {
                if !(InstanceState::Started..=InstanceState::Running).contains(&inst.state)
                    || matches!(inst.health, Health::Missing | Health::Zombie)
                {
                    continue;
                }
                let since = *heard.entry(inst.id.clone()).or_insert(t);
                let timeout = match inst.last_heartbeat {
                    None => settings.boot_timeout,
                    Some(_) => settings.missing_timeout,
                };
                let silent = t.duration_since(since).as_secs_f64() > timeout;
                if silent && self.store.set_health(&inst.id, Health::Missing)?.is_some() {
                    self.wakeups.wake(&domain.spec.name);
                }
                watched.insert(inst.id);
            }
        }
        heard.retain(|id, _| watched.contains(id));
        Ok(())
    }

    /// Sweeps on an interval until the daemon stops.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = self.sweep() {
                tracing::error!("health sweep: {e:#}");
            }
        }
    }
}
