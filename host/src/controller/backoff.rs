//! Crash-loop backoff. A worker that fails within [`FAST_FAIL`] of its launch without ever
//! sending a heartbeat is crash-looping; a worker that worked and then died is not. Each decide
//! that sees crash-looping failures doubles how long a change must wait before it triggers the
//! next decide (up to the pulse); each decide that sees none halves it.

use crate::model::InstanceState;
use crate::store::InstanceRecord;
use std::time::Duration;

/// A failure sooner than this after the launch, before any heartbeat, is a crash loop.
pub const FAST_FAIL: Duration = Duration::from_secs(2);
/// The first backoff.
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
pub struct Backoff {
    current: Duration,
}

impl Backoff {
    /// The wait in force.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// Updates the backoff from the instances of a decide (`changed_after` is the sequence
    /// number the previous decide saw). Returns the number of crash-looping failures when
    /// the backoff grew.
    pub fn observe(
        &mut self,
        records: &[InstanceRecord],
        changed_after: i64,
        cap: Duration,
    ) -> Option<usize> {
        let fast_failures = records
            .iter()
            .filter(|r| r.changed_seq > changed_after && r.state == InstanceState::Failed)
            .filter(|r| {
                r.last_heartbeat.is_none() && r.state_time - r.created < FAST_FAIL.as_secs_f64()
            })
            .count();
        let before = self.current;
        self.current = if fast_failures > 0 {
            (self.current * 2).clamp(MIN_BACKOFF, cap.max(MIN_BACKOFF))
        } else if self.current > MIN_BACKOFF {
            self.current / 2
        } else {
            Duration::ZERO
        };
        (self.current > before).then_some(fast_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Health;

    fn failed(seq: i64, lived: f64, heartbeat: bool) -> InstanceRecord {
        InstanceRecord {
            state_time: 100.0 + lived,
            health: Health::Unknown,
            health_time: 100.0,
            last_heartbeat: heartbeat.then_some(100.5),
            created: 100.0,
            ..InstanceRecord::for_test(seq as u64, InstanceState::Failed, seq)
        }
    }

    const CAP: Duration = Duration::from_secs(5);

    #[test]
    fn fast_failures_double_it_up_to_the_cap() {
        let mut b = Backoff::default();
        let mut seen = Vec::new();
        let mut grew = Vec::new();
        for seq in 1..=8 {
            grew.push(
                b.observe(&[failed(seq, 0.01, false)], seq - 1, CAP)
                    .is_some(),
            );
            seen.push(b.current().as_millis());
        }
        assert_eq!(grew, [true, true, true, true, true, true, false, false]);
        assert_eq!(seen, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }

    #[test]
    fn quiet_decides_halve_it_back_to_zero() {
        let mut b = Backoff::default();
        for seq in 1..=3 {
            b.observe(&[failed(seq, 0.01, false)], seq - 1, CAP);
        }
        assert_eq!(b.current(), Duration::from_millis(1000));
        let mut seen = Vec::new();
        for _ in 0..4 {
            assert_eq!(b.observe(&[], 10, CAP), None);
            seen.push(b.current().as_millis());
        }
        assert_eq!(seen, [500, 250, 0, 0]);
    }

    #[test]
    fn workers_that_worked_or_lived_long_are_not_crash_looping() {
        let mut b = Backoff::default();
        assert_eq!(
            b.observe(&[failed(1, 0.5, true)], 0, CAP),
            None,
            "it had sent a heartbeat"
        );
        assert_eq!(
            b.observe(&[failed(2, 30.0, false)], 1, CAP),
            None,
            "it lived 30 s"
        );
        assert_eq!(
            b.observe(&[failed(3, 0.1, false)], 3, CAP),
            None,
            "seen by an earlier decide"
        );
        assert_eq!(b.current(), Duration::ZERO);
    }
}
