//! What a domain's engine saw and decided, for `epu events --export-scenario`: the snapshots
//! and decisions of the carried-out decides since the engine's last full snapshot, and of the
//! stretch before it, each with the seed of its random stream. Replayed on a fresh engine from
//! its first step, they must decide the same.
//!
//! A decide that brought no news and changed nothing is left out: it changed none of what an
//! engine keeps (its tables and memo), so the replay is the same without it, and an idle
//! domain records nothing.
//!
//! What is kept is bounded: at most [`STRETCH`] decides per stretch and [`MAX_BYTES`] in all.
//! When a step would go over the bytes, the stretch before is dropped first; if that is not
//! enough, the current stretch ends and the next snapshot is made full, to start a new one.

use super::RecordedStep;
use crate::engine::bindings::{Decision, Snapshot};

/// Decides kept per stretch. When a stretch is this long, the next snapshot is made full,
/// which starts the next stretch.
const STRETCH: usize = 200;
/// The bytes a domain's recording may hold, snapshots and decisions together.
pub const MAX_BYTES: usize = 4 << 20;

#[derive(Default)]
pub(super) struct Recording {
    before: Vec<RecordedStep>,
    current: Vec<RecordedStep>,
    before_bytes: usize,
    current_bytes: usize,
}

/// What a snapshot makes the host hold, roughly: its records and every byte of text.
fn snapshot_bytes(s: &Snapshot) -> usize {
    use crate::engine::bindings::{Instance, InstanceDetails, SensorReading};
    let details: usize = s
        .details
        .iter()
        .flatten()
        .map(|d| {
            std::mem::size_of::<InstanceDetails>()
                + d.id.len()
                + d.launch_id.len()
                + d.vars
                    .iter()
                    .map(|(k, v)| 48 + k.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    let sensors: usize = s
        .sensors
        .iter()
        .flatten()
        .map(|r| std::mem::size_of::<SensorReading>() + r.name.len())
        .sum();
    std::mem::size_of::<Snapshot>()
        + s.instances.len() * std::mem::size_of::<Instance>()
        + details
        + sensors
        + s.memo.as_ref().map_or(0, Vec::len)
}

fn step_bytes(s: &Snapshot, d: &Decision) -> usize {
    snapshot_bytes(s)
        + crate::contract::decision::size(d) as usize
        + std::mem::size_of::<Decision>()
}

impl Recording {
    /// Keeps one carried-out decide. Returns true when the stretch is full: the caller then
    /// makes the next snapshot full.
    pub fn record(&mut self, snapshot: Snapshot, decision: &Decision, seed: u64) -> bool {
        if snapshot.full && !self.current.is_empty() {
            self.end_stretch();
        }
        // A stretch starts with a full snapshot; deltas before one are not replayable.
        let Some((_, last, _)) = self.current.last() else {
            if snapshot.full {
                self.push(snapshot, decision, seed);
            }
            return false;
        };
        let quiet = snapshot.instances.is_empty()
            && snapshot.sensors.is_none()
            && decision.launches.is_empty()
            && decision.destroy.is_empty()
            && decision.memo.is_none()
            && decision.status == last.status;
        if (!quiet || snapshot.full) && !self.push(snapshot, decision, seed) {
            return true;
        }
        self.current.len() >= STRETCH
    }

    /// Adds a step within the byte budget; false when the current stretch had to end.
    fn push(&mut self, snapshot: Snapshot, decision: &Decision, seed: u64) -> bool {
        let bytes = step_bytes(&snapshot, decision);
        if self.before_bytes + self.current_bytes + bytes > MAX_BYTES {
            self.before.clear();
            self.before_bytes = 0;
        }
        if self.current_bytes + bytes > MAX_BYTES {
            self.end_stretch();
            // A full snapshot within the budget alone starts the new stretch at once.
            if !(snapshot.full && bytes <= MAX_BYTES) {
                return false;
            }
            if self.before_bytes + bytes > MAX_BYTES {
                self.before.clear();
                self.before_bytes = 0;
            }
        }
        self.current.push((snapshot, decision.clone(), seed));
        self.current_bytes += bytes;
        true
    }

    /// Ends the current stretch: it becomes the one before, and the next starts empty.
    fn end_stretch(&mut self) {
        self.before = std::mem::take(&mut self.current);
        self.before_bytes = std::mem::take(&mut self.current_bytes);
    }

    /// Every decide kept, oldest first; the first one is a full snapshot.
    pub fn steps(&self) -> Vec<RecordedStep> {
        self.before.iter().chain(&self.current).cloned().collect()
    }

    /// The bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.before_bytes + self.current_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bindings::EngineStatus;

    fn snap(now: f64, full: bool) -> Snapshot {
        Snapshot {
            now,
            full,
            instances: vec![],
            details: None,
            sensors: None,
            memo: None,
        }
    }

    fn decision() -> Decision {
        Decision {
            launches: vec![],
            destroy: vec![],
            next_decide_ms: None,
            memo: None,
            status: EngineStatus::Stable,
        }
    }

    fn times(r: &Recording) -> Vec<f64> {
        r.steps().iter().map(|(s, ..)| s.now).collect()
    }

    #[test]
    fn it_starts_at_a_full_snapshot_and_keeps_one_stretch_before_the_current() {
        let mut r = Recording::default();
        assert!(
            !r.record(snap(1.0, false), &decision(), 1),
            "a delta alone is not kept"
        );
        r.record(snap(2.0, true), &decision(), 2);
        r.record(snap(3.0, false), &decision(), 3);
        r.record(snap(4.0, true), &decision(), 4);
        r.record(snap(5.0, false), &decision(), 5);
        assert_eq!(times(&r), [2.0, 4.0]);
        r.record(snap(6.0, true), &decision(), 6);
        assert_eq!(times(&r), [4.0, 6.0]);
        assert_eq!(r.steps()[1].2, 6, "the seed is kept with its step");
        // The stretch has one step; it asks for a full snapshot once it has STRETCH.
        let mut kept = 1;
        let mut busy = decision();
        busy.destroy.push(1);
        while !r.record(snap(7.0 + kept as f64, false), &busy, 0) {
            kept += 1;
        }
        assert_eq!(kept + 1, STRETCH);
    }

    #[test]
    fn big_memos_on_every_decide_stay_within_the_byte_budget() {
        let mut r = Recording::default();
        let mut d = decision();
        d.memo = Some(vec![b'm'; 1 << 20]);
        let mut full = true;
        for i in 0..400 {
            full = r.record(snap(i as f64, full), &d, i);
            assert!(r.bytes() <= MAX_BYTES, "step {i}: {} bytes", r.bytes());
        }
        // What is kept still starts at a full snapshot and replays.
        let steps = r.steps();
        assert!(!steps.is_empty() && steps[0].0.full);
        let fulls = steps.iter().filter(|(s, ..)| s.full).count();
        assert!(fulls <= 2, "at most two stretches: {fulls}");
        // A step too big for the budget alone is not kept, and ends the stretch.
        r.record(snap(1e6, true), &decision(), 0);
        d.memo = Some(vec![b'm'; MAX_BYTES + 1]);
        assert!(r.record(snap(1e6 + 1.0, false), &d, 0));
        assert!(r.bytes() <= MAX_BYTES);
    }
}
