//! One live instance of an engine: its store, its bindings, and the calls of the world.

use super::bindings::{self, Decision, LogLevel, Snapshot};
use super::budget::CallClock;
use super::sandbox::{cut, HostState};
use super::schema::Description;
use super::{adapter, LoadedEngine, Pre};
use std::time::Duration;
use wasmtime::{Store, UpdateDeadline};

/// The epoch deadline of a call that is not timed: far enough never to come.
const UNTIMED_TICKS: u64 = u64::MAX / 2;

/// How a call failed, when the instance cannot be used again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrapKind {
    /// The call used more CPU time than its budget, or ran past the wall-clock backstop.
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
    /// The config does not fit the schema the engine declares; the engine was not called.
    #[error("config refused by the schema the engine declares: {0}")]
    Schema(super::schema::ConfigError),
}

/// The limits an instance runs under.
#[derive(Clone, Copy, Debug)]
pub struct CallLimits {
    /// The CPU time one call may use.
    pub timeout: Duration,
    /// The wall-clock time one call may take, however it spends it.
    pub wall_timeout: Duration,
    /// What the instance may hold in all: memories and tables.
    pub memory_bytes: usize,
}

impl From<&crate::model::EngineLimits> for CallLimits {
    fn from(l: &crate::model::EngineLimits) -> Self {
        CallLimits {
            timeout: Duration::from_millis(u64::from(l.timeout_ms.max(1))),
            wall_timeout: Duration::from_millis(u64::from(l.wall_timeout_ms.max(1))),
            memory_bytes: (l.memory_mib as usize) << 20,
        }
    }
}

/// An instance's exports, of the current contract or of one run through its adapter.
enum Bindings {
    Current(bindings::Engine),
    V0_4(adapter::v0_4::bindings::Engine),
    V0_3(adapter::v0_3::bindings::Engine),
}

/// The result of a call: the trap, or the engine's own answer.
type CallResult<T> = wasmtime::Result<Result<T, String>>;

/// An instantiated, initialized engine.
pub struct EngineInstance {
    store: Store<HostState>,
    bindings: Bindings,
    /// Whether calls are timed (off only on a host without deadlines, for benchmarks).
    timed: bool,
}

impl EngineInstance {
    /// Instantiates `loaded` and initializes it with `config`.
    pub(super) fn new(
        engine: &wasmtime::Engine,
        loaded: &LoadedEngine,
        config: &str,
        limits: CallLimits,
        metered: bool,
        timed: bool,
    ) -> Result<EngineInstance, EngineError> {
        let mut me = Self::bare(engine, loaded, limits, metered, timed)?;
        me.call_timed(0, true, |b, s| match b {
            Bindings::Current(e) => e.call_initialize(s, config),
            Bindings::V0_4(e) => e.call_initialize(s, config),
            Bindings::V0_3(e) => e.call_initialize(s, config),
        })?;
        Ok(me)
    }

    /// Instantiates `loaded` without initializing it: only [`Self::describe`] may be called.
    pub(super) fn bare(
        engine: &wasmtime::Engine,
        loaded: &LoadedEngine,
        limits: CallLimits,
        metered: bool,
        timed: bool,
    ) -> Result<EngineInstance, EngineError> {
        let clock = CallClock::new(limits.timeout, limits.wall_timeout);
        let mut store = Store::new(engine, HostState::new(limits.memory_bytes, clock));
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| match ctx.data_mut().clock.check() {
            Ok(ticks) => Ok(UpdateDeadline::Continue(ticks)),
            Err(_) => Ok(UpdateDeadline::Interrupt),
        });
        // Instantiation runs the guest's start functions: they are timed like a call.
        let ticks = store.data_mut().clock.start_setup();
        store.set_epoch_deadline(ticks);
        if metered {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| EngineError::Trap(TrapKind::Trap, format!("{e:?}")))?;
        }
        let instantiated = match &loaded.pre {
            Pre::Current(pre) => pre.instantiate(&mut store).map(Bindings::Current),
            Pre::V0_4(pre) => pre.instantiate(&mut store).map(Bindings::V0_4),
            Pre::V0_3(pre) => pre.instantiate(&mut store).map(Bindings::V0_3),
        };
        match instantiated {
            Ok(bindings) => Ok(EngineInstance {
                store,
                bindings,
                timed,
            }),
            Err(e) => Err(trap(&e, &store)),
        }
    }

    /// What the engine says it is, under the setup budget; None for an engine of an earlier
    /// contract, which cannot say. A description that breaks the bounds of
    /// [`super::schema`] is an error.
    pub fn describe(&mut self) -> Result<Option<Description>, EngineError> {
        let answer = self.call_timed(0, true, |b, s| match b {
            Bindings::Current(e) => e.call_describe(s).map(|d| Ok(Some(d))),
            Bindings::V0_4(_) | Bindings::V0_3(_) => Ok(Ok(None)),
        })?;
        answer
            .map(Description::from_engine)
            .transpose()
            .map_err(|e| EngineError::Rejected(cut(format!("its description is refused: {e}"))))
    }

    /// Runs one export under the call's time limits, with the random stream seeded from
    /// `seed`, mapping both failure kinds. Error text is cut to 1 KiB.
    fn call<T>(
        &mut self,
        seed: u64,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> CallResult<T>,
    ) -> Result<T, EngineError> {
        self.call_timed(seed, false, f)
    }

    /// [`Self::call`], under the setup budget when `setup` (see [`CallClock::start_setup`]).
    fn call_timed<T>(
        &mut self,
        seed: u64,
        setup: bool,
        f: impl FnOnce(&Bindings, &mut Store<HostState>) -> CallResult<T>,
    ) -> Result<T, EngineError> {
        let state = self.store.data_mut();
        state.limiter.memory_denied = false;
        state.seed(seed);
        let ticks = match (self.timed, setup) {
            (false, _) => UNTIMED_TICKS,
            (true, true) => state.clock.start_setup(),
            (true, false) => state.clock.start(),
        };
        self.store.set_epoch_deadline(ticks);
        match f(&self.bindings, &mut self.store) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(msg)) => Err(EngineError::Rejected(cut(msg))),
            Err(e) => Err(trap(&e, &self.store)),
        }
    }

    /// One decide. `seed` starts the random stream the engine draws from in this call, so a
    /// replay with the same seed and snapshot draws the same.
    pub fn decide(&mut self, snapshot: &Snapshot, seed: u64) -> Result<Decision, EngineError> {
        self.call(seed, |b, s| match b {
            Bindings::Current(e) => e.call_decide(s, snapshot),
            Bindings::V0_4(e) => e
                .call_decide(s, &adapter::v0_4::snapshot(snapshot))
                .map(|r| r.map(adapter::v0_4::decision)),
            Bindings::V0_3(e) => e
                .call_decide(s, &adapter::v0_3::snapshot(snapshot))
                .map(|r| r.map(adapter::v0_3::decision)),
        })
    }

    pub fn reconfigure(&mut self, config: &str) -> Result<(), EngineError> {
        self.call(0, |b, s| match b {
            Bindings::Current(e) => e.call_reconfigure(s, config),
            Bindings::V0_4(e) => e.call_reconfigure(s, config),
            Bindings::V0_3(e) => e.call_reconfigure(s, config),
        })
    }

    /// Tells the engine it is about to be dropped. Its failure changes nothing.
    pub fn dying(mut self) {
        let _ = self.call(0, |b, s| {
            match b {
                Bindings::Current(e) => e.call_dying(s),
                Bindings::V0_4(e) => e.call_dying(s),
                Bindings::V0_3(e) => e.call_dying(s),
            }
            .map(Ok::<(), String>)
        });
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

/// A trapped call as an error: a timeout (with the limit it broke), a denied memory growth,
/// or another trap, with its text cut to 1 KiB.
fn trap(e: &wasmtime::Error, store: &Store<HostState>) -> EngineError {
    let state = store.data();
    let interrupted = matches!(
        e.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    );
    let (kind, text) = match (interrupted, state.clock.overrun) {
        (true, Some(over)) => (TrapKind::Timeout, format!("{over}\n{e:?}")),
        (true, None) => (TrapKind::Timeout, format!("{e:?}")),
        _ if state.limiter.memory_denied => (
            TrapKind::Memory,
            format!("the engine asked for more than its memory cap (memory_mib)\n{e:?}"),
        ),
        _ => (TrapKind::Trap, format!("{e:?}")),
    };
    EngineError::Trap(kind, cut(text))
}
