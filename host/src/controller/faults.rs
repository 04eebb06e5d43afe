//! Engine faults and quarantine. Every fault is an event with its kind; after
//! `quarantine_after` faults in a row the engine is quarantined and the domain's fallback
//! runs instead, until a successful swap or `epu engine resume`.

use super::Controller;
use crate::engine::{EngineError, TrapKind};
use serde::Serialize;
use serde_json::json;

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
            EngineError::Trap(TrapKind::Timeout, m) => Fault::new(FaultKind::Timeout, m),
            EngineError::Trap(TrapKind::Memory, m) => Fault::new(FaultKind::Memory, m),
            EngineError::Trap(TrapKind::Trap, m) => Fault::new(FaultKind::Trap, m),
        }
    }
}

impl Controller {
    /// Records a failed decide; the memo and the instances stay as they were. Quarantines the
    /// engine when the faults in a row reach the domain's limit.
    pub(super) fn fault(&mut self, fault: Fault) {
        self.timed_out |= fault.kind == FaultKind::Timeout;
        let kind = serde_json::to_value(fault.kind).unwrap_or_default();
        self.services
            .metrics
            .engine_faults
            .with_label_values(&[self.spec.name.as_str(), kind.as_str().unwrap_or("unknown")])
            .inc();
        self.event(
            "engine-fault",
            json!({"kind": fault.kind, "error": fault.message}),
        );
        let in_a_row = {
            let mut st = self.status.lock().unwrap();
            st.last_fault = Some(fault.message);
            st.last_fault_kind = Some(fault.kind);
            st.consecutive_faults += 1;
            *st.faults.entry(fault.kind).or_default() += 1;
            st.consecutive_faults
        };
        if !self.quarantined && in_a_row >= self.spec.limits.quarantine_after.max(1) {
            self.set_quarantine(true);
        }
    }

    /// Marks a good decide.
    pub(super) fn no_fault(&mut self) {
        let mut st = self.status.lock().unwrap();
        st.last_fault = None;
        st.consecutive_faults = 0;
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
        let mut st = self.status.lock().unwrap();
        st.quarantined = on;
        if !on {
            st.consecutive_faults = 0;
        }
    }

    /// `epu engine resume`: lifts the quarantine; the next decide runs on a fresh instance.
    pub(super) fn resume(&mut self) -> Result<(), String> {
        if !self.quarantined {
            return Err(format!(
                "the engine of '{}' is not quarantined",
                self.spec.name
            ));
        }
        self.instance = None;
        self.set_quarantine(false);
        self.services.wakeups.wake(&self.spec.name);
        Ok(())
    }
}
