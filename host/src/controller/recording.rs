//! What a domain's engine saw and decided, for `epu events --export-scenario`: the snapshots
//! and decisions of the carried-out decides since the engine's last full snapshot, and of the
//! stretch before it. Replayed on a fresh engine from its first step, they must decide the same.
//!
//! A decide that brought no news and changed nothing is left out: it changed none of what an
//! engine keeps (its tables and memo), so the replay is the same without it, and an idle
//! domain records nothing.

use crate::engine::bindings::{Decision, Snapshot};

/// Decides kept per stretch. When a stretch is this long, the next snapshot is made full,
/// which starts the next stretch.
const STRETCH: usize = 200;

#[derive(Default)]
pub(super) struct Recording {
    before: Vec<(Snapshot, Decision)>,
    current: Vec<(Snapshot, Decision)>,
}

impl Recording {
    /// Keeps one carried-out decide. Returns true when the stretch is full: the caller then
    /// makes the next snapshot full.
    pub fn record(&mut self, snapshot: Snapshot, decision: &Decision) -> bool {
        if snapshot.full {
            self.before = std::mem::take(&mut self.current);
        }
        // A stretch starts with a full snapshot; deltas before one are not replayable.
        let Some((_, last)) = self.current.last() else {
            if snapshot.full {
                self.current.push((snapshot, decision.clone()));
            }
            return false;
        };
        let quiet = snapshot.instances.is_empty()
            && snapshot.sensors.is_none()
            && decision.launches.is_empty()
            && decision.destroy.is_empty()
            && decision.memo.is_none()
            && decision.status == last.status;
        if !quiet || snapshot.full {
            self.current.push((snapshot, decision.clone()));
        }
        self.current.len() >= STRETCH
    }

    /// Every decide kept, oldest first; the first one is a full snapshot.
    pub fn steps(&self) -> Vec<(Snapshot, Decision)> {
        self.before.iter().chain(&self.current).cloned().collect()
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
        r.steps().iter().map(|(s, _)| s.now).collect()
    }

    #[test]
    fn it_starts_at_a_full_snapshot_and_keeps_one_stretch_before_the_current() {
        let mut r = Recording::default();
        assert!(
            !r.record(snap(1.0, false), &decision()),
            "a delta alone is not kept"
        );
        r.record(snap(2.0, true), &decision());
        r.record(snap(3.0, false), &decision());
        r.record(snap(4.0, true), &decision());
        r.record(snap(5.0, false), &decision());
        assert_eq!(times(&r), [2.0, 4.0]);
        r.record(snap(6.0, true), &decision());
        assert_eq!(times(&r), [4.0, 6.0]);
        // The stretch has one step; it asks for a full snapshot once it has STRETCH.
        let mut kept = 1;
        let mut busy = decision();
        busy.destroy.push(1);
        while !r.record(snap(7.0 + kept as f64, false), &busy) {
            kept += 1;
        }
        assert_eq!(kept + 1, STRETCH);
    }
}
