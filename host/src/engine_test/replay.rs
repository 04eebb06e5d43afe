//! Replaying a scenario: each step's reconfigure and snapshot go to the engine, and its
//! answers are compared with what the step expects.

use super::{Expect, Scenario, Step};
use crate::engine::bindings as wit;
use crate::engine::{EngineHost, EngineInstance, LoadedEngine};
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The outcome of one step.
#[derive(Debug, Serialize)]
pub struct StepResult {
    pub step: usize,
    /// What differs from the expectation, one line each; empty when the step passed.
    pub mismatches: Vec<String>,
}

/// Initializes `component` with the scenario's config under the default limits, then replays
/// every step. A refused `initialize` is the first step's outcome: it passes only when that
/// step expects the error, and the steps after it are not run.
pub fn run(
    host: &EngineHost,
    component: &Arc<LoadedEngine>,
    scenario: &Scenario,
) -> Result<Vec<StepResult>> {
    let limits = (&crate::model::EngineLimits::default()).into();
    let config = Value::Object(scenario.config.clone()).to_string();
    let mut engine = match host.instantiate(component, &config, limits) {
        Ok(engine) => engine,
        Err(e) => {
            let text = format!("initialize: {e}");
            let Some(want) = scenario.steps[0].expect.error.as_deref() else {
                anyhow::bail!("{text}");
            };
            let mut mismatches = error_mismatch("initialize", Some(want), &text);
            let left = scenario.steps.len() - 1;
            if left > 0 {
                mismatches.push(format!(
                    "{left} steps after a refused initialize were not run"
                ));
            }
            return Ok(vec![StepResult {
                step: 1,
                mismatches,
            }]);
        }
    };
    Ok(replay(&mut engine, scenario))
}

/// Replays `scenario` on a freshly initialized `engine`: each step's result.
fn replay(engine: &mut EngineInstance, scenario: &Scenario) -> Vec<StepResult> {
    let mut out = Vec::new();
    // What the engine instance has been told: none yet, so the first decide is full.
    let mut told: Option<BTreeSet<u64>> = None;
    for (n, step) in scenario.steps.iter().enumerate() {
        let mut mismatches = Vec::new();
        if let Some(keys) = &step.reconfigure {
            let text = Value::Object(keys.clone()).to_string();
            let outcome = engine.reconfigure(&text).err().map(|e| e.to_string());
            let want = step.expect.reconfigure_error.as_deref();
            match outcome {
                Some(got) => mismatches.extend(error_mismatch("reconfigure", want, &got)),
                None if want.is_some() => mismatches.push(format!(
                    "reconfigure: expected an error with {:?}, but it was accepted",
                    want.unwrap_or_default()
                )),
                None => {}
            }
        }
        if let Some(now) = step.now {
            let full = step.full.unwrap_or(told.is_none());
            let known = if full {
                BTreeSet::new()
            } else {
                told.take().unwrap_or_default()
            };
            let (snapshot, known) = snapshot(step, now, full, known);
            let seed = step.seed.unwrap_or(n as u64 + 1);
            match engine.decide(&snapshot, seed) {
                Ok(decision) => {
                    if let Some(want) = &step.expect.error {
                        mismatches.push(format!(
                            "decide: expected an error with {want:?}, got a decision"
                        ));
                    }
                    mismatches.extend(compare(&step.expect, &decision));
                    told = Some(known);
                }
                Err(e) => {
                    let text = e.to_string();
                    let want = step.expect.error.as_deref();
                    mismatches.extend(error_mismatch("decide", want, &text));
                    // As in the daemon, the next decide after a refused one is full.
                    told = None;
                }
            }
        }
        out.push(StepResult {
            step: n + 1,
            mismatches,
        });
    }
    out
}

/// What is wrong with a call that failed with `got` when `want` was expected.
fn error_mismatch(call: &str, want: Option<&str>, got: &str) -> Vec<String> {
    match want {
        Some(want) if got.contains(want) => vec![],
        Some(want) => vec![format!(
            "{call}: expected an error with {want:?}, got {got:?}"
        )],
        None => vec![format!("{call} was refused: {got}")],
    }
}

/// The step's snapshot, and the handles the engine has been told of once it is taken. An
/// instance's details come the first time the engine sees it; its readings are sensors named
/// `NAME/<id>`.
fn snapshot(
    step: &Step,
    now: f64,
    full: bool,
    mut told: BTreeSet<u64>,
) -> (wit::Snapshot, BTreeSet<u64>) {
    use crate::contract::{wit_health, wit_state};
    let mut details = Vec::new();
    let mut readings: Vec<wit::SensorReading> = Vec::new();
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
            if told.insert(i.handle) {
                details.push(wit::InstanceDetails {
                    handle: i.handle,
                    id: i.name(),
                    launch_id: format!("launch-{}", i.handle),
                    vars: i.vars.clone().into_iter().collect(),
                });
            }
            for (name, value) in &i.readings {
                readings.push(wit::SensorReading {
                    name: format!("{name}/{}", i.name()),
                    value: *value,
                    time: now,
                    stale: false,
                });
            }
            let state_time = i.state_time.unwrap_or(now);
            wit::Instance {
                handle: i.handle,
                state: wit_state(i.state),
                state_time,
                health: wit_health(health),
                health_time: i.health_time.unwrap_or(state_time),
                protected: i.protected,
                draining: i.draining,
            }
        })
        .collect();
    for r in step.sensors.iter().flatten() {
        readings.push(wit::SensorReading {
            name: r.name.clone(),
            value: r.value,
            time: r.time.unwrap_or(now),
            stale: r.stale,
        });
    }
    let memo = match (&step.memo, &step.memo_hex) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        // The scenario's check has made sure these are hex digits.
        (None, Some(digits)) => Some(hex::decode(digits).unwrap_or_default()),
        (None, None) => None,
    };
    let snapshot = wit::Snapshot {
        now,
        full,
        instances,
        details: (!details.is_empty()).then_some(details),
        sensors: (!readings.is_empty() || step.sensors.is_some()).then_some(readings),
        memo,
    };
    (snapshot, told)
}

/// The most launches whose vars are compared one by one.
const MAX_LAUNCH_VARS: u32 = 100_000;

fn compare(expect: &Expect, d: &wit::Decision) -> Vec<String> {
    let mut out = Vec::new();
    let launched: u32 = d.launches.iter().map(|l| l.count).sum();
    if let Some(want) = expect.launch {
        if want != launched {
            out.push(format!("launch: expected {want}, got {launched}"));
        }
    }
    if let (Some(want), true) = (&expect.launch_vars, launched > MAX_LAUNCH_VARS) {
        out.push(format!(
            "launch_vars: expected {} launches, got {launched}",
            want.len()
        ));
    } else if let Some(want) = &expect.launch_vars {
        let mut got: Vec<BTreeMap<String, String>> = d
            .launches
            .iter()
            .flat_map(|l| std::iter::repeat_n(l.vars.iter().cloned().collect(), l.count as usize))
            .collect();
        let mut want = want.clone();
        got.sort();
        want.sort();
        if want != got {
            out.push(format!("launch_vars: expected {want:?}, got {got:?}"));
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
        let got = crate::contract::engine_status_name(d.status);
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
