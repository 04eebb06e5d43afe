//! `epu engine push` and `pull` (engines to and from OCI registries, each checked to be a
//! component of a contract this epu runs), and `keygen`, `sign` and `verify` (minisign
//! signatures), all without a daemon.

use super::print::print_json;
use crate::engine::{EngineHost, DEFAULT_MAX_ENGINE_BYTES};
use crate::fsutil::write_atomically;
use anyhow::{Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Loads `bytes` as an engine (its compiled code is kept in the state dir, as `check` keeps
/// it) and returns its sha256 and contract version.
fn load(state_dir: &Path, bytes: &[u8]) -> Result<(String, String)> {
    let dir = crate::statedir::prepare(state_dir)?;
    let host = EngineHost::new(&dir)?;
    let loaded = host.prepare(bytes)?;
    host.keep(&loaded)?;
    Ok((loaded.sha.clone(), loaded.contract.clone()))
}

/// Pushes `engine`, with its signature: `signature`'s file, else the `.minisig` beside it.
pub(super) async fn push(
    state_dir: &Path,
    engine: String,
    reference: String,
    signature: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let state_dir = state_dir.to_path_buf();
    let target = reference.clone();
    let (sha, contract, digest, signed) = tokio::task::spawn_blocking(move || -> Result<_> {
        let (bytes, beside) =
            EngineHost::read_engine_signed(&engine, Path::new("."), DEFAULT_MAX_ENGINE_BYTES)?;
        let signature = match signature {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => beside,
        };
        let (sha, contract) =
            load(&state_dir, &bytes).with_context(|| format!("engine '{engine}'"))?;
        let signed = signature.is_some();
        let digest = crate::oci::push(bytes, &target, signature)?;
        Ok((sha, contract, digest, signed))
    })
    .await??;
    let pinned = pinned(&reference, &digest);
    if json {
        print_json(&json!({
            "reference": reference,
            "digest": digest,
            "pinned": pinned,
            "sha256": sha,
            "contract": contract,
            "signed": signed,
        }));
    } else {
        let signed = if signed {
            ", with its signature"
        } else {
            ", unsigned"
        };
        println!("pushed {reference} (epu:engine@{contract}, component sha256:{sha}{signed})");
        println!("digest {digest}: pin it as {pinned}");
    }
    Ok(())
}

pub(super) async fn pull(
    state_dir: &Path,
    reference: String,
    output: PathBuf,
    json: bool,
) -> Result<()> {
    let state_dir = state_dir.to_path_buf();
    let spec = reference.clone();
    let (pulled, sha, contract) = tokio::task::spawn_blocking(move || -> Result<_> {
        let pulled = crate::oci::pull(&spec, DEFAULT_MAX_ENGINE_BYTES)?;
        let (sha, contract) =
            load(&state_dir, &pulled.bytes).with_context(|| format!("the component of {spec}"))?;
        Ok((pulled, sha, contract))
    })
    .await??;
    // Written whole or not at all, with the signature beside it when there is one.
    write_atomically(&output, pulled.bytes.as_slice())?;
    if let Some(sig) = &pulled.signature {
        write_atomically(&crate::signing::signature_path(&output), sig.as_bytes())?;
    }
    if json {
        print_json(&json!({
            "reference": reference,
            "digest": pulled.manifest_digest,
            "pinned": pulled.pinned,
            "sha256": sha,
            "contract": contract,
            "bytes": pulled.bytes.len(),
            "output": output,
            "signed": pulled.signature.is_some(),
        }));
    } else {
        println!(
            "pulled {reference} into {} ({} bytes, epu:engine@{contract}, component sha256:{sha})",
            output.display(),
            pulled.bytes.len()
        );
        println!(
            "digest {}: pinned, {}",
            pulled.manifest_digest, pulled.pinned
        );
    }
    Ok(())
}

/// `epu engine keygen KEY`.
pub(super) fn keygen(key: &Path, json: bool) -> Result<()> {
    let public = crate::signing::keygen(key)?;
    if json {
        print_json(&json!({ "secret_key": key, "public_key": public }));
    } else {
        println!(
            "wrote the secret key {} (keep it private) and the public key {}",
            key.display(),
            public.display()
        );
    }
    Ok(())
}

/// `epu engine sign FILE --key KEY [-o SIG]`: the signature goes beside the file by default.
pub(super) fn sign(engine: &Path, key: &Path, output: Option<PathBuf>, json: bool) -> Result<()> {
    let bytes = EngineHost::read_engine(
        &engine.display().to_string(),
        Path::new("."),
        DEFAULT_MAX_ENGINE_BYTES,
    )?;
    let name = engine.file_name().unwrap_or_default().to_string_lossy();
    let sha = crate::engine::sha256_hex(&bytes);
    let signature = crate::signing::sign(&bytes, key, &format!("file:{name} sha256:{sha}"))?;
    let out = output.unwrap_or_else(|| crate::signing::signature_path(engine));
    write_atomically(&out, signature.as_bytes())?;
    if json {
        print_json(&json!({ "engine": engine, "signature": out, "sha256": sha }));
    } else {
        println!(
            "signed {} (sha256:{sha}) into {}",
            engine.display(),
            out.display()
        );
    }
    Ok(())
}

/// `epu engine verify ENGINE --key KEY.pub [--signature SIG]`: a file, or an OCI reference with
/// the signature pushed beside it.
pub(super) fn verify(
    engine: &str,
    key: &Path,
    signature: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    let trusted = crate::signing::TrustedKey::load(key)?;
    let (bytes, beside) =
        EngineHost::read_engine_signed(engine, Path::new("."), DEFAULT_MAX_ENGINE_BYTES)?;
    let signature = match signature {
        Some(path) => {
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
        }
        None => beside.ok_or_else(|| anyhow::anyhow!("{engine} has no signature"))?,
    };
    trusted.verify(&bytes, &signature)?;
    let sha = crate::engine::sha256_hex(&bytes);
    if json {
        print_json(&json!({ "engine": engine, "verified": true, "sha256": sha }));
    } else {
        println!("{engine} (sha256:{sha}) is signed by {}", key.display());
    }
    Ok(())
}

/// `reference` pinned to `digest`: its tag (or digest) replaced.
fn pinned(reference: &str, digest: &str) -> String {
    let base = reference.split('@').next().unwrap_or(reference);
    // A tag follows the last ':' after the last '/' (a port's ':' comes before it).
    let slash = base.rfind('/').unwrap_or(0);
    let repo = match base[slash..].rfind(':') {
        Some(colon) => &base[..slash + colon],
        None => base,
    };
    format!("{repo}@{digest}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reference_is_pinned_in_place_of_its_tag() {
        let d = "sha256:ab";
        assert_eq!(
            super::pinned("oci://127.0.0.1:5000/e/np:1.0", d),
            "oci://127.0.0.1:5000/e/np@sha256:ab"
        );
        assert_eq!(
            super::pinned("oci://127.0.0.1:5000/e/np", d),
            "oci://127.0.0.1:5000/e/np@sha256:ab"
        );
        assert_eq!(
            super::pinned("oci://h/np@sha256:00", d),
            "oci://h/np@sha256:ab"
        );
    }
}
