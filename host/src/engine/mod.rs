//! The engine host: loads decision engines (WebAssembly components of the `engine` world),
//! checks them against the world, caches their compiled code, and runs them in a sandbox.
//!
//! One wasmtime `Engine` and one `Linker` serve every domain. Each loaded component is
//! pre-instantiated once (`EnginePre`); each domain gets its own instance and store. Calls are
//! synchronous: run them on a thread that is not an async worker (the controllers' decide
//! threads, or `spawn_blocking`), as WASI's sync bindings must not run on a runtime worker.

pub mod adapter;
pub mod bindings;
pub mod budget;
pub mod bundled;
mod instance;
mod sandbox;
pub mod schema;
mod source;
mod version;

pub use budget::EPOCH_TICK;
pub use instance::{CallLimits, EngineError, EngineInstance, TrapKind};
pub use sandbox::{MAX_LOG_LINES, MAX_RANDOM_BYTES, MAX_RESOURCES, MAX_TEXT_BYTES};
use source::check_size;
pub use source::engine_name;
use version::{check_is_component, contract_version};

use anyhow::{Context, Result};
use bindings::EnginePre;
use sandbox::HostState;
use schema::Description;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use wasmtime::component::{Component, Linker};

/// The version of the `epu:engine` package in `wit/engine.wit`.
pub const CONTRACT_VERSION: &str = "0.5.0";

/// The largest component accepted by default, in bytes (`--max-engine-mib`).
pub const DEFAULT_MAX_ENGINE_BYTES: u64 = 64 << 20;

/// A component that passed validation and is ready to instantiate.
pub struct LoadedEngine {
    pub sha: String,
    /// The `epu:engine` version the component declares.
    pub contract: String,
    pre: Pre,
    /// What the engine says it is, once asked ([`EngineHost::describe`]).
    description: OnceLock<Option<Arc<Description>>>,
    /// The component's bytes and freshly compiled code, until [`EngineHost::keep`] writes
    /// them to the state dir. Nothing is written for an engine that is refused.
    unsaved: Mutex<Option<Unsaved>>,
}

/// A pre-instantiated component, of the current contract or of one run through its adapter.
enum Pre {
    Current(EnginePre<HostState>),
    V0_4(adapter::v0_4::bindings::EnginePre<HostState>),
    V0_3(adapter::v0_3::bindings::EnginePre<HostState>),
}

struct Unsaved {
    bytes: Vec<u8>,
    /// None when the code came from the compile cache.
    code: Option<Vec<u8>>,
}

/// How an [`EngineHost`] runs its engines.
#[derive(Clone, Copy, Debug)]
pub struct HostOptions {
    /// Whether calls have time limits (only the benchmark of their cost turns them off).
    pub deadlines: bool,
    /// Whether instances count fuel, for measuring engines (not for the daemon).
    pub metered: bool,
    /// The largest component accepted, in bytes.
    pub max_engine_bytes: u64,
    /// Whether calls are held to their CPU-time budget and wall-clock backstop. Off, a call
    /// only gets a fixed epoch deadline, as before CPU time was accounted (for the benchmark
    /// of that accounting's cost, not for the daemon).
    pub accounting: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            deadlines: true,
            metered: false,
            max_engine_bytes: DEFAULT_MAX_ENGINE_BYTES,
            accounting: true,
        }
    }
}

/// Loads, validates, caches and instantiates engines.
pub struct EngineHost {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    /// The linkers of engines built for earlier contracts ([`adapter`]).
    v0_4_linker: Linker<HostState>,
    v0_3_linker: Linker<HostState>,
    /// Component bytes by sha256, so a domain never depends on a file outside the state dir.
    blobs_dir: PathBuf,
    /// Compiled code, keyed by sha256 and the compiler's compatibility hash.
    cache_dir: PathBuf,
    /// The engines kept in the state dir, loaded.
    loaded: Mutex<HashMap<String, Arc<LoadedEngine>>>,
    options: HostOptions,
    /// The key every engine read by spec must be signed with (`--require-signed`).
    require_signed: Option<crate::signing::TrustedKey>,
}

impl EngineHost {
    /// Sets up the host with its blobs and compile cache under `state_dir`.
    pub fn new(state_dir: &Path) -> Result<EngineHost> {
        Self::with_options(state_dir, HostOptions::default())
    }

    /// Like [`EngineHost::new`]; `deadlines = false` turns the per-call time limits off, which
    /// only the benchmark of their cost should do.
    pub fn with_deadlines(state_dir: &Path, deadlines: bool) -> Result<EngineHost> {
        let options = HostOptions {
            deadlines,
            ..Default::default()
        };
        Self::with_options(state_dir, options)
    }

    /// Like [`EngineHost::new`], and every instance counts the fuel (wasm instructions, roughly)
    /// its calls burn: see [`EngineInstance::fuel`]. For measuring engines, not for the daemon.
    pub fn metered(state_dir: &Path) -> Result<EngineHost> {
        let options = HostOptions {
            metered: true,
            ..Default::default()
        };
        Self::with_options(state_dir, options)
    }

    pub fn with_options(state_dir: &Path, options: HostOptions) -> Result<EngineHost> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(options.deadlines);
        config.consume_fuel(options.metered);
        // A memory image in a sealed memfd saves a copy of the data segments per instantiation,
        // but sealing can fail with EBUSY while the kernel migrates the file's pages, which
        // made an engine's initialize fail at random. The engine is instantiated once per
        // domain (and after a trap), so the copy costs little and the failure goes away.
        config.memory_init_cow(false);
        let engine = wasmtime::Engine::new(&config)?;
        if options.deadlines {
            start_epoch_ticker(&engine);
        }

        let mut linker = Linker::new(&engine);
        sandbox::link(&mut linker, |l| {
            use wasmtime::component::HasSelf;
            bindings::Engine::add_to_linker::<_, HasSelf<_>>(l, |s| s)
        })?;
        let mut v0_4_linker = Linker::new(&engine);
        sandbox::link(&mut v0_4_linker, adapter::v0_4::link)?;
        let mut v0_3_linker = Linker::new(&engine);
        sandbox::link(&mut v0_3_linker, adapter::v0_3::link)?;

        let blobs_dir = state_dir.join("engines");
        let cache_dir = state_dir.join("cache");
        for dir in [&blobs_dir, &cache_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(EngineHost {
            engine,
            linker,
            v0_4_linker,
            v0_3_linker,
            blobs_dir,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
            options,
            require_signed: None,
        })
    }

    /// Requires every engine read by spec, but the bundled ones, to be signed with `key`.
    pub fn requiring_signatures(mut self, key: Option<crate::signing::TrustedKey>) -> Self {
        self.require_signed = key;
        self
    }

    /// The largest component this host accepts, in bytes.
    pub fn max_engine_bytes(&self) -> u64 {
        self.options.max_engine_bytes
    }

    /// Validates component bytes against the `engine` world and compiles them (or takes the
    /// compiled code from the cache). Writes nothing: see [`EngineHost::keep`].
    pub fn prepare(&self, bytes: &[u8]) -> Result<Arc<LoadedEngine>> {
        check_size(bytes.len() as u64, self.options.max_engine_bytes)?;
        let sha = sha256_hex(bytes);
        if let Some(e) = self.loaded.lock().unwrap().get(&sha) {
            return Ok(e.clone());
        }
        Ok(Arc::new(self.compile(&sha, bytes)?))
    }

    /// Keeps a prepared engine: its bytes and compiled code go to the state dir (once), and
    /// [`EngineHost::load`] finds it from then on. Call it once the engine is accepted.
    pub fn keep(&self, loaded: &Arc<LoadedEngine>) -> Result<()> {
        if let Some(unsaved) = loaded.unsaved.lock().unwrap().take() {
            if let Some(code) = &unsaved.code {
                // The checksum goes last: a cache entry without one is never trusted.
                let cached = self.cache_path(&loaded.sha);
                let sum = checksum_path(&cached);
                let _ = std::fs::remove_file(&sum);
                crate::fsutil::write_atomically(&cached, code)?;
                crate::fsutil::write_atomically(&sum, sha256_hex(code).as_bytes())?;
            }
            let blob = self.blob_path(&loaded.sha);
            if !blob.exists() {
                crate::fsutil::write_atomically(&blob, &unsaved.bytes)?;
            }
        }
        self.loaded
            .lock()
            .unwrap()
            .insert(loaded.sha.clone(), loaded.clone());
        Ok(())
    }

    /// Validates, compiles and keeps component bytes in one step.
    pub fn add(&self, bytes: &[u8]) -> Result<Arc<LoadedEngine>> {
        let loaded = self.prepare(bytes)?;
        self.keep(&loaded)?;
        Ok(loaded)
    }

    /// Whether an engine is kept in the state dir.
    pub fn has(&self, sha: &str) -> bool {
        self.loaded.lock().unwrap().contains_key(sha) || self.blob_path(sha).exists()
    }

    /// The bytes of an engine kept in the state dir.
    pub fn bytes(&self, sha: &str) -> Result<Vec<u8>> {
        let blob = self.blob_path(sha);
        std::fs::read(&blob).with_context(|| format!("reading engine {}", blob.display()))
    }

    /// Loads an engine kept in the state dir by its sha256.
    pub fn load(&self, sha: &str) -> Result<Arc<LoadedEngine>> {
        if let Some(e) = self.loaded.lock().unwrap().get(sha) {
            return Ok(e.clone());
        }
        let blob = self.blob_path(sha);
        let bytes =
            std::fs::read(&blob).with_context(|| format!("reading engine {}", blob.display()))?;
        self.add(&bytes)
    }

    /// Deletes the kept engines (bytes and compiled code) whose sha256 is not in `used`, and
    /// forgets them. Returns how many were deleted.
    pub fn forget_unused(&self, used: &HashSet<String>) -> Result<usize> {
        self.loaded
            .lock()
            .unwrap()
            .retain(|sha, _| used.contains(sha));
        let mut deleted = 0;
        for dir in [&self.blobs_dir, &self.cache_dir] {
            for entry in
                std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?
            {
                let path = entry?.path();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let sha: String = name.chars().take_while(char::is_ascii_hexdigit).collect();
                if !used.contains(&sha) {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("deleting {}", path.display()))?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    fn blob_path(&self, sha: &str) -> PathBuf {
        self.blobs_dir.join(format!("{sha}.wasm"))
    }

    fn cache_path(&self, sha: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        self.cache_dir
            .join(format!("{sha}-{:016x}.cwasm", hasher.finish()))
    }

    /// Checks the contract version, compiles (or loads from the cache) and pre-instantiates a
    /// component. Nothing is written.
    fn compile(&self, sha: &str, bytes: &[u8]) -> Result<LoadedEngine> {
        check_is_component(bytes)?;
        let (component, code) = match self.load_cached(&self.cache_path(sha)) {
            Some(c) => (c, None),
            None => {
                let c = Component::new(&self.engine, bytes).map_err(|e| {
                    anyhow::anyhow!("the file is not a valid WebAssembly component: {e:#}")
                })?;
                (c, Some(()))
            }
        };
        let contract = contract_version(&self.engine, &component)?;
        let pre = match contract.as_str() {
            CONTRACT_VERSION => self
                .linker
                .instantiate_pre(&component)
                .and_then(EnginePre::new)
                .map(Pre::Current),
            adapter::v0_4::VERSION => self
                .v0_4_linker
                .instantiate_pre(&component)
                .and_then(adapter::v0_4::bindings::EnginePre::new)
                .map(Pre::V0_4),
            _ => self
                .v0_3_linker
                .instantiate_pre(&component)
                .and_then(adapter::v0_3::bindings::EnginePre::new)
                .map(Pre::V0_3),
        }
        .map_err(|e| {
            anyhow::anyhow!("the component does not implement the epu:engine/engine world: {e:#}")
        })?;
        let code = match code {
            Some(()) => Some(component.serialize()?),
            None => None,
        };
        Ok(LoadedEngine {
            sha: sha.to_string(),
            contract,
            pre,
            description: OnceLock::new(),
            unsaved: Mutex::new(Some(Unsaved {
                bytes: bytes.to_vec(),
                code,
            })),
        })
    }

    /// Loads compiled code from the cache if its checksum matches; a missing, corrupt or
    /// incompatible entry gives None, and the caller compiles afresh.
    fn load_cached(&self, path: &Path) -> Option<Component> {
        let code = std::fs::read(path).ok()?;
        let sum = std::fs::read_to_string(checksum_path(path)).ok()?;
        if sum.trim() != sha256_hex(&code) {
            tracing::warn!(
                "compile cache entry {} is corrupt; recompiling",
                path.display()
            );
            return None;
        }
        // SAFETY: the bytes are exactly what this host serialized (the checksum matches), for
        // this wasmtime version and config (the file name carries the compatibility hash).
        unsafe { Component::deserialize(&self.engine, &code) }.ok()
    }

    /// Makes a new instance of a loaded engine under `limits` and initializes it with
    /// `config` (JSON text), once the config fits the schema the engine declares
    /// ([`EngineHost::describe`]); a config that does not is refused as
    /// [`EngineError::Schema`] before the engine sees it.
    pub fn instantiate(
        &self,
        loaded: &Arc<LoadedEngine>,
        config: &str,
        limits: CallLimits,
    ) -> Result<EngineInstance, EngineError> {
        if let Some(description) = self.describe(loaded, limits)? {
            let map = match serde_json::from_str::<serde_json::Value>(config) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => {
                    return Err(EngineError::Rejected(
                        "config must be a JSON object".to_string(),
                    ))
                }
            };
            description.check(&map).map_err(EngineError::Schema)?;
        }
        self.instantiate_unchecked(loaded, config, limits)
    }

    /// [`EngineHost::instantiate`] without the schema check: the engine's `initialize` alone
    /// judges the config (for `epu engine check`, which holds the two against each other).
    pub fn instantiate_unchecked(
        &self,
        loaded: &Arc<LoadedEngine>,
        config: &str,
        limits: CallLimits,
    ) -> Result<EngineInstance, EngineError> {
        let o = &self.options;
        let timed = o.deadlines && o.accounting;
        EngineInstance::new(&self.engine, loaded, config, limits, o.metered, timed)
    }

    /// What a loaded engine says it is: asked once, of an instance of its own under `limits`
    /// that is never initialized, and kept. None for an engine of an earlier contract.
    pub fn describe(
        &self,
        loaded: &Arc<LoadedEngine>,
        limits: CallLimits,
    ) -> Result<Option<Arc<Description>>, EngineError> {
        if let Some(known) = loaded.description.get() {
            return Ok(known.clone());
        }
        let o = &self.options;
        let timed = o.deadlines && o.accounting;
        let mut bare = EngineInstance::bare(&self.engine, loaded, limits, o.metered, timed)?;
        let description = bare.describe()?.map(Arc::new);
        Ok(loaded.description.get_or_init(|| description).clone())
    }
}

/// The sha256 of component bytes, in hex: an engine's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The checksum file of a compile cache entry.
fn checksum_path(cached: &Path) -> PathBuf {
    cached.with_extension("cwasm.sha256")
}

/// Advances the engine's epoch every tick so that call deadlines are checked. The thread ends with
/// the engine.
fn start_epoch_ticker(engine: &wasmtime::Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epu-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

#[cfg(test)]
mod tests;
