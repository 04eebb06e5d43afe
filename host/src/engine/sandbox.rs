//! What a guest can reach: the `log` import and a deny-all WASI (no files, network, env, args or
//! clocks), with every call that could wait refused, randomness seeded per call, and caps on
//! everything an instance can make the host hold.

use super::bindings::{epu::engine::types, EngineImports, LogLevel};
use super::budget::CallClock;
use rand::{SeedableRng, TryRng};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Linker, Resource};
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::bindings::sync::io::poll;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, ResourceTable, WasiCtx, WasiCtxView, WasiView,
};
use wasmtime_wasi_io::poll::DynPollable;

/// Log lines kept per call, and bytes per line (and per error message); the rest is dropped.
pub const MAX_LOG_LINES: usize = 64;
pub const MAX_TEXT_BYTES: usize = 1024;

/// Host-side resources (streams, pollables) one instance may hold at once.
pub const MAX_RESOURCES: usize = 1024;
/// The most bytes one `wasi:random` call may ask for.
pub const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// Tables, instances and memories allowed per store: enough for the Python and JS guests,
/// which need more than ten core instances. Their bytes count against the memory cap.
const MAX_ITEMS: usize = 1000;
/// What one table element costs the host, as counted against the memory cap: a pointer.
pub const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// The state of one engine instance's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    /// The current call's time accounting.
    pub clock: CallClock,
    rng: SeededRng,
    /// Lines logged by the engine since they were last taken.
    pub logs: Vec<(LogLevel, String)>,
    pub dropped_logs: usize,
}

impl HostState {
    pub fn new(memory_limit: usize, clock: CallClock) -> HostState {
        let rng = SeededRng::default();
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .secure_random(rng.clone())
            .insecure_random(rng.clone())
            .insecure_random_seed(0)
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        HostState {
            wasi,
            table,
            limiter: Limiter {
                memory_limit,
                memory_denied: false,
                held_bytes: 0,
                peak_bytes: 0,
            },
            clock,
            rng,
            logs: Vec::new(),
            dropped_logs: 0,
        }
    }

    /// Restarts the instance's random stream from `seed`: a call given the same seed and the
    /// same input makes the same draws.
    pub fn seed(&mut self, seed: u64) {
        self.rng.0.lock().unwrap().pending = Some(seed);
    }
}

/// Links everything a guest may import: the world's `log` (`world` links it, for one
/// contract version), WASI, and in place of WASI's `wasi:io/poll`, a version that never waits.
pub fn link(
    linker: &mut Linker<HostState>,
    world: fn(&mut Linker<HostState>) -> wasmtime::Result<()>,
) -> anyhow::Result<()> {
    world(linker)?;
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    poll::add_to_linker::<HostState, NoWait>(linker, |s| NoWaitPoll(&mut s.table))?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The random stream of an instance, shared by WASI's secure and insecure generators and
/// reseeded for every call. (Engines get replayable draws, not secrets.) A seed is applied at
/// the call's first draw, so a call that draws nothing costs nothing.
#[derive(Clone, Default)]
struct SeededRng(Arc<Mutex<Stream>>);

#[derive(Default)]
struct Stream {
    /// The seed of the current call, until its first draw.
    pending: Option<u64>,
    rng: Option<rand::rngs::StdRng>,
}

impl SeededRng {
    fn with<T>(&self, f: impl FnOnce(&mut rand::rngs::StdRng) -> T) -> T {
        let mut s = self.0.lock().unwrap();
        if let Some(seed) = s.pending.take() {
            s.rng = Some(rand::rngs::StdRng::seed_from_u64(seed));
        }
        f(s.rng
            .get_or_insert_with(|| rand::rngs::StdRng::seed_from_u64(0)))
    }
}

impl TryRng for SeededRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.with(|r| r.try_next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.with(|r| r.try_next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.with(|r| r.try_fill_bytes(dst))
    }
}

/// `wasi:io/poll` for engines: a pollable that is ready answers at once; waiting for one that
/// is not traps, since an engine call must never block the thread it runs on (a wait could
/// not be interrupted by the call's deadline).
struct NoWait;

impl wasmtime::component::HasData for NoWait {
    type Data<'a> = NoWaitPoll<'a>;
}

struct NoWaitPoll<'a>(&'a mut ResourceTable);

/// The error of a call that would have waited.
fn would_block(what: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "the engine called {what} on a pollable that is not ready: engines may not sleep or \
         wait (the time is in the snapshot; ask for an earlier decide with next-decide-ms)"
    ))
}

impl NoWaitPoll<'_> {
    /// Whether a pollable is ready now. A zero-length sleep needs two looks: its first one
    /// yields once to the runtime.
    fn ready(&mut self, rep: u32) -> wasmtime::Result<bool> {
        use wasmtime_wasi_io::bindings::wasi::io::poll::HostPollable;
        for _ in 0..2 {
            let p = Resource::<DynPollable>::new_borrow(rep);
            if wasmtime_wasi::runtime::in_tokio(HostPollable::ready(self.0, p))? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl poll::Host for NoWaitPoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        if pollables.is_empty() {
            return Err(wasmtime::Error::msg("poll of an empty list"));
        }
        let mut ready = Vec::new();
        for (i, p) in pollables.iter().enumerate() {
            if self.ready(p.rep())? {
                ready.push(i as u32);
            }
        }
        if ready.is_empty() {
            return Err(would_block("wasi:io/poll.poll"));
        }
        Ok(ready)
    }
}

impl poll::HostPollable for NoWaitPoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        NoWaitPoll::ready(self, pollable.rep())
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        if NoWaitPoll::ready(self, pollable.rep())? {
            Ok(())
        } else {
            Err(would_block("wasi:io/poll.pollable.block"))
        }
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        use wasmtime_wasi_io::bindings::wasi::io::poll::HostPollable;
        HostPollable::drop(self.0, pollable)
    }
}

/// Caps what an instance holds in all: every linear memory and every table element (at
/// [`TABLE_ELEMENT_BYTES`] each) count against one budget. Remembers whether a growth was
/// denied, so that the trap that usually follows can be reported as a memory fault.
pub struct Limiter {
    memory_limit: usize,
    pub memory_denied: bool,
    /// The bytes held now, summed over the instance's memories and tables, and their peak.
    held_bytes: usize,
    pub peak_bytes: usize,
}

impl Limiter {
    /// Grants a growth of `more` bytes if the total stays within the cap.
    fn grow(&mut self, more: usize) -> bool {
        let total = self.held_bytes.saturating_add(more);
        let ok = total <= self.memory_limit;
        self.memory_denied |= !ok;
        if ok {
            self.held_bytes = total;
            self.peak_bytes = self.peak_bytes.max(total);
        }
        ok
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(desired.saturating_sub(current)))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        Ok(self.grow(more.saturating_mul(TABLE_ELEMENT_BYTES)))
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

/// Cuts untrusted text to [`MAX_TEXT_BYTES`] (on a character boundary), marking the cut.
pub fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut at = MAX_TEXT_BYTES;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
    text
}

impl EngineImports for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped_logs += 1;
            return;
        }
        self.logs.push((level, cut(message)));
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
