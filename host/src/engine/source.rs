//! Engines named by a spec: a bundled engine's name, or the path of a `.wasm` file. Reading
//! them within the size cap, and their display names.

use super::{bundled, EngineHost, LoadedEngine};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::Arc;

impl EngineHost {
    /// Reads an engine named by a spec: a bundled engine's name, or the path of a `.wasm` file
    /// (relative paths are taken from `base`). Only a regular file of at most `max_bytes` is
    /// read. Returns the bytes.
    pub fn read_engine(spec: &str, base: &Path, max_bytes: u64) -> Result<Vec<u8>> {
        use std::io::Read;
        if let Some(bytes) = bundled::get(spec) {
            return Ok(bytes.to_vec());
        }
        let path = base.join(spec);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                let known: Vec<_> = bundled::names().collect();
                bail!(
                    "engine '{spec}' is neither a bundled engine ({}) nor an existing file ({})",
                    known.join(", "),
                    path.display()
                );
            }
        };
        if !meta.is_file() {
            bail!(
                "engine {} is not a regular file: an engine is read from a .wasm file",
                path.display()
            );
        }
        check_size(meta.len(), max_bytes)?;
        let file = std::fs::File::open(&path)
            .with_context(|| format!("reading engine {}", path.display()))?;
        // The file may grow between the look and the read: never read past the cap.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(max_bytes + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading engine {}", path.display()))?;
        check_size(bytes.len() as u64, max_bytes)?;
        Ok(bytes)
    }

    /// Reads the engine named by `spec` (paths from the working directory) within this host's
    /// size cap and prepares it ([`EngineHost::prepare`]); errors name the spec.
    pub fn prepare_spec(&self, spec: &str) -> Result<Arc<LoadedEngine>> {
        let bytes = Self::read_engine(spec, Path::new("."), self.max_engine_bytes())?;
        self.prepare(&bytes)
            .with_context(|| format!("engine '{spec}'"))
    }
}

/// Refuses a component over the size cap.
pub(super) fn check_size(len: u64, max: u64) -> Result<()> {
    if len > max {
        bail!(
            "the engine is {len} bytes, over the cap of {max} bytes (the daemon's \
             --max-engine-mib)"
        );
    }
    Ok(())
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
