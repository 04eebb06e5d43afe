//! What a plan file says: its levels of services and its domains, as they parse.

use crate::model::sensor::SensorSpec;
use crate::model::{
    DomainSpec, Ec2Deployable, EngineLimits, HealthSettings, ProcessDeployable,
    DEFAULT_MAX_INSTANCES, DEFAULT_PULSE_MS,
};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanFile {
    pub(super) name: String,
    #[serde(default, rename = "level")]
    pub(super) levels: Vec<PlanLevel>,
    #[serde(default, rename = "domain")]
    pub(super) domains: Vec<Spanned<PlanDomain>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanLevel {
    #[serde(default, rename = "service")]
    pub(super) services: Vec<Spanned<ServiceSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanDomain {
    pub(super) name: String,
    pub(super) engine: String,
    #[serde(default)]
    pub(super) config: Map<String, Value>,
    /// The deployable: exactly one of these, by driver.
    #[serde(default)]
    pub(super) process: Option<ProcessDeployable>,
    #[serde(default)]
    pub(super) ec2: Option<Ec2Deployable>,
    #[serde(default)]
    pub(super) health: HealthSettings,
    #[serde(default = "default_max")]
    pub(super) max_instances: u32,
    #[serde(default = "default_pulse")]
    pub(super) pulse_ms: u32,
    #[serde(default)]
    pub(super) limits: EngineLimits,
    #[serde(default, rename = "sensor")]
    pub(super) sensors: Vec<SensorSpec>,
    #[serde(default)]
    pub(super) dry_run: bool,
    #[serde(default)]
    pub(super) budget: crate::model::Budget,
    #[serde(default)]
    pub(super) drain_timeout_seconds: Option<u32>,
}

pub(super) fn default_max() -> u32 {
    DEFAULT_MAX_INSTANCES
}

pub(super) fn default_pulse() -> u32 {
    DEFAULT_PULSE_MS
}

/// A base service of a bootlevel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// The program that starts the service: it may keep running (the service's process) or
    /// exit 0 once the service is up.
    pub start: Vec<String>,
    /// The check that the service is ready; without one, it is ready once it has published
    /// every attribute it declares.
    #[serde(default)]
    pub ready: Option<Readiness>,
    /// The program that stops the service, run before its start process is signalled.
    #[serde(default)]
    pub terminate: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Env vars for the service's programs, from `${service.attr}` of earlier levels.
    #[serde(default)]
    pub deps: BTreeMap<String, String>,
    /// The attributes the service publishes: keys of the JSON object it writes to
    /// `$EPU_SERVICE_OUTPUT`.
    #[serde(default)]
    pub publishes: Vec<String>,
    /// The working dir, relative to the plan's directory (default: the plan's directory).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when the service's process is stopped.
    #[serde(default = "crate::model::default_grace")]
    pub grace_seconds: f64,
    /// The daemon's env vars the service's programs get (see the process deployable's).
    #[serde(default = "crate::model::default_inherit_env")]
    pub inherit_env: Vec<String>,
}

/// How a service's readiness is checked: `command` must exit 0 within `timeout_seconds`; it
/// is tried up to `retries` times, `interval_ms` apart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    pub command: Vec<String>,
    #[serde(default = "default_ready_timeout")]
    pub timeout_seconds: f64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
}

pub(super) fn default_ready_timeout() -> f64 {
    10.0
}

pub(super) fn default_retries() -> u32 {
    60
}

pub(super) fn default_interval() -> u64 {
    500
}

/// A checked plan, with every path made absolute. References are still unfilled: they are
/// filled as the run boots.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub file: PathBuf,
    /// The bootlevels in order, each with its services.
    pub levels: Vec<Vec<ServiceSpec>>,
    pub domains: Vec<DomainSpec>,
    /// The file's text, and where each domain's table is in it: errors found later point at
    /// their line.
    pub(super) text: String,
    pub(super) domain_spans: Vec<std::ops::Range<usize>>,
}

impl Plan {
    /// The plan's domains that still have to be created, given the domains that exist as
    /// `(name, run)`. A domain this run created already is left as it is (booting twice, or
    /// again after a crash, carries on); a name taken by anything else is an error.
    pub fn domains_to_add<'a>(
        &'a self,
        run: &str,
        existing: &[(String, Option<String>)],
    ) -> Result<Vec<&'a DomainSpec>> {
        let mut out = Vec::new();
        for d in &self.domains {
            match existing.iter().find(|(name, _)| *name == d.name) {
                None => out.push(d),
                Some((_, Some(owner))) if owner == run => {}
                Some(_) => bail!(
                    "domain '{}' already exists and does not belong to run '{run}'",
                    d.name
                ),
            }
        }
        Ok(out)
    }

    /// The plan's domains as run `run` creates them.
    pub fn with_run(mut self, run: &str) -> Plan {
        for d in &mut self.domains {
            d.run = Some(run.to_string());
        }
        self
    }

    /// An error about the domain at `index`, at the line of `needle` in its table.
    pub fn domain_error(&self, index: usize, needle: &str, what: &str) -> anyhow::Error {
        let src = super::load::Source {
            file: &self.file,
            text: &self.text,
        };
        let span = self.domain_spans.get(index).cloned().unwrap_or(0..0);
        let name = self.domains.get(index).map_or("", |d| d.name.as_str());
        src.err(&span, needle, format!("domain '{name}': {what}"))
    }

    /// Whether the engine of the domain at `index`, and its config and limits, are known
    /// before the run boots: none of them takes a service's attributes.
    pub fn engine_known_before_boot(&self, index: usize) -> bool {
        let Some(d) = self.domains.get(index) else {
            return false;
        };
        let parts = json!([d.engine, d.config, d.limits, d.max_instances]);
        super::template::refs_in(&parts).is_ok_and(|refs| refs.is_empty())
    }

    /// How many services the plan has.
    pub fn service_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }
}
