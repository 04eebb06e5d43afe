//! One live instance of an engine: its store, its bindings, and the calls of the world.

use super::bindings::{self, Decision, LogLevel, Snapshot};
use super::sandbox::HostState;
use super::{LoadedEngine, CALL_DEADLINE_TICKS};
use std::sync::Arc;
use wasmtime::Store;

/// Why an engine call did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine returned an error value; the instance is still usable.
    #[error("engine error: {0}")]
    Rejected(String),
    /// The call trapped, ran out of time or memory, or the host failed; the instance is
    /// poisoned and must be replaced.
    #[error("engine trap: {0}")]
    Trap(String),
}

impl EngineError {
    fn trap(e: wasmtime::Error) -> EngineError {
        EngineError::Trap(format!("{e:?}"))
    }
}

/// An instantiated, initialized engine.
pub struct EngineInstance {
    store: Store<HostState>,
    bindings: bindings::Engine,
    pub loaded: Arc<LoadedEngine>,
}

impl EngineInstance {
    pub(super) fn new(
        engine: &wasmtime::Engine,
        loaded: Arc<LoadedEngine>,
        config: &str,
    ) -> Result<EngineInstance, EngineError> {
        let mut store = Store::new(engine, HostState::new());
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        let bindings = loaded
            .pre
            .instantiate(&mut store)
            .map_err(EngineError::trap)?;
        let mut me = EngineInstance {
            store,
            bindings,
            loaded,
        };
        me.call(|b, s| b.call_initialize(s, config))?;
        Ok(me)
    }

    /// Runs one export under the call deadline, mapping both failure kinds.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&bindings::Engine, &mut Store<HostState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, EngineError> {
        self.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        match f(&self.bindings, &mut self.store) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(msg)) => Err(EngineError::Rejected(msg)),
            Err(e) => Err(EngineError::trap(e)),
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
        self.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        let _ = self.bindings.call_dying(&mut self.store);
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
