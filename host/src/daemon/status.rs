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
    /// What disruption the daemon lets the engine cause.
    #[serde(skip_serializing_if = "crate::model::Budget::is_empty")]
    pub budget: crate::model::Budget,
    /// The version of the deployable that new instances run.
    pub deployable_version: i64,
    /// The rolling refresh under way, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<crate::model::Refresh>,
    /// How long a destroyed, healthy worker may drain, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout_seconds: Option<u32>,
    /// Where in the cluster the domain may run.
    #[serde(skip_serializing_if = "crate::model::Placement::is_empty")]
    pub placement: crate::model::Placement,
    /// The node that owns the domain, in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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

    /// Every domain with its instances (or just one domain). In a cluster, the domains other
    /// nodes own are read from the record, each with its owner.
    pub async fn status(&self, only: Option<&str>) -> Result<Vec<DomainStatus>, OpError> {
        self.status_of(only, true).await
    }

    /// The domains this daemon runs (in a cluster: those this node owns), as in [`status`].
    ///
    /// [`status`]: Daemon::status
    pub async fn own_status(&self) -> Result<Vec<DomainStatus>, OpError> {
        self.status_of(None, false).await
    }

    async fn status_of(
        &self,
        only: Option<&str>,
        remote: bool,
    ) -> Result<Vec<DomainStatus>, OpError> {
        let local = match only {
            Some(name) => match self.services.store.domain(name)? {
                Some(r) => vec![r],
                // A held domain has no status but its place in the status's `held`.
                None if self.exists(name)? => vec![],
                None if self.in_cluster(name).await? => vec![],
                None => return Err(unknown_domain(name)),
            },
            None => self.services.store.domains()?,
        };
        let owners = self.owners().await;
        let controllers = self.controllers.lock().await;
        let mut out = Vec::new();
        for r in local {
            let name = r.spec.name.clone();
            let mut status = of_record(r, self.services.store.live_instances(Some(&name))?);
            status.controller = controllers
                .get(&name)
                .map(|h| h.status.lock().unwrap().clone())
                .unwrap_or_default();
            status.sensors = self.services.sensors.status(&name, crate::model::now());
            status.owner = owners.get(&name).cloned();
            out.push(status);
        }
        drop(controllers);
        let remote = if remote {
            self.remote_domains(only).await?
        } else {
            vec![]
        };
        for name in remote {
            let owner = owners.get(&name).cloned();
            out.extend(self.remote_status(&name, owner).await?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// A domain's status from its record, with no controller or sensors yet.
pub(super) fn of_record(
    r: crate::store::DomainRecord,
    instances: Vec<InstanceRecord>,
) -> DomainStatus {
    DomainStatus {
        instances,
        name: r.spec.name,
        engine: r.spec.engine,
        engine_sha: r.engine_sha,
        config: r.spec.config,
        config_version: r.config_version,
        max_instances: r.spec.max_instances,
        run: r.spec.run,
        limits: r.spec.limits,
        sensors: vec![],
        dry_run: r.spec.dry_run,
        placement: r.spec.placement,
        budget: r.spec.budget,
        drain_timeout_seconds: r.spec.drain_timeout_seconds,
        deployable_version: r.deployable_version,
        refresh: r.refresh,
        controller: Default::default(),
        owner: None,
    }
}
