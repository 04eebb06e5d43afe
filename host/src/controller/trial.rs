//! An engine tried before it goes live: compiled, initialized with the domain's config, and
//! (a bundled engine) asked for a first decision on the empty domain, which is checked as a
//! real one would be and not carried out. `domain add`, a boot and `boot --validate` all try
//! an engine this way.

use crate::contract::{decision, snapshot};
use crate::engine::bindings::Snapshot;
use crate::engine::{bundled, CallLimits, EngineError, EngineHost, EngineInstance, LoadedEngine};
use crate::model::{DomainSpec, EngineLimits};
use crate::plan::Plan;
use crate::store::{DecideView, InstanceRecord};
use serde_json::Value;
use std::sync::Arc;

/// Why an engine cannot run a domain.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// It could not be read or compiled, or implements no contract this host runs.
    #[error("{0}")]
    Load(String),
    /// Its schema or its initialize refused the domain's config (`key`: the key at fault,
    /// when the schema named it).
    #[error("engine '{engine}' rejected the config: {why}")]
    Config {
        engine: String,
        why: String,
        key: Option<String>,
    },
    /// Its first decision is one the daemon would refuse (more than max_instances, say).
    #[error("engine '{engine}': {why}")]
    Decide { engine: String, why: TrialError },
}

/// Prepares `spec`'s engine and makes the instance the domain starts with; see the module.
/// Runs engine code: call it off the async runtime.
pub fn start(
    engines: &EngineHost,
    spec: &DomainSpec,
) -> Result<(Arc<LoadedEngine>, EngineInstance), StartError> {
    let engine = &spec.engine;
    let loaded = engines
        .prepare_spec(engine)
        .map_err(|e| StartError::Load(format!("{e:#}")))?;
    let config = Value::Object(spec.config.clone()).to_string();
    let instantiate = || {
        engines
            .instantiate(&loaded, &config, CallLimits::from(&spec.limits))
            .map_err(|e| StartError::Config {
                engine: engine.clone(),
                key: match &e {
                    EngineError::Schema(c) => Some(c.key.clone()),
                    _ => None,
                },
                why: e.to_string(),
            })
    };
    let instance = instantiate()?;
    // A bundled engine decides as its config says, so a trial decide on the empty domain (by
    // an instance of its own: the domain's starts fresh) tells a config that asks for what
    // the daemon would refuse. A user's engine that decides so is a faulting engine: the
    // sandbox contains it and counts it toward quarantine, as it does any engine after start.
    if bundled::get(engine).is_some() {
        let mut trial = instantiate()?;
        trial_decide(
            &mut trial,
            &empty_snapshot(),
            &[],
            spec.max_instances,
            &spec.limits,
        )
        .map_err(|why| StartError::Decide {
            engine: engine.clone(),
            why,
        })?;
    }
    Ok((loaded, instance))
}

/// Why a trial decide failed.
#[derive(Debug, thiserror::Error)]
pub enum TrialError {
    /// The engine trapped or returned an error.
    #[error("canary decide failed: {0}")]
    Failed(String),
    /// The daemon would refuse the decision.
    #[error("canary decision refused: {0}")]
    Refused(decision::InvalidDecision),
}

/// Makes a trial decide of `inst` on `snap` and checks the decision as a real one would be
/// against the domain's `live` instances; nothing is carried out.
pub fn trial_decide(
    inst: &mut EngineInstance,
    snap: &Snapshot,
    live: &[InstanceRecord],
    max_instances: u32,
    limits: &EngineLimits,
) -> Result<(), TrialError> {
    let decision = inst
        .decide(snap, rand::random())
        .map_err(|e| TrialError::Failed(e.to_string()))?;
    decision::check(&decision, live, max_instances, limits.max_decision_bytes)
        .map_err(TrialError::Refused)
}

/// The snapshot of a domain that has nothing yet: no instances, readings or memo.
pub fn empty_snapshot() -> Snapshot {
    snapshot::build(&DecideView::default(), &[], None, crate::model::now()).0
}

/// Tries the engine of the plan's domain at `index` as [`start`] does, and keeps its compiled
/// code for the boot; an error points at the line of the plan that causes it.
pub fn try_plan_domain(
    engines: &EngineHost,
    plan: &Plan,
    index: usize,
) -> anyhow::Result<Arc<LoadedEngine>> {
    let spec = &plan.domains[index];
    match start(engines, spec) {
        Ok((loaded, _)) => {
            engines.keep(&loaded)?;
            Ok(loaded)
        }
        Err(e) => {
            // The schema names the key it refuses; an engine names it in quotes, as the
            // bundled ones do.
            let needle = match &e {
                StartError::Config { key: Some(k), .. } => k.as_str(),
                StartError::Config { why, .. } => why.split('\'').nth(1).unwrap_or("config"),
                _ => "engine",
            };
            Err(plan.domain_error(index, needle, &e.to_string()))
        }
    }
}
