//! `epu engine test`: replays a scenario file against an engine. A scenario is a config and a
//! list of steps. A step is one snapshot in and what the decision must be, a reconfigure, or
//! both (the reconfigure first). The first decide is a full snapshot unless the step says
//! otherwise, and the rest are deltas, as the daemon sends them; after a refused decide the
//! next one is full again, as the daemon's is.
//!
//! ```toml
//! config = { preserve_n = 2, unique_instances = { a = { role = "db" } } }
//!
//! [[step]]
//! now = 1000.0
//! instances = [{ handle = 1, state = "running", vars = { role = "db" }, readings = { cpu = 0.9 } }]
//! sensors = [{ name = "queue", value = 12 }]
//! expect = { launch = 1, destroy = [], status = "pending", launch_vars = [{}] }
//!
//! [[step]]
//! reconfigure = { preserve_n = 0 }
//! expect = { reconfigure_error = "more than preserve_n" }
//! ```

mod record;
mod replay;

pub use record::from_recording;
pub use replay::{run, StepResult};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A scenario file.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub config: Map<String, Value>,
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// A snapshot in and what the decision must be; a reconfigure; or a reconfigure, then a decide.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The keys to reconfigure, before this step's decide (if it has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconfigure: Option<Map<String, Value>>,
    /// The snapshot's time; a step without one only reconfigures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub now: Option<f64>,
    /// Default: true for the first decide and after a refused one, false otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full: Option<bool>,
    #[serde(default)]
    pub instances: Vec<Instance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensors: Option<Vec<Reading>>,
    /// The memo, on a full snapshot: as text, or as hex when it is not text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo_hex: Option<String>,
    /// The seed of the random stream the engine draws from in this decide (default: the
    /// step's number, from 1). A recording keeps each decide's seed, so a replay draws alike.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub handle: u64,
    pub state: crate::model::InstanceState,
    /// Default: ok while running, unknown otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::model::Health>,
    /// Default: the step's `now`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_time: Option<f64>,
    /// The instance's name, in its details and in its readings' names. Default: `i-<handle>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The vars it was launched with, in its details (sent the first time the engine sees it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// Its own readings: each `NAME = VALUE` is a fresh reading of the sensor `NAME/<id>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub readings: BTreeMap<String, f64>,
    /// Whether the daemon keeps it from destroys while it is healthy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// Whether it is draining: destroyed, and finishing its work before it is stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

impl Instance {
    /// Its name: `id`, or `i-<handle>`.
    pub fn name(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("i-{}", self.handle))
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    pub name: String,
    pub value: f64,
    /// Default: the step's `now`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
    #[serde(default)]
    pub stale: bool,
}

/// What a step must come to; what is left out is not checked.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Instances launched, summed over the launches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch: Option<u32>,
    /// The vars of each instance launched, in any order (one table per instance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_vars: Option<Vec<BTreeMap<String, String>>>,
    /// The handles destroyed, in any order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destroy: Option<Vec<u64>>,
    /// pending, stable, unknown or devmode-failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The memo returned, as text; "" for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// The decide is refused (or traps) with an error containing this text. On the first
    /// step, a refused `initialize` is checked against it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The step's reconfigure is refused with an error containing this text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconfigure_error: Option<String>,
}

impl Scenario {
    /// Reads and checks a scenario file; errors name the file and, for syntax, the line.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the scenario {}", path.display()))?;
        let scenario: Scenario =
            toml::from_str(&text).with_context(|| format!("in the scenario {}", path.display()))?;
        anyhow::ensure!(
            !scenario.steps.is_empty(),
            "the scenario {} has no [[step]]",
            path.display()
        );
        for (n, step) in scenario.steps.iter().enumerate() {
            let at = || format!("{}: step {}", path.display(), n + 1);
            if let Some(digits) = &step.memo_hex {
                anyhow::ensure!(
                    hex::decode(digits).is_ok(),
                    "{}: memo_hex must be pairs of hex digits",
                    at()
                );
            }
            anyhow::ensure!(
                step.now.is_some() || step.reconfigure.is_some(),
                "{}: a step needs `now` (a decide), `reconfigure`, or both",
                at()
            );
            if step.now.is_none() {
                let e = &step.expect;
                let decide_only = e.launch.is_some()
                    || e.launch_vars.is_some()
                    || e.destroy.is_some()
                    || e.status.is_some()
                    || e.memo.is_some()
                    || !step.instances.is_empty()
                    || step.sensors.is_some();
                anyhow::ensure!(
                    !decide_only,
                    "{}: a step without `now` has no decide to give instances, sensors or \
                     expectations of a decision to",
                    at()
                );
            }
            if step.expect.reconfigure_error.is_some() {
                anyhow::ensure!(
                    step.reconfigure.is_some(),
                    "{}: expect.reconfigure_error needs a `reconfigure`",
                    at()
                );
            }
        }
        Ok(scenario)
    }
}
