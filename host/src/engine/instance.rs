//! One live instance of an engine: its store, its bindings, and the calls of the world.

use super::bindings::{self, Decision, LogLevel, Snapshot};
use super::sandbox::HostState;
use super::{LoadedEngine, EPOCH_TICK};
use std::time::Duration;
use wasmtime::Store;

/// How a call failed, when the instance cannot be used again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrapKind {
    /// The call ran past its time budget.
    Timeout,
    /// The engine asked for more memory than its cap.
    Memory,
    /// Any other trap (a panic, an unreachable, a stack overflow), or a host failure.
    Trap,
}

/// Why an engine call did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine returned an error value; the instance is still usable.
    #[error("engine error: {0}")]
    Rejected(String),
    /// The call trapped; the instance is poisoned and must be replaced.
    #[error("engine {0:?}: {1}")]
    Trap(TrapKind, String),
}

/// The limits an instance runs under.
#[derive(Clone, Copy, Debug)]
pub struct CallLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl From<&crate::model::EngineLimits> for CallLimits {
    fn from(l: &crate::model::EngineLimits) -> Self {
        CallLimits {
            timeout: Duration::from_millis(u64::from(l.timeout_ms.max(1))),
            memory_bytes: (l.memory_mib as usize) << 20,
        }
    }
}

/// How much of its domain an engine instance has been told, so that its next snapshot can be
/// a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    /// The newest event sequence number its snapshots covered.
    pub seq: i64,
    /// The largest instance handle whose details it got.
    pub max_handle: u64,
    /// The sensors whose reading it was last told is stale.
    pub stale: Vec<String>,
}

/// An instantiated, initialized engine.
pub struct EngineInstance {
    store: Store<HostState>,
    bindings: bindings::Engine,
    /// The call deadline in epoch ticks.
    deadline_ticks: u64,
    /// None for a fresh instance; the controller sets it once a decision is carried out.
    pub synced: Option<Synced>,
}

impl EngineInstance {
    pub(super) fn new(
        engine: &wasmtime::Engine,
        loaded: &LoadedEngine,
        config: &str,
        limits: CallLimits,
        metered: bool,
    ) -> Result<EngineInstance, EngineError> {
        let deadline_ticks = limits
            .timeout
            .as_millis()
            .div_ceil(EPOCH_TICK.as_millis())
            .max(1) as u64;
        let mut store = Store::new(engine, HostState::new(limits.memory_bytes));
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks);
        if metered {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| EngineError::Trap(TrapKind::Trap, format!("{e:?}")))?;
        }
        let mut me = match loaded.pre.instantiate(&mut store) {
            Ok(bindings) => EngineInstance {
                store,
                bindings,
                deadline_ticks,
                synced: None,
            },
            Err(e) => return Err(EngineError::Trap(classify(&e, &store), format!("{e:?}"))),
        };
        me.call(|b, s| b.call_initialize(s, config))?;
        Ok(me)
    }

    /// Runs one export under the call deadline, mapping both failure kinds.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&bindings::Engine, &mut Store<HostState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, EngineError> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().limiter.memory_denied = false;
        match f(&self.bindings, &mut self.store) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(msg)) => Err(EngineError::Rejected(msg)),
            Err(e) => Err(EngineError::Trap(
                classify(&e, &self.store),
                format!("{e:?}"),
            )),
        }
    }

    pub fn decide(&mut self, snapshot: &Snapshot) -> Result<Decision, EngineError> {
        self.call(|b, s| b.call_decide(s, snapshot))
    }

    pub fn reconfigure(&mut self, config: &str) -> Result<(), EngineError> {
        self.call(|b, s| b.call_reconfigure(s, config))
    }

    /// Tells the engine it is about to be dropped. Its failure changes nothing.
    pub fn dying(mut self) {
        self.store.set_epoch_deadline(self.deadline_ticks);
        let _ = self.bindings.call_dying(&mut self.store);
    }

    /// The fuel burnt so far, if the host is [metered](super::EngineHost::metered).
    pub fn fuel(&self) -> Option<u64> {
        self.store.get_fuel().ok().map(|left| u64::MAX - left)
    }

    /// The most linear memory the instance has held, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.store.data().limiter.peak_bytes
    }

    /// The lines the engine logged since the last take, and how many were dropped.
    pub fn take_logs(&mut self) -> (Vec<(LogLevel, String)>, usize) {
        let state = self.store.data_mut();
        (
            std::mem::take(&mut state.logs),
            std::mem::take(&mut state.dropped_logs),
        )
    }
}

/// Tells a timeout and a denied memory growth from other traps.
fn classify(e: &wasmtime::Error, store: &Store<HostState>) -> TrapKind {
    if matches!(
        e.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        TrapKind::Timeout
    } else if store.data().limiter.memory_denied {
        TrapKind::Memory
    } else {
        TrapKind::Trap
    }
}
