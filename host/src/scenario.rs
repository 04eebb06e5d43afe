//! `epu engine test`: replays a scenario file against an engine. A scenario is a config and a
//! list of steps; each step is one snapshot in and what the decision must be. The first step is
//! a full snapshot unless it says otherwise, and the rest are deltas, as the daemon sends them.
//!
//! ```toml
//! config = { preserve_n = 2 }
//!
//! [[step]]
//! now = 1000.0
//! instances = [{ handle = 1, state = "running" }]
//! sensors = [{ name = "cpu", value = 0.9 }]
//! expect = { launch = 1, destroy = [], status = "pending" }
//! ```

use crate::engine::bindings as wit;
use crate::engine::EngineInstance;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
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

/// One snapshot in, and what the decision must be.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub now: f64,
    /// Default: true for the first step, false after.
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

/// What a decision must be; what is left out is not checked.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Instances launched, summed over the launches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch: Option<u32>,
    /// The handles destroyed, in any order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destroy: Option<Vec<u64>>,
    /// pending, stable, unknown or devmode-failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The memo returned, as text; "" for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
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
            if let Some(hex) = &step.memo_hex {
                let digits = hex.len() % 2 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit());
                anyhow::ensure!(
                    digits,
                    "{}: step {}: memo_hex must be pairs of hex digits",
                    path.display(),
                    n + 1
                );
            }
        }
        Ok(scenario)
    }
}

/// The outcome of one step.
#[derive(Debug, Serialize)]
pub struct StepResult {
    pub step: usize,
    /// What differs from the expectation, one line each; empty when the step passed.
    pub mismatches: Vec<String>,
}

/// Replays `scenario` on a freshly initialized `engine`. Returns each step's result; an engine
/// that fails a call is an error that names the step.
pub fn replay(engine: &mut EngineInstance, scenario: &Scenario) -> Result<Vec<StepResult>> {
    let mut out = Vec::new();
    for (n, step) in scenario.steps.iter().enumerate() {
        let snapshot = snapshot(step, n == 0);
        let seed = step.seed.unwrap_or(n as u64 + 1);
        let decision = engine
            .decide(&snapshot, seed)
            .with_context(|| format!("step {}: the engine failed", n + 1))?;
        out.push(StepResult {
            step: n + 1,
            mismatches: compare(&step.expect, &decision),
        });
    }
    Ok(out)
}

fn snapshot(step: &Step, first: bool) -> wit::Snapshot {
    use crate::controller::snapshot::{wit_health, wit_state};
    let now = step.now;
    let instances = step
        .instances
        .iter()
        .map(|i| {
            let running = i.state == crate::model::InstanceState::Running;
            let health = i.health.unwrap_or(if running {
                crate::model::Health::Ok
            } else {
                crate::model::Health::Unknown
            });
            let state_time = i.state_time.unwrap_or(now);
            wit::Instance {
                handle: i.handle,
                state: wit_state(i.state),
                state_time,
                health: wit_health(health),
                health_time: i.health_time.unwrap_or(state_time),
            }
        })
        .collect();
    let sensors = step.sensors.as_ref().map(|rs| {
        rs.iter()
            .map(|r| wit::SensorReading {
                name: r.name.clone(),
                value: r.value,
                time: r.time.unwrap_or(now),
                stale: r.stale,
            })
            .collect()
    });
    let memo = match (&step.memo, &step.memo_hex) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        (None, Some(hex)) => Some(from_hex(hex)),
        (None, None) => None,
    };
    wit::Snapshot {
        now,
        full: step.full.unwrap_or(first),
        instances,
        details: None,
        sensors,
        memo,
    }
}

/// A scenario of what a domain's engine saw and decided, from its last full snapshot on: a
/// replay on a fresh engine with `config` must decide the same.
pub fn from_recording(
    config: Map<String, Value>,
    recorded: &[crate::controller::RecordedStep],
) -> Scenario {
    use crate::controller::snapshot::{model_health, model_state};
    let steps = recorded
        .iter()
        .enumerate()
        .map(|(n, (s, d, seed))| {
            let memo = s.memo.as_ref().filter(|m| !m.is_empty());
            let text = memo.and_then(|m| std::str::from_utf8(m).ok());
            let returned = match &d.memo {
                None => Some(String::new()),
                Some(m) => std::str::from_utf8(m).ok().map(str::to_string),
            };
            Step {
                now: s.now,
                full: (s.full != (n == 0)).then_some(s.full),
                instances: s
                    .instances
                    .iter()
                    .map(|i| Instance {
                        handle: i.handle,
                        state: model_state(i.state),
                        health: Some(model_health(i.health)),
                        state_time: Some(i.state_time),
                        health_time: Some(i.health_time),
                    })
                    .collect(),
                sensors: s.sensors.as_ref().map(|rs| {
                    rs.iter()
                        .map(|r| Reading {
                            name: r.name.clone(),
                            value: r.value,
                            time: Some(r.time),
                            stale: r.stale,
                        })
                        .collect()
                }),
                memo: text.map(str::to_string),
                memo_hex: memo.filter(|_| text.is_none()).map(|m| hex(m)),
                seed: Some(*seed),
                expect: Expect {
                    launch: Some(d.launches.iter().map(|l| l.count).sum()),
                    destroy: Some(d.destroy.clone()),
                    status: Some(crate::controller::engine_status_name(d.status).into()),
                    memo: returned,
                },
            }
        })
        .collect();
    Scenario { config, steps }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn compare(expect: &Expect, d: &wit::Decision) -> Vec<String> {
    let mut out = Vec::new();
    let launched: u32 = d.launches.iter().map(|l| l.count).sum();
    if let Some(want) = expect.launch {
        if want != launched {
            out.push(format!("launch: expected {want}, got {launched}"));
        }
    }
    if let Some(want) = &expect.destroy {
        let (mut want, mut got) = (want.clone(), d.destroy.clone());
        want.sort_unstable();
        got.sort_unstable();
        if want != got {
            out.push(format!("destroy: expected {want:?}, got {got:?}"));
        }
    }
    if let Some(want) = &expect.status {
        let got = crate::controller::engine_status_name(d.status);
        if want != got {
            out.push(format!("status: expected {want}, got {got}"));
        }
    }
    if let Some(want) = &expect.memo {
        let got = d
            .memo
            .as_ref()
            .map_or(String::new(), |m| String::from_utf8_lossy(m).into_owned());
        if *want != got {
            out.push(format!("memo: expected {want:?}, got {got:?}"));
        }
    }
    out
}
