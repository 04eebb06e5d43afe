//! Why a domain did (or did not) scale: for each of the last decides, what the engine was
//! shown, what it answered, and what the daemon did with the answer and why. `epu explain`
//! prints them in words. They are kept in memory only, the newest [`KEPT`] per domain; a
//! decide that saw and did the same as the one before it is counted on that one.

use super::faults::Fault;
use super::guard::Held;
use crate::contract::engine_status_name;
use crate::engine::bindings::Decision;
use crate::model::is_unhealthy;
use crate::sensors::Reading;
use crate::store::DecideView;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// How many explained decides a domain keeps.
pub const KEPT: usize = 20;
/// How many instance ids one explained decide names in each list; the rest are counted.
pub const MAX_IDS: usize = 10;

/// The explained decides of a domain, oldest first; shared with the daemon.
pub type Explanations = Arc<Mutex<VecDeque<Explained>>>;

/// One decide, explained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explained {
    /// When it ran; with `repeats`, when the last of its repeats ran.
    pub time: f64,
    /// When the first of its repeats ran.
    pub first_time: f64,
    /// How many decides in a row saw and did the same.
    pub repeats: u64,
    /// `engine`, or `fallback` while the engine is quarantined.
    pub by: &'static str,
    pub seen: Seen,
    /// The engine's answer; none when it faulted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// Why the engine gave no answer, or why the daemon refused the one it gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// What the daemon did with the answer; none when nothing was carried out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<Done>,
}

/// What the engine was shown.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Seen {
    /// The domain's instances in service, by state.
    pub instances: BTreeMap<&'static str, usize>,
    pub unhealthy: usize,
    pub protected: usize,
    /// Leaving: draining, or stopping.
    pub leaving: usize,
    /// A refresh's replacements, not shown to the engine until they run healthy.
    pub hidden: usize,
    /// Instances that failed since the decide before.
    pub failed_since: usize,
    /// Each sensor's reading: (name, value, stale).
    pub sensors: Vec<(String, f64, bool)>,
    pub max_instances: u32,
    /// The crash-loop backoff in force, in ms.
    pub backoff_ms: u64,
}

/// What the engine answered.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answer {
    pub launch: u32,
    pub destroy: usize,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_decide_ms: Option<u32>,
}

/// What the daemon did with an answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Done {
    /// The instances launched (or, in a dry run, how many would have been).
    pub launched: usize,
    /// The instances destroyed, or drained first; at most [`MAX_IDS`] named.
    pub destroyed: Vec<String>,
    pub destroyed_count: usize,
    /// Draining instances taken back into service in place of launches.
    pub taken_back: usize,
    /// What the protections and the budget held back.
    #[serde(skip_serializing_if = "Held::is_empty")]
    pub held: Held,
    /// Destroys of instances that already drain, which were ignored.
    pub already_leaving: usize,
    /// A dry run: nothing was carried out.
    pub dry_run: bool,
}

impl Seen {
    /// What a decide on `read` with `sensors` is shown.
    pub fn of(read: &DecideView, sensors: &[Reading], max_instances: u32, backoff_ms: u64) -> Seen {
        let mut seen = Seen {
            max_instances,
            backoff_ms,
            ..Seen::default()
        };
        for r in &read.live {
            if r.surge {
                seen.hidden += 1;
            } else if r.draining() || r.state >= crate::model::InstanceState::Terminating {
                seen.leaving += 1;
            } else {
                *seen.instances.entry(r.state.as_str()).or_default() += 1;
                seen.unhealthy += usize::from(is_unhealthy(r.state, r.health));
                seen.protected += usize::from(r.protected);
            }
        }
        seen.failed_since = read
            .records
            .iter()
            .filter(|r| {
                r.state == crate::model::InstanceState::Failed && r.changed_seq > read.last_seq
            })
            .count();
        seen.sensors = sensors
            .iter()
            .map(|r| (r.reading.name.clone(), r.reading.value, r.reading.stale))
            .collect();
        seen
    }
}

impl Answer {
    pub fn of(d: &Decision) -> Answer {
        Answer {
            launch: d.launches.iter().map(|l| l.count).sum(),
            destroy: d.destroy.len(),
            status: engine_status_name(d.status),
            next_decide_ms: d.next_decide_ms,
        }
    }
}

impl Done {
    /// Names the destroyed instances, at most [`MAX_IDS`] of them.
    pub fn destroyed<'a>(mut self, ids: impl ExactSizeIterator<Item = &'a String>) -> Done {
        self.destroyed_count = ids.len();
        self.destroyed = ids.take(MAX_IDS).cloned().collect();
        self
    }
}

/// Keeps `e`: counted on the newest kept one if it is the same but for its time.
pub fn keep(kept: &Explanations, mut e: Explained) {
    let mut kept = kept.lock().unwrap();
    if let Some(last) = kept.back_mut() {
        // The same but for its times and count (every other field is named, so a new one
        // cannot be left out of the comparison).
        let Explained {
            time: _,
            first_time: _,
            repeats: _,
            by,
            seen,
            answer,
            fault,
            done,
        } = &e;
        let same = last.by == *by
            && last.seen == *seen
            && last.answer == *answer
            && last.fault == *fault
            && last.done == *done;
        if same {
            last.time = e.time;
            last.repeats += 1;
            return;
        }
    }
    e.first_time = e.time;
    e.repeats = 1;
    if kept.len() == KEPT {
        kept.pop_front();
    }
    kept.push_back(e);
}

/// A fault in a line: its kind and the line of its message that says why (a trap's cause
/// comes after its backtrace, which is in the `engine-fault` event).
pub fn fault(f: &Fault) -> String {
    let kind = serde_json::to_value(f.kind).unwrap_or_default();
    let mut lines = f.message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = match f.message.starts_with("error while executing") {
        true => lines.next_back(),
        false => lines.next(),
    }
    .unwrap_or_default();
    let first: String = first.chars().take(300).collect();
    format!("{}: {first}", kind.as_str().unwrap_or("fault"))
}
