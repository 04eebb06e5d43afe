//! The latest reading of every declared sensor, shared by the pollers, the API and the
//! controllers.

use super::SensorSpec;
use crate::engine::bindings::SensorReading;
use crate::store::Store;
use crate::wakeups::Wakeups;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// What `epu status` shows of a sensor.
#[derive(Clone, Debug, Serialize)]
pub struct SensorStatus {
    pub name: String,
    pub kind: &'static str,
    pub source: String,
    /// The last value read, if any was.
    pub value: Option<f64>,
    /// When it was read.
    pub time: Option<f64>,
    pub stale: bool,
    /// Why the last poll failed, while it keeps failing.
    pub error: Option<String>,
}

struct Entry {
    spec: SensorSpec,
    /// The last value read and when.
    value: Option<(f64, f64)>,
    /// The error of the last poll, while polls fail.
    error: Option<String>,
    /// The board's change counter when a reading last arrived or the sensor started to fail.
    changed: u64,
    /// The last reading kept in the store's history, and when.
    kept: Option<(f64, f64)>,
}

impl Entry {
    fn stale(&self, now: f64) -> bool {
        let too_old = match (self.value, self.spec.stale_after()) {
            (Some((_, time)), Some(limit)) => now - time > limit,
            _ => false,
        };
        self.error.is_some() || too_old
    }
}

/// The readings a decide sees, and the counter to pass next time.
pub struct Readings {
    pub sensors: Vec<Reading>,
    pub seen: u64,
}

/// One sensor's latest reading for a decide.
#[derive(Clone, Debug)]
pub struct Reading {
    pub reading: SensorReading,
    /// Whether it arrived (or the sensor started to fail) since the previous decide.
    pub fresh: bool,
}

/// The sensor board of the daemon.
pub struct SensorBoard {
    domains: Mutex<Boards>,
    store: Arc<Store>,
    wakeups: Arc<Wakeups>,
}

#[derive(Default)]
struct Boards {
    by_domain: HashMap<String, BTreeMap<String, Entry>>,
    /// Bumped on every change of any reading.
    counter: u64,
}

/// A sensor that a push cannot reach, and why.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("domain '{0}' has no sensor '{1}' (declared: {2})")]
    Unknown(String, String, String),
    #[error("sensor '{0}' is read from {1}; only `pushed` sensors take pushes")]
    NotPushed(String, String),
}

impl SensorBoard {
    pub fn new(store: Arc<Store>, wakeups: Arc<Wakeups>) -> SensorBoard {
        SensorBoard {
            domains: Default::default(),
            store,
            wakeups,
        }
    }

    /// Sets up a domain's sensors with no readings, except the pushed readings kept in the
    /// store.
    pub fn declare(&self, domain: &str, specs: &[SensorSpec]) {
        let pushed = specs.iter().any(|s| matches!(s, SensorSpec::Pushed { .. }));
        let kept = match pushed {
            true => self.store.pushed_readings(domain).unwrap_or_else(|e| {
                tracing::error!(domain, "reading the kept sensor readings: {e:#}");
                Vec::new()
            }),
            false => Vec::new(),
        };
        let mut boards = self.domains.lock().unwrap();
        let counter = boards.counter;
        let entries = specs
            .iter()
            .map(|spec| {
                let value = kept
                    .iter()
                    .find(|(name, ..)| name == spec.name())
                    .filter(|_| matches!(spec, SensorSpec::Pushed { .. }))
                    .map(|(_, v, t)| (*v, *t));
                let entry = Entry {
                    spec: spec.clone(),
                    value,
                    error: None,
                    changed: counter,
                    kept: value,
                };
                (spec.name().to_string(), entry)
            })
            .collect();
        boards.by_domain.insert(domain.to_string(), entries);
    }

    pub fn forget(&self, domain: &str) {
        self.domains.lock().unwrap().by_domain.remove(domain);
    }

    /// Checks that `name` is a pushed sensor of `domain`.
    pub fn check_push(&self, domain: &str, name: &str) -> Result<(), PushError> {
        let boards = self.domains.lock().unwrap();
        let entries = boards.by_domain.get(domain);
        match entries.and_then(|e| e.get(name)) {
            Some(e) if matches!(e.spec, SensorSpec::Pushed { .. }) => Ok(()),
            Some(e) => Err(PushError::NotPushed(name.into(), e.spec.source())),
            None => {
                let declared: Vec<&str> = entries
                    .into_iter()
                    .flat_map(|e| e.keys().map(String::as_str))
                    .collect();
                let declared = if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                };
                Err(PushError::Unknown(domain.into(), name.into(), declared))
            }
        }
    }

    /// Records a poll's or a push's outcome at `time`. A reading, or a sensor that starts to
    /// fail, wakes the domain's controller; failing and recovering are events.
    pub fn record(&self, domain: &str, name: &str, outcome: Result<f64, String>, time: f64) {
        let mut kept = None;
        let event = {
            let mut boards = self.domains.lock().unwrap();
            let next = boards.counter + 1;
            let Some(entry) = boards
                .by_domain
                .get_mut(domain)
                .and_then(|e| e.get_mut(name))
            else {
                return;
            };
            // Every reading that arrives is news for the engine; a failing poll only when it
            // starts to fail (the reading turns stale).
            let (changed, event) = match outcome {
                Ok(v) => {
                    let keep = entry.kept.is_none_or(|(kv, kt)| {
                        kv != v || time - kt >= crate::store::READING_KEEP_EVERY
                    });
                    if keep {
                        entry.kept = Some((v, time));
                        kept = Some(v);
                    }
                    let recovered = entry.error.take().is_some();
                    entry.value = Some((v, time));
                    let event = recovered
                        .then(|| ("sensor-recovered", json!({"sensor": name, "value": v})));
                    (true, event)
                }
                Err(e) => {
                    let first = entry.error.is_none();
                    let event =
                        first.then(|| ("sensor-failed", json!({"sensor": name, "error": e})));
                    entry.error = Some(e);
                    (first, event)
                }
            };
            if changed {
                entry.changed = next;
                boards.counter = next;
                self.wakeups.wake(domain);
            }
            event
        };
        if let Some((kind, detail)) = event {
            if let Err(e) = self.store.event(Some(domain), None, kind, detail) {
                tracing::error!(domain, "recording a {kind} event: {e:#}");
            }
        }
        if let Some(v) = kept {
            if let Err(e) = self.store.save_reading(domain, name, v, time) {
                tracing::error!(domain, "keeping a reading of {name}: {e:#}");
            }
        }
    }

    /// The readings for a decide at `now`; `seen` is what the previous decide's call returned.
    pub fn readings(&self, domain: &str, now: f64, seen: u64) -> Readings {
        let boards = self.domains.lock().unwrap();
        let mut out = Readings {
            sensors: Vec::new(),
            seen: boards.counter,
        };
        for (name, e) in boards.by_domain.get(domain).into_iter().flatten() {
            let Some((value, time)) = e.value else {
                continue;
            };
            out.sensors.push(Reading {
                reading: SensorReading {
                    name: name.clone(),
                    value,
                    time,
                    stale: e.stale(now),
                },
                fresh: e.changed > seen,
            });
        }
        out
    }

    /// A domain's sensors as `epu status` shows them.
    pub fn status(&self, domain: &str, now: f64) -> Vec<SensorStatus> {
        let boards = self.domains.lock().unwrap();
        boards
            .by_domain
            .get(domain)
            .into_iter()
            .flatten()
            .map(|(name, e)| SensorStatus {
                name: name.clone(),
                kind: e.spec.kind(),
                source: e.spec.source(),
                value: e.value.map(|(v, _)| v),
                time: e.value.map(|(_, t)| t),
                stale: e.stale(now),
                error: e.error.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> (tempfile::TempDir, SensorBoard) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("epu.db")).unwrap());
        let board = SensorBoard::new(store, Arc::new(Wakeups::default()));
        let specs = [
            SensorSpec::Pushed {
                name: "p".into(),
                stale_after_ms: Some(1000),
            },
            SensorSpec::Command {
                name: "c".into(),
                command: vec!["true".into()],
                cwd: None,
                interval_ms: 100,
                timeout_ms: 100,
            },
        ];
        board.declare("d", &specs);
        (dir, board)
    }

    fn names(readings: &[Reading]) -> Vec<&str> {
        readings.iter().map(|r| r.reading.name.as_str()).collect()
    }

    fn fresh(r: &Readings) -> Vec<&str> {
        r.sensors
            .iter()
            .filter(|r| r.fresh)
            .map(|r| r.reading.name.as_str())
            .collect()
    }

    #[test]
    fn a_decide_sees_every_reading_and_the_ones_new_since_the_last_decide() {
        let (_dir, b) = board();
        let r = b.readings("d", 10.0, 0);
        assert!(r.sensors.is_empty(), "no reading yet is no reading at all");
        b.record("d", "p", Ok(4.0), 10.0);
        b.record("d", "c", Ok(2.0), 10.0);
        let first = b.readings("d", 10.0, 0);
        assert_eq!(names(&first.sensors), ["c", "p"]);
        assert_eq!(fresh(&first), ["c", "p"]);
        b.record("d", "p", Ok(4.0), 10.5);
        let second = b.readings("d", 10.5, first.seen);
        assert_eq!(
            fresh(&second),
            ["p"],
            "a reading of the same value is news too"
        );
        assert!(fresh(&b.readings("d", 10.5, second.seen)).is_empty());
        b.record("nope", "p", Ok(1.0), 11.0);
        b.record("d", "nope", Ok(1.0), 11.0);
        assert!(fresh(&b.readings("d", 11.0, second.seen)).is_empty());
    }

    #[test]
    fn failures_and_age_make_a_reading_stale_and_failing_is_one_event() {
        let (_dir, b) = board();
        b.record("d", "c", Ok(2.0), 10.0);
        b.record("d", "c", Err("broker down".into()), 10.1);
        b.record("d", "c", Err("broker still down".into()), 10.2);
        let status = b.status("d", 10.2);
        let c = status.iter().find(|s| s.name == "c").unwrap();
        assert!(c.stale);
        assert_eq!(
            (c.value, c.error.as_deref()),
            (Some(2.0), Some("broker still down"))
        );
        let events = b.store.events_after(0, Some("d"), 100).unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["sensor-failed"]);
        b.record("d", "c", Ok(3.0), 10.3);
        assert!(!b.readings("d", 10.3, 0).sensors[0].reading.stale);
        assert_eq!(b.store.events_after(0, Some("d"), 100).unwrap().len(), 2);
        // A pushed reading older than stale_after_ms is stale; a fresh one is not.
        b.record("d", "p", Ok(1.0), 10.0);
        let p = |now| {
            b.readings("d", now, 0)
                .sensors
                .iter()
                .find(|r| r.reading.name == "p")
                .unwrap()
                .reading
                .stale
        };
        assert!(!p(10.9));
        assert!(p(11.1));
    }

    #[test]
    fn pushes_reach_only_declared_pushed_sensors() {
        let (_dir, b) = board();
        assert!(b.check_push("d", "p").is_ok());
        assert!(matches!(
            b.check_push("d", "c"),
            Err(PushError::NotPushed(..))
        ));
        let err = b.check_push("d", "x").unwrap_err().to_string();
        assert!(err.contains("declared: c, p"), "{err}");
        assert!(matches!(
            b.check_push("other", "p"),
            Err(PushError::Unknown(..))
        ));
    }
}
