//! The engine host: loads decision engines (WebAssembly components of the `engine` world),
//! checks them against the world, caches their compiled code, and runs them in a sandbox.
//!
//! One wasmtime `Engine` and one `Linker` serve every domain. Each loaded component is
//! pre-instantiated once (`EnginePre`); each domain gets its own instance and store. Calls are
//! synchronous: run them on a thread that is not an async worker (the controllers' decide
//! threads, or `spawn_blocking`), as WASI's sync bindings must not run on a runtime worker.

pub mod bindings;
pub mod bundled;
mod instance;
mod sandbox;

pub use instance::{CallLimits, EngineError, EngineInstance, Synced, TrapKind};

use anyhow::{bail, Context, Result};
use bindings::EnginePre;
use sandbox::HostState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};

/// The version of the `epu:engine` package in `wit/engine.wit`.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// How often the epoch ticks; call deadlines are counted in ticks, so this is their grain.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// A component that passed validation and is ready to instantiate.
pub struct LoadedEngine {
    pub sha: String,
    pre: EnginePre<HostState>,
}

/// Loads, validates, caches and instantiates engines.
pub struct EngineHost {
    engine: wasmtime::Engine,
    linker: Linker<HostState>,
    /// Component bytes by sha256, so a domain never depends on a file outside the state dir.
    blobs_dir: PathBuf,
    /// Compiled code, keyed by sha256 and the compiler's compatibility hash.
    cache_dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<LoadedEngine>>>,
    /// Whether instances count fuel.
    metered: bool,
}

impl EngineHost {
    /// Sets up the host with its blobs and compile cache under `state_dir`.
    pub fn new(state_dir: &Path) -> Result<EngineHost> {
        Self::with_deadlines(state_dir, true)
    }

    /// Like [`EngineHost::new`]; `deadlines = false` turns the per-call time budget off, which
    /// only the benchmark of its cost should do.
    pub fn with_deadlines(state_dir: &Path, deadlines: bool) -> Result<EngineHost> {
        Self::build(state_dir, deadlines, false)
    }

    /// Like [`EngineHost::new`], and every instance counts the fuel (wasm instructions, roughly)
    /// its calls burn: see [`EngineInstance::fuel`]. For measuring engines, not for the daemon.
    pub fn metered(state_dir: &Path) -> Result<EngineHost> {
        Self::build(state_dir, true, true)
    }

    fn build(state_dir: &Path, deadlines: bool, metered: bool) -> Result<EngineHost> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(deadlines);
        config.consume_fuel(metered);
        let engine = wasmtime::Engine::new(&config)?;
        if deadlines {
            start_epoch_ticker(&engine);
        }

        let mut linker = Linker::new(&engine);
        bindings::Engine::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;

        let blobs_dir = state_dir.join("engines");
        let cache_dir = state_dir.join("cache");
        for dir in [&blobs_dir, &cache_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(EngineHost {
            engine,
            linker,
            blobs_dir,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
            metered,
        })
    }

    /// Reads an engine named by a spec: a bundled engine's name, or the path of a `.wasm` file
    /// (relative paths are taken from `base`). Returns the bytes.
    pub fn read_engine(spec: &str, base: &Path) -> Result<Vec<u8>> {
        if let Some(bytes) = bundled::get(spec) {
            return Ok(bytes.to_vec());
        }
        let path = base.join(spec);
        if !path.exists() {
            let known: Vec<_> = bundled::names().collect();
            bail!(
                "engine '{spec}' is neither a bundled engine ({}) nor an existing file ({})",
                known.join(", "),
                path.display()
            );
        }
        std::fs::read(&path).with_context(|| format!("reading engine {}", path.display()))
    }

    /// Validates component bytes against the `engine` world and keeps them in the state dir.
    /// Returns the loaded engine; nothing is written if validation fails.
    pub fn add(&self, bytes: &[u8]) -> Result<Arc<LoadedEngine>> {
        let sha = sha256_hex(bytes);
        if let Some(e) = self.loaded.lock().unwrap().get(&sha) {
            return Ok(e.clone());
        }
        let loaded = Arc::new(self.compile(&sha, bytes)?);
        let blob = self.blobs_dir.join(format!("{sha}.wasm"));
        if !blob.exists() {
            write_atomically(&blob, bytes)?;
        }
        self.loaded.lock().unwrap().insert(sha, loaded.clone());
        Ok(loaded)
    }

    /// Loads an engine kept in the state dir by its sha256.
    pub fn load(&self, sha: &str) -> Result<Arc<LoadedEngine>> {
        if let Some(e) = self.loaded.lock().unwrap().get(sha) {
            return Ok(e.clone());
        }
        let blob = self.blobs_dir.join(format!("{sha}.wasm"));
        let bytes =
            std::fs::read(&blob).with_context(|| format!("reading engine {}", blob.display()))?;
        self.add(&bytes)
    }

    /// Compiles (or loads from the cache) and pre-instantiates a component.
    fn compile(&self, sha: &str, bytes: &[u8]) -> Result<LoadedEngine> {
        check_is_component(bytes)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let cached = self
            .cache_dir
            .join(format!("{sha}-{:016x}.cwasm", hasher.finish()));
        let component = match self.load_cached(&cached) {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes).map_err(|e| {
                    anyhow::anyhow!("the file is not a valid WebAssembly component: {e:#}")
                })?;
                let code = c.serialize()?;
                // The checksum goes last: a cache entry without one is never trusted.
                let sum = checksum_path(&cached);
                let _ = std::fs::remove_file(&sum);
                write_atomically(&cached, &code)?;
                write_atomically(&sum, sha256_hex(&code).as_bytes())?;
                c
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(EnginePre::new)
            .map_err(|e| match contract_version(&self.engine, &component) {
                Some(v) if v != CONTRACT_VERSION => anyhow::anyhow!(
                    "the component was built for epu:engine@{v}, and this epu runs \
                     epu:engine@{CONTRACT_VERSION}: rebuild it against wit/engine.wit"
                ),
                _ => anyhow::anyhow!(
                    "the component does not implement the epu:engine/engine world: {e:#}"
                ),
            })?;
        Ok(LoadedEngine {
            sha: sha.to_string(),
            pre,
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
    /// `config` (JSON text).
    pub fn instantiate(
        &self,
        loaded: &Arc<LoadedEngine>,
        config: &str,
        limits: CallLimits,
    ) -> Result<EngineInstance, EngineError> {
        EngineInstance::new(&self.engine, loaded, config, limits, self.metered)
    }
}

/// The name of an engine given as a bundled name or a path: the file's stem for a path.
pub fn engine_name(spec: &str) -> String {
    if bundled::get(spec).is_some() {
        return spec.to_string();
    }
    Path::new(spec)
        .file_stem()
        .map_or(spec.to_string(), |s| s.to_string_lossy().into_owned())
}

/// The sha256 of component bytes, in hex: an engine's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A core module or random bytes fail here with a message that says so, rather than deep
/// inside the component parser.
fn check_is_component(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!("the file is not WebAssembly (no \\0asm header)");
    }
    // The layer field: 0 for a core module, 1 for a component.
    if bytes[6..8] != [1, 0] {
        bail!(
            "the file is a core WebAssembly module, not a component; build it for \
             wasm32-wasip2 or wrap it with `wasm-tools component new`"
        );
    }
    Ok(())
}

/// The checksum file of a compile cache entry.
/// The `epu:engine` version a component names in its imports or exports, if any.
fn contract_version(engine: &wasmtime::Engine, component: &Component) -> Option<String> {
    let ty = component.component_type();
    let version = |name: &str| {
        let (_, version) = name.strip_prefix("epu:engine/")?.split_once('@')?;
        Some(version.to_string())
    };
    let found = ty.imports(engine).find_map(|(name, _)| version(name));
    found.or_else(|| ty.exports(engine).find_map(|(name, _)| version(name)))
}

fn checksum_path(cached: &Path) -> PathBuf {
    cached.with_extension("cwasm.sha256")
}

/// Writes a file by renaming a temporary one into place, so readers never see half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Advances the engine's epoch every tick so that call deadlines fire. The thread ends with
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
