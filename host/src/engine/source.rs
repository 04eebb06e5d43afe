//! Engines named by a spec: a bundled engine's name, the path of a `.wasm` file, or an OCI
//! reference (`oci://HOST/REPO:TAG`). Reading them within the size cap, and their display
//! names.

use super::{bundled, EngineHost, LoadedEngine};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::Arc;

impl EngineHost {
    /// Reads an engine named by a spec: a bundled engine's name, the path of a `.wasm` file
    /// (relative paths are taken from `base`), or an OCI reference, pulled from its registry.
    /// Only a regular file or a layer of at most `max_bytes` is read. Returns the bytes.
    pub fn read_engine(spec: &str, base: &Path, max_bytes: u64) -> Result<Vec<u8>> {
        Ok(Self::read_engine_signed(spec, base, max_bytes)?.0)
    }

    /// [`EngineHost::read_engine`], with the signature that came with the engine: the
    /// `.minisig` file beside a file, or the one pushed beside a component in its registry.
    pub fn read_engine_signed(
        spec: &str,
        base: &Path,
        max_bytes: u64,
    ) -> Result<(Vec<u8>, Option<String>)> {
        use std::io::Read;
        if let Some(bytes) = bundled::get(spec) {
            return Ok((bytes.to_vec(), None));
        }
        if crate::oci::is_oci(spec) {
            let pulled = crate::oci::pull(spec, max_bytes)?;
            return Ok((pulled.bytes, pulled.signature));
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
        let signature = crate::signing::read_beside(&path)?;
        Ok((bytes, signature))
    }

    /// Reads the engine named by `spec` (paths from the working directory) within this host's
    /// size cap, checks its signature if the host requires one, and prepares it
    /// ([`EngineHost::prepare`]); errors name the spec.
    pub fn prepare_spec(&self, spec: &str) -> Result<Arc<LoadedEngine>> {
        let (bytes, signature) =
            Self::read_engine_signed(spec, Path::new("."), self.max_engine_bytes())?;
        self.check_signed(spec, &bytes, signature.as_deref())
            .with_context(|| format!("engine '{spec}'"))?;
        self.prepare(&bytes)
            .with_context(|| format!("engine '{spec}'"))
    }

    /// Under `--require-signed`, refuses an engine that is not bundled and whose signature is
    /// missing or does not verify with the required key.
    fn check_signed(&self, spec: &str, bytes: &[u8], signature: Option<&str>) -> Result<()> {
        let Some(key) = &self.require_signed else {
            return Ok(());
        };
        if bundled::get(spec).is_some() {
            return Ok(());
        }
        match signature {
            Some(sig) => key.verify(bytes, sig),
            None if crate::oci::is_oci(spec) => bail!(
                "it is not signed, and this daemon requires engines signed by {} \
                 (--require-signed): push it with its signature (`epu engine sign`, then \
                 `epu engine push`)",
                key.path.display()
            ),
            None => bail!(
                "it is not signed, and this daemon requires engines signed by {} \
                 (--require-signed): `epu engine sign` writes its signature beside it, as \
                 {}",
                key.path.display(),
                crate::signing::signature_path(Path::new(spec)).display()
            ),
        }
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

/// The name of an engine given as a bundled name, an OCI reference or a path: the file's stem
/// for a path.
pub fn engine_name(spec: &str) -> String {
    if bundled::get(spec).is_some() || crate::oci::is_oci(spec) {
        return spec.to_string();
    }
    Path::new(spec)
        .file_stem()
        .map_or(spec.to_string(), |s| s.to_string_lossy().into_owned())
}
