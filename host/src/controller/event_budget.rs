//! Rate limits for what an engine writes to the event log: each engine log line and each
//! engine fault is an event in the store, so a chatty or hostile engine must not flood it.
//! At most `per_window` events per [`WINDOW`]; the rest are counted and reported once when
//! the next window opens. (Each call is also capped at 64 log lines of at most 1 KiB by the
//! sandbox, and error text is cut to 1 KiB.)

use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(10);
/// Engine log lines recorded per window.
pub const LOG_LINES_PER_WINDOW: u32 = 100;
/// Engine fault events recorded per window (every fault is still counted in status and
/// metrics).
pub const FAULTS_PER_WINDOW: u32 = 10;

#[derive(Debug)]
pub struct EventBudget {
    per_window: u32,
    window_start: Instant,
    used: u32,
    dropped: u64,
}

impl EventBudget {
    pub fn new(per_window: u32) -> EventBudget {
        EventBudget {
            per_window,
            window_start: Instant::now(),
            used: 0,
            dropped: 0,
        }
    }

    /// Opens a new window if the current one is over; returns the events dropped in the last
    /// window, if any, to be reported.
    pub fn roll(&mut self, now: Instant) -> Option<u64> {
        if now.duration_since(self.window_start) < WINDOW {
            return None;
        }
        self.window_start = now;
        self.used = 0;
        Some(std::mem::take(&mut self.dropped)).filter(|d| *d > 0)
    }

    /// Whether one more event (standing for `count`) may be recorded; a refused one is
    /// counted as `count` dropped.
    pub fn take(&mut self, count: u64) -> bool {
        if self.used < self.per_window {
            self.used += 1;
            true
        } else {
            self.dropped += count;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_over_the_budget_are_dropped_and_reported_once() {
        let start = Instant::now();
        let mut b = EventBudget::new(LOG_LINES_PER_WINDOW);
        let taken = (0..250).filter(|_| b.take(1)).count();
        assert_eq!(taken, LOG_LINES_PER_WINDOW as usize);
        assert_eq!(b.roll(start + Duration::from_secs(1)), None, "same window");
        assert_eq!(b.roll(start + WINDOW + Duration::from_secs(1)), Some(150));
        assert!(b.take(1), "a new window has a new budget");
        assert_eq!(b.roll(start + WINDOW * 3), None, "nothing dropped since");
    }
}
