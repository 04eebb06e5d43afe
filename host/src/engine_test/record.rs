//! A scenario from a live domain's recording (`epu events --export-scenario`).

use super::{Expect, Instance, Reading, Scenario, Step};
use crate::engine::bindings as wit;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A scenario of what a domain's engine saw and decided, from its last full snapshot on: a
/// replay on a fresh engine with `config` must decide the same.
pub fn from_recording(
    config: Map<String, Value>,
    recorded: &[crate::controller::RecordedStep],
) -> Scenario {
    use crate::contract::{model_health, model_state};
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
            let details: BTreeMap<u64, &wit::InstanceDetails> =
                s.details.iter().flatten().map(|d| (d.handle, d)).collect();
            let launched: u32 = d.launches.iter().map(|l| l.count).sum();
            let launch_vars = (launched <= 1000).then(|| {
                d.launches
                    .iter()
                    .flat_map(|l| {
                        std::iter::repeat_n(l.vars.iter().cloned().collect(), l.count as usize)
                    })
                    .collect()
            });
            Step {
                reconfigure: None,
                now: Some(s.now),
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
                        id: details.get(&i.handle).map(|d| d.id.clone()),
                        vars: details
                            .get(&i.handle)
                            .map(|d| d.vars.iter().cloned().collect())
                            .unwrap_or_default(),
                        readings: BTreeMap::new(),
                        protected: i.protected,
                        draining: i.draining,
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
                memo_hex: memo.filter(|_| text.is_none()).map(hex::encode),
                seed: Some(*seed),
                expect: Expect {
                    launch: Some(launched),
                    launch_vars,
                    destroy: Some(d.destroy.clone()),
                    status: Some(crate::contract::engine_status_name(d.status).into()),
                    memo: returned,
                    error: None,
                    reconfigure_error: None,
                },
            }
        })
        .collect();
    Scenario { config, steps }
}
