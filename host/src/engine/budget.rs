//! The time an engine call may take. An engine is judged by the work it does: the CPU time of
//! the thread that runs it, host calls included. A loaded host slows a call down without
//! making it a fault. A wall-clock backstop still ends any call, however it spends its time.
//!
//! Both are checked on wasmtime's epoch ticks; a call's first check comes one tick in.
//! Reading a thread's CPU time is a system call (about 0.3 µs here, half the cost of a whole
//! decide), so a call does not read it at its start. Each thread keeps a recent reading
//! instead, taken at most every [`REFRESH`]; a call starts from it, and so is charged at most
//! `REFRESH` of CPU time that was not its own. A call that ends within its first tick, as
//! nearly every decide does, costs one monotonic clock read (a few ns) and, at most once a
//! millisecond per thread, one CPU-time read.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How old a thread's CPU-time reading may be when a call starts from it.
pub const REFRESH: Duration = Duration::from_millis(1);

thread_local! {
    /// This thread's latest CPU-time reading, and when it was taken.
    static RECENT: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// The thread's CPU time as of at most [`REFRESH`] before `now`: a CPU time no later than
/// `now`'s, and no more than `REFRESH` earlier.
fn recent_cpu_time(now: Instant) -> Duration {
    RECENT.with(|recent| match recent.get() {
        Some((at, cpu)) if now.saturating_duration_since(at) <= REFRESH => cpu,
        _ => {
            let cpu = thread_cpu_time();
            recent.set(Some((now, cpu)));
            cpu
        }
    })
}

/// How often the epoch ticks; deadlines are counted in ticks, so this is their grain.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Which limit ended a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overrun {
    /// The call used more CPU time than its budget.
    Cpu { used: Duration, budget: Duration },
    /// The call ran longer than the wall-clock backstop.
    Wall { ran: Duration, limit: Duration },
}

impl std::fmt::Display for Overrun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overrun::Cpu { used, budget } => write!(
                f,
                "the call used {} ms of CPU time, over its budget of {} ms (timeout_ms)",
                used.as_millis(),
                budget.as_millis()
            ),
            Overrun::Wall { ran, limit } => write!(
                f,
                "the call ran {} ms, over the wall-clock backstop of {} ms (wall_timeout_ms)",
                ran.as_millis(),
                limit.as_millis()
            ),
        }
    }
}

/// How many times the per-call CPU budget instantiation and `initialize` may use, within the
/// wall-clock backstop: an engine's first call (a Python guest's imports, a JS engine's
/// startup) is heavier than any decide.
pub const SETUP_FACTOR: u32 = 10;

/// The accounting of the call in progress on one engine instance.
#[derive(Clone, Debug)]
pub struct CallClock {
    /// The budget of the call in progress.
    cpu_budget: Duration,
    /// The budget of each call after setup.
    call_budget: Duration,
    wall_limit: Duration,
    started: Instant,
    /// The thread's CPU time at (or at most [`REFRESH`] before) the start.
    started_cpu: Duration,
    /// Set when a check ended the call.
    pub overrun: Option<Overrun>,
}

impl CallClock {
    pub fn new(cpu_budget: Duration, wall_limit: Duration) -> CallClock {
        CallClock {
            cpu_budget,
            call_budget: cpu_budget,
            wall_limit: wall_limit.max(cpu_budget),
            started: Instant::now(),
            started_cpu: Duration::ZERO,
            overrun: None,
        }
    }

    /// Starts a call; returns the epoch ticks until its first check.
    pub fn start(&mut self) -> u64 {
        self.cpu_budget = self.call_budget;
        self.begin()
    }

    /// Starts instantiation or `initialize`, whose budget is [`SETUP_FACTOR`] times a call's,
    /// up to the wall-clock backstop (and never less than a call's).
    pub fn start_setup(&mut self) -> u64 {
        let setup = (self.call_budget * SETUP_FACTOR).min(self.wall_limit);
        self.cpu_budget = setup.max(self.call_budget);
        self.begin()
    }

    fn begin(&mut self) -> u64 {
        self.started = Instant::now();
        self.started_cpu = recent_cpu_time(self.started);
        self.overrun = None;
        1
    }

    /// The CPU time the call has used: never more than the wall-clock time it ran.
    fn used(&mut self, ran: Duration) -> Duration {
        let cpu = thread_cpu_time();
        RECENT.with(|recent| recent.set(Some((Instant::now(), cpu))));
        cpu.saturating_sub(self.started_cpu).min(ran)
    }

    /// A check on an epoch deadline: the ticks until the next one, or the limit the call broke.
    pub fn check(&mut self) -> Result<u64, Overrun> {
        let ran = self.started.elapsed();
        let used = self.used(ran);
        let over = if used >= self.cpu_budget {
            Some(Overrun::Cpu {
                used,
                budget: self.cpu_budget,
            })
        } else if ran >= self.wall_limit {
            Some(Overrun::Wall {
                ran,
                limit: self.wall_limit,
            })
        } else {
            None
        };
        if let Some(over) = over {
            self.overrun = Some(over);
            return Err(over);
        }
        let cpu_left = self.cpu_budget - used;
        let wall_left = self.wall_limit - ran;
        Ok(ticks(cpu_left.min(wall_left)))
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64).max(1)
}

/// The CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let t = thread_cpu_time();
        while thread_cpu_time() - t < d {
            std::hint::black_box(0);
        }
    }

    #[test]
    fn a_sleeping_call_uses_no_cpu_and_is_ended_by_the_wall_clock() {
        let mut c = CallClock::new(Duration::from_millis(20), Duration::from_millis(60));
        assert_eq!(c.start(), 1, "the first check comes one tick in");
        std::thread::sleep(Duration::from_millis(30));
        assert!(c.check().is_ok(), "30 ms asleep uses no CPU");
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(c.check(), Err(Overrun::Wall { .. })));
        assert!(c.overrun.is_some());
    }

    #[test]
    fn a_spinning_call_is_ended_by_its_cpu_budget() {
        let mut c = CallClock::new(Duration::from_millis(20), Duration::from_secs(10));
        c.start();
        spin(Duration::from_millis(5));
        let next = c.check().expect("5 ms of 20");
        assert!((1..=4).contains(&next), "{next}");
        spin(Duration::from_millis(20));
        match c.check() {
            Err(Overrun::Cpu { used, .. }) => assert!(used >= Duration::from_millis(20)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_call_is_charged_at_most_the_refresh_interval_of_work_before_it() {
        // Work on the thread just before the call, within the refresh interval of the reading
        // the call starts from.
        let _ = recent_cpu_time(Instant::now());
        spin(Duration::from_micros(500));
        let mut c = CallClock::new(Duration::from_millis(2), Duration::from_secs(10));
        c.start();
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            c.check().is_ok(),
            "charged with at most {REFRESH:?} not its own"
        );
        // A reading older than the refresh interval is taken anew at the start: the 3 ms of
        // work before the call are not charged to it.
        spin(Duration::from_millis(3));
        c.start();
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            c.check().is_ok(),
            "charged with work done before it started"
        );
    }

    #[test]
    fn the_backstop_is_never_below_the_budget() {
        let mut c = CallClock::new(Duration::from_millis(50), Duration::from_millis(1));
        c.start();
        assert!(c.check().is_ok());
    }

    #[test]
    fn setup_gets_ten_budgets_within_the_backstop_and_calls_get_one() {
        let mut c = CallClock::new(Duration::from_millis(5), Duration::from_secs(10));
        c.start_setup();
        spin(Duration::from_millis(20));
        assert!(c.check().is_ok(), "20 ms of a 50 ms setup budget");
        c.start();
        spin(Duration::from_millis(20));
        assert!(matches!(c.check(), Err(Overrun::Cpu { budget, .. }) if budget.as_millis() == 5));
        let mut capped = CallClock::new(Duration::from_millis(5), Duration::from_millis(8));
        capped.start_setup();
        spin(Duration::from_millis(10));
        assert!(
            matches!(capped.check(), Err(Overrun::Cpu { budget, .. }) if budget.as_millis() == 8),
            "the backstop caps the setup budget"
        );
    }
}
