//! Event-log analysis per domain (epumgmt's event analysis): launches, failures and
//! replacements, launch → running and failure → replacement latencies, engine faults and
//! reconfigurations; and the instance counts by state over time that graphs draw.

use crate::model::InstanceState;
use crate::store::Event;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The upper bounds (ms) of the latency histogram's buckets; the last bucket is open.
pub const BUCKETS_MS: [f64; 9] = [
    10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// A latency distribution.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// `(upper bound in ms, or None for the open last bucket, count)`.
    pub histogram: Vec<(Option<f64>, usize)>,
}

impl Latency {
    fn from_samples(mut sorted: Vec<f64>) -> Latency {
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
        };
        let mut histogram: Vec<(Option<f64>, usize)> =
            BUCKETS_MS.iter().map(|b| (Some(*b), 0)).collect();
        histogram.push((None, 0));
        for s in &sorted {
            let i = BUCKETS_MS
                .iter()
                .position(|b| s <= b)
                .unwrap_or(BUCKETS_MS.len());
            histogram[i].1 += 1;
        }
        Latency {
            count: sorted.len(),
            p50_ms: pick(0.5),
            p90_ms: pick(0.9),
            max_ms: sorted.last().copied(),
            histogram,
        }
    }
}

/// What a domain's event log says.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DomainSummary {
    pub domain: String,
    pub launches: usize,
    /// Instances that reached running.
    pub reached_running: usize,
    /// Instances that failed (exited, could not start) or turned unhealthy.
    pub failures: usize,
    /// Launches that followed a failure (each failure is matched to the next launch).
    pub replacements: usize,
    pub launch_to_running: Latency,
    pub failure_to_replacement: Latency,
    /// Engine faults by kind.
    pub engine_faults: BTreeMap<String, usize>,
    pub reconfigurations: usize,
    pub engine_swaps: usize,
    pub first_event: Option<f64>,
    pub last_event: Option<f64>,
}

/// Whether a health change to `health` is a failure of the instance.
fn is_unhealthy(health: &str) -> bool {
    crate::model::Health::parse(health).is_some_and(crate::model::Health::is_bad)
}

/// Summarises the events of each domain in `events` (oldest first), by domain name.
pub fn summarize(events: &[Event]) -> Vec<DomainSummary> {
    #[derive(Default)]
    struct Acc {
        s: DomainSummary,
        launched: HashMap<String, f64>,
        failed: std::collections::HashSet<String>,
        waiting: VecDeque<f64>,
        to_running: Vec<f64>,
        to_replacement: Vec<f64>,
    }
    let mut by_domain: BTreeMap<String, Acc> = BTreeMap::new();
    for e in events {
        let Some(domain) = &e.domain else { continue };
        let acc = by_domain.entry(domain.clone()).or_default();
        acc.s.first_event.get_or_insert(e.time);
        acc.s.last_event = Some(e.time);
        let instance = e.instance.clone().unwrap_or_default();
        let mut failure = false;
        match e.kind.as_str() {
            "launch-recorded" => {
                acc.s.launches += 1;
                acc.launched.insert(instance.clone(), e.time);
                if let Some(failed_at) = acc.waiting.pop_front() {
                    acc.s.replacements += 1;
                    acc.to_replacement.push((e.time - failed_at) * 1000.0);
                }
            }
            "state" => match e.detail["to"].as_str() {
                Some("running") => {
                    acc.s.reached_running += 1;
                    if let Some(t) = acc.launched.get(&instance) {
                        acc.to_running.push((e.time - t) * 1000.0);
                    }
                }
                Some("failed") => failure = true,
                _ => {}
            },
            "health" => failure = e.detail["to"].as_str().is_some_and(is_unhealthy),
            "engine-fault" => {
                let kind = e.detail["kind"].as_str().unwrap_or("unknown").to_string();
                *acc.s.engine_faults.entry(kind).or_default() += 1;
            }
            "reconfigured" => acc.s.reconfigurations += 1,
            "engine-swapped" => acc.s.engine_swaps += 1,
            _ => {}
        }
        // An instance fails once, however many ways it shows it.
        if failure && acc.failed.insert(instance) {
            acc.s.failures += 1;
            acc.waiting.push_back(e.time);
        }
    }
    by_domain
        .into_iter()
        .map(|(domain, mut acc)| {
            acc.s.domain = domain;
            acc.s.launch_to_running = Latency::from_samples(acc.to_running);
            acc.s.failure_to_replacement = Latency::from_samples(acc.to_replacement);
            acc.s
        })
        .collect()
}

/// The groups of states that an instance-count graph stacks, bottom up.
pub const STATE_GROUPS: [&str; 5] = [
    "launching",
    "started",
    "running",
    "running-failed",
    "terminating",
];

fn group_of(state: InstanceState) -> Option<usize> {
    use InstanceState::*;
    match state {
        Requesting | Requested | ErrorRetrying | Pending => Some(0),
        Started => Some(1),
        Running => Some(2),
        RunningFailed => Some(3),
        Terminating => Some(4),
        Terminated | Failed | Rejected => None,
    }
}

/// The live instance counts of the events' domains after each event that changed one, as
/// `(time, counts by STATE_GROUPS)`.
pub fn instance_counts(events: &[Event]) -> Vec<(f64, [usize; 5])> {
    let mut state: HashMap<String, InstanceState> = HashMap::new();
    let mut counts = [0usize; 5];
    let mut out = Vec::new();
    for e in events {
        let (Some(_), Some(id)) = (&e.domain, &e.instance) else {
            continue;
        };
        let next = match e.kind.as_str() {
            "launch-recorded" => Some(InstanceState::Requesting),
            "state" => e.detail["to"].as_str().and_then(InstanceState::parse),
            _ => None,
        };
        let Some(next) = next else { continue };
        if let Some(g) = state.get(id).copied().and_then(group_of) {
            counts[g] -= 1;
        }
        if let Some(g) = group_of(next) {
            counts[g] += 1;
        }
        state.insert(id.clone(), next);
        out.push((e.time, counts));
    }
    out
}

/// An event a graph marks on its time axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mark {
    /// An instance failed.
    Failure,
    Reconfigure,
    Swap,
    Quarantine,
}

impl Mark {
    pub const ALL: [Mark; 4] = [
        Mark::Failure,
        Mark::Reconfigure,
        Mark::Swap,
        Mark::Quarantine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mark::Failure => "failure",
            Mark::Reconfigure => "reconfigure",
            Mark::Swap => "engine swap",
            Mark::Quarantine => "quarantine",
        }
    }
}

/// The events a graph marks, oldest first.
pub fn marks(events: &[Event]) -> Vec<(f64, Mark)> {
    events
        .iter()
        .filter_map(|e| {
            let mark = match e.kind.as_str() {
                "state" if e.detail["to"] == "failed" => Mark::Failure,
                "reconfigured" => Mark::Reconfigure,
                "engine-swapped" => Mark::Swap,
                "quarantined" => Mark::Quarantine,
                _ => return None,
            };
            Some((e.time, mark))
        })
        .collect()
}

/// The engines' target instance count over time (summed over the domains), from the
/// decisions that carried something out or changed the engine's status.
pub fn targets(events: &[Event]) -> Vec<(f64, u64)> {
    let mut by_domain: HashMap<&str, u64> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        let (Some(domain), "decision") = (&e.domain, e.kind.as_str()) else {
            continue;
        };
        let Some(target) = e.detail["target"].as_u64() else {
            continue;
        };
        by_domain.insert(domain, target);
        out.push((e.time, by_domain.values().sum()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(seq: i64, time: f64, instance: &str, kind: &str, detail: serde_json::Value) -> Event {
        Event {
            seq,
            time,
            domain: Some("d".into()),
            instance: (!instance.is_empty()).then(|| instance.to_string()),
            kind: kind.into(),
            detail,
            run: None,
        }
    }

    #[test]
    fn a_failure_and_its_replacement_are_counted_with_their_latencies() {
        let events = vec![
            ev(1, 10.0, "a", "launch-recorded", json!({})),
            ev(2, 10.2, "a", "state", json!({"to": "started"})),
            ev(3, 10.5, "a", "state", json!({"to": "running"})),
            ev(4, 20.0, "a", "state", json!({"to": "failed"})),
            ev(5, 20.1, "b", "launch-recorded", json!({})),
            ev(6, 20.4, "b", "state", json!({"to": "running"})),
            ev(7, 21.0, "", "engine-fault", json!({"kind": "trap"})),
            ev(8, 22.0, "", "reconfigured", json!({})),
        ];
        let s = &summarize(&events)[0];
        assert_eq!(
            (s.launches, s.reached_running, s.failures, s.replacements),
            (2, 2, 1, 1)
        );
        assert_eq!(s.launch_to_running.count, 2);
        assert!((s.launch_to_running.max_ms.unwrap() - 500.0).abs() < 1e-6);
        assert!((s.failure_to_replacement.p50_ms.unwrap() - 100.0).abs() < 1e-6);
        assert_eq!(s.engine_faults["trap"], 1);
        assert_eq!(s.reconfigurations, 1);
        let hist_total: usize = s.launch_to_running.histogram.iter().map(|b| b.1).sum();
        assert_eq!(hist_total, 2);
        let counts = instance_counts(&events);
        assert_eq!(counts.last().unwrap().1, [0, 0, 1, 0, 0]);
        assert_eq!(counts[2].1, [0, 0, 1, 0, 0]);
    }

    #[test]
    fn an_instance_that_turns_missing_and_then_fails_is_one_failure() {
        let events = vec![
            ev(1, 1.0, "a", "launch-recorded", json!({})),
            ev(2, 2.0, "a", "health", json!({"to": "missing"})),
            ev(3, 3.0, "a", "state", json!({"to": "failed"})),
        ];
        assert_eq!(summarize(&events)[0].failures, 1);
    }
}
