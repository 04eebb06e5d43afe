//! Rate limit for engine log lines: each line is an event in the store, so a chatty or hostile
//! engine must not flood it. At most [`LINES_PER_WINDOW`] lines per [`WINDOW`]; the rest are
//! counted and reported once when the next window opens. (Each call is also capped at 64
//! lines of at most 1 KiB by the sandbox.)

use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(10);
pub const LINES_PER_WINDOW: u32 = 100;

#[derive(Debug)]
pub struct LogBudget {
    window_start: Instant,
    used: u32,
    dropped: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget {
            window_start: Instant::now(),
            used: 0,
            dropped: 0,
        }
    }
}

impl LogBudget {
    /// Opens a new window if the current one is over; returns the lines dropped in the last
    /// window, if any, to be reported.
    pub fn roll(&mut self, now: Instant) -> Option<u64> {
        if now.duration_since(self.window_start) < WINDOW {
            return None;
        }
        self.window_start = now;
        self.used = 0;
        Some(std::mem::take(&mut self.dropped)).filter(|d| *d > 0)
    }

    /// Whether one more line may be recorded; a refused line is counted as dropped.
    pub fn take(&mut self, lines: u64) -> bool {
        if self.used < LINES_PER_WINDOW {
            self.used += 1;
            true
        } else {
            self.dropped += lines;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_budget_are_dropped_and_reported_once() {
        let start = Instant::now();
        let mut b = LogBudget::default();
        let taken = (0..250).filter(|_| b.take(1)).count();
        assert_eq!(taken, LINES_PER_WINDOW as usize);
        assert_eq!(b.roll(start + Duration::from_secs(1)), None, "same window");
        assert_eq!(b.roll(start + WINDOW + Duration::from_secs(1)), Some(150));
        assert!(b.take(1), "a new window has a new budget");
        assert_eq!(b.roll(start + WINDOW * 3), None, "nothing dropped since");
    }
}
