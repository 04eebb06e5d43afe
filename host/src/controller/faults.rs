//! Engine faults and quarantine. Every fault is counted and recorded with its kind (fault
//! events are rate-limited). The engine is judged by its fault rate: once `quarantine_after`
//! of its last `fault_window` calls faulted, it is quarantined and the domain's fallback runs
//! instead, until a successful swap or `epu engine resume`. An engine that faults on every
//! other call, or behaves once on each fresh instance and then traps, is caught as surely as
//! one that faults on every call.

use super::event_budget::EventBudget;
use super::Controller;
use crate::engine::{EngineError, TrapKind};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;

/// What went wrong in a failed decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A call ran past its time budget.
    Timeout,
    /// The engine asked for more memory than its cap.
    Memory,
    /// Any other trap; the message carries the wasm backtrace.
    Trap,
    /// The engine returned an error.
    Error,
    /// The decision was refused by the host's checks.
    InvalidDecision,
    /// The engine could not be instantiated or initialized.
    Init,
}

/// A failed engine call, as the controller sees it.
#[derive(Debug)]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

impl Fault {
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Fault {
        Fault {
            kind,
            message: message.into(),
        }
    }

    /// A failure of a call on a running instance.
    pub fn from_call(e: EngineError) -> Fault {
        match e {
            EngineError::Rejected(m) => Fault::new(FaultKind::Error, m),
            e @ EngineError::Schema(_) => Fault::new(FaultKind::Error, e.to_string()),
            EngineError::Trap(TrapKind::Timeout, m) => Fault::new(FaultKind::Timeout, m),
            EngineError::Trap(TrapKind::Memory, m) => Fault::new(FaultKind::Memory, m),
            EngineError::Trap(TrapKind::Trap, m) => Fault::new(FaultKind::Trap, m),
        }
    }
}

/// The outcomes of an engine's latest calls, newest last.
#[derive(Debug, Default)]
pub(super) struct FaultWindow {
    outcomes: VecDeque<bool>,
}

impl FaultWindow {
    /// Adds one call's outcome (true: it faulted) to a window of `size`; returns the faults in
    /// the window.
    pub fn push(&mut self, faulted: bool, size: usize) -> u32 {
        self.outcomes.push_back(faulted);
        while self.outcomes.len() > size.max(1) {
            self.outcomes.pop_front();
        }
        self.faults()
    }

    pub fn faults(&self) -> u32 {
        self.outcomes.iter().filter(|f| **f).count() as u32
    }

    pub fn clear(&mut self) {
        self.outcomes.clear();
    }
}

/// What the controller keeps of its engine's faults.
#[derive(Debug)]
pub(super) struct FaultBook {
    pub window: FaultWindow,
    /// Fault events recorded per time window.
    pub events: EventBudget,
}

impl Default for FaultBook {
    fn default() -> Self {
        FaultBook {
            window: FaultWindow::default(),
            events: EventBudget::new(super::event_budget::FAULTS_PER_WINDOW),
        }
    }
}

impl Controller {
    /// Records a failed engine call; the memo and the instances stay as they were.
    /// Quarantines the engine when the faults in its window reach the domain's limit.
    pub(super) fn fault(&mut self, fault: Fault) {
        self.timed_out |= fault.kind == FaultKind::Timeout;
        let kind = serde_json::to_value(fault.kind).unwrap_or_default();
        self.services
            .metrics
            .engine_faults
            .with_label_values(&[self.spec.name.as_str(), kind.as_str().unwrap_or("unknown")])
            .inc();
        if let Some(dropped) = self.faults.events.roll(std::time::Instant::now()) {
            self.engine_event(
                "engine-faults-unrecorded",
                json!({"count": dropped, "why": "over the fault event rate limit"}),
            );
        }
        if self.faults.events.take(1) {
            self.engine_event(
                "engine-fault",
                json!({"kind": fault.kind, "error": fault.message}),
            );
        }
        let limits = &self.spec.limits;
        let in_window = self.faults.window.push(true, limits.window() as usize);
        {
            let mut st = self.status.lock().unwrap();
            st.last_fault = Some(fault.message);
            st.last_fault_kind = Some(fault.kind);
            st.consecutive_faults += 1;
            st.faults_in_window = in_window;
            *st.faults.entry(fault.kind).or_default() += 1;
        }
        if !self.quarantined && in_window >= limits.quarantine_after.max(1) {
            self.set_quarantine(true);
        }
    }

    /// Marks a good engine call.
    pub(super) fn no_fault(&mut self) {
        let size = self.spec.limits.window() as usize;
        let in_window = self.faults.window.push(false, size);
        let mut st = self.status.lock().unwrap();
        st.last_fault = None;
        st.consecutive_faults = 0;
        st.faults_in_window = in_window;
    }

    pub(super) fn set_quarantine(&mut self, on: bool) {
        self.quarantined = on;
        self.preserve_target = if on { self.last_target } else { None };
        let detail =
            json!({"fallback": self.spec.limits.fallback, "preserve_target": self.preserve_target});
        if let Err(e) =
            self.services
                .store
                .set_quarantine(&self.spec.name, on, self.preserve_target, &detail)
        {
            tracing::error!(domain = %self.spec.name, "recording the quarantine: {e:#}");
        }
        if !on {
            self.faults.window.clear();
        }
        let mut st = self.status.lock().unwrap();
        st.quarantined = on;
        if !on {
            st.consecutive_faults = 0;
            st.faults_in_window = 0;
        }
    }

    /// `epu engine resume`: lifts the quarantine; the next decide runs on a fresh instance.
    pub(super) fn resume(&mut self) -> Result<(), super::CommandError> {
        if !self.quarantined {
            return Err(super::CommandError::Refused(format!(
                "the engine of '{}' is not quarantined",
                self.spec.name
            )));
        }
        self.instance = None;
        self.set_quarantine(false);
        self.services.wakeups.wake(&self.spec.name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::FaultWindow;

    #[test]
    fn the_window_counts_the_faults_of_the_latest_calls_only() {
        let mut w = FaultWindow::default();
        // Faulting on every other call: 3 faults within 6 calls.
        let counts: Vec<u32> = [true, false, true, false, true, false]
            .iter()
            .map(|f| w.push(*f, 10))
            .collect();
        assert_eq!(counts, [1, 1, 2, 2, 3, 3]);
        // Ten good calls push every fault out of a window of 10.
        for _ in 0..10 {
            w.push(false, 10);
        }
        assert_eq!(w.faults(), 0);
        // A smaller window forgets sooner.
        w.push(true, 2);
        w.push(false, 2);
        assert_eq!(w.push(false, 2), 0);
    }
}
