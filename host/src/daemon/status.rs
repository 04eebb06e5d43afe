//! What `epu status` and `/readyz` show of the daemon: each domain with its controller,
//! sensors and instances, and whether every domain is loaded.

use super::{unknown_domain, Daemon, OpError};
use crate::controller::ControllerStatus;
use crate::model::EngineLimits;
use crate::sensors::SensorStatus;
use crate::store::InstanceRecord;
use serde::Serialize;
use serde_json::{Map, Value};

/// A domain as `epu status` shows it.
#[derive(Serialize)]
pub struct DomainStatus {
    pub name: String,
    pub engine: String,
    pub engine_sha: String,
    pub config: Map<String, Value>,
    pub config_version: i64,
    pub max_instances: u32,
    pub run: Option<String>,
    pub limits: EngineLimits,
    pub sensors: Vec<SensorStatus>,
    /// Whether the domain only records what its engine decides.
    pub dry_run: bool,
    pub controller: ControllerStatus,
    pub instances: Vec<InstanceRecord>,
}

impl Daemon {
    /// Whether the daemon is ready: the store answers and every domain has its controller.
    pub async fn ready(&self) -> Result<(), String> {
        let domains = self
            .services
            .store
            .domains()
            .map_err(|e| format!("the store does not answer: {e:#}"))?;
        let controllers = self.controllers.lock().await;
        let missing: Vec<&str> = domains
            .iter()
            .map(|d| d.spec.name.as_str())
            .filter(|n| !controllers.contains_key(*n))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("domains not loaded: {}", missing.join(", ")))
        }
    }

    /// Every domain with its instances (or just one domain).
    pub async fn status(&self, only: Option<&str>) -> Result<Vec<DomainStatus>, OpError> {
        let records = match only {
            Some(name) => match self.services.store.domain(name)? {
                Some(r) => vec![r],
                // A held domain has no status but its place in the status's `held`.
                None if self.exists(name)? => vec![],
                None => return Err(unknown_domain(name)),
            },
            None => self.services.store.domains()?,
        };
        let controllers = self.controllers.lock().await;
        let mut out = Vec::new();
        for r in records {
            let controller = controllers
                .get(&r.spec.name)
                .map(|h| h.status.lock().unwrap().clone())
                .unwrap_or_default();
            let sensors = self
                .services
                .sensors
                .status(&r.spec.name, crate::model::now());
            out.push(DomainStatus {
                instances: self.services.store.live_instances(Some(&r.spec.name))?,
                name: r.spec.name,
                engine: r.spec.engine,
                engine_sha: r.engine_sha,
                config: r.spec.config,
                config_version: r.config_version,
                max_instances: r.spec.max_instances,
                run: r.spec.run,
                limits: r.spec.limits,
                sensors,
                dry_run: r.spec.dry_run,
                controller,
            });
        }
        Ok(out)
    }
}
