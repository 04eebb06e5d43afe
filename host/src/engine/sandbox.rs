//! What a guest can reach: the `log` import and a deny-all WASI (no files, network, env, args or
//! clocks), plus a memory cap.

use super::bindings::{epu::engine::types, EngineImports, LogLevel};
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, ResourceTable, WasiCtx, WasiCtxView, WasiView,
};

/// Log lines kept per call, and bytes per line; the rest is dropped.
const MAX_LOG_LINES: usize = 64;
const MAX_LOG_BYTES: usize = 1024;

/// The state of one engine instance's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    /// Lines logged by the engine since they were last taken.
    pub logs: Vec<(LogLevel, String)>,
    pub dropped_logs: usize,
}

impl HostState {
    pub fn new(memory_limit: usize) -> HostState {
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_limit,
                memory_denied: false,
                held_bytes: 0,
                peak_bytes: 0,
            },
            logs: Vec::new(),
            dropped_logs: 0,
        }
    }
}

/// Caps linear memory and remembers whether a growth was denied, so that the trap that
/// usually follows can be reported as a memory fault.
pub struct Limiter {
    memory_limit: usize,
    pub memory_denied: bool,
    /// The linear memory held now, summed over the instance's memories, and its peak.
    held_bytes: usize,
    pub peak_bytes: usize,
}

/// Tables, instances and memories allowed per store: enough for the Python and JS guests,
/// which need more than ten core instances.
const MAX_ITEMS: usize = 1000;
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory_limit;
        self.memory_denied |= !ok;
        if ok {
            self.held_bytes += desired.saturating_sub(current);
            self.peak_bytes = self.peak_bytes.max(self.held_bytes);
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_ITEMS
    }

    fn tables(&self) -> usize {
        MAX_ITEMS
    }

    fn memories(&self) -> usize {
        MAX_ITEMS
    }
}

impl EngineImports for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped_logs += 1;
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.logs.push((level, message));
    }
}

impl types::Host for HostState {}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock that always reads zero: engines get the time from the snapshot only.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}
