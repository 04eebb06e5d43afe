//! Engine signatures, in minisign's format (Ed25519, with the `minisign` crate): a key pair made
//! by `epu engine keygen` (or `minisign -G -W`), a signature of a component's bytes in
//! `<file>.minisig` that `minisign -V -p KEY.pub -m FILE.wasm` checks as well, and the check a
//! daemon started with `--require-signed KEY.pub` makes of every engine it is given.

use anyhow::{bail, Context, Result};
use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// The extension of a signature file beside its component: `FILE.wasm.minisig`.
pub const EXTENSION: &str = "minisig";
/// The largest signature file read.
pub const MAX_SIGNATURE_BYTES: u64 = 4096;

/// The signature file of a component file.
pub fn signature_path(component: &Path) -> PathBuf {
    let mut name = component.as_os_str().to_owned();
    name.push(format!(".{EXTENSION}"));
    PathBuf::from(name)
}

/// Writes a new key pair: the secret key at `path` (unencrypted, mode 0600) and the public
/// key at `path.pub`. Refuses to overwrite either. Returns the public key's path.
pub fn keygen(path: &Path) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let public = PathBuf::from(format!("{}.pub", path.display()));
    for p in [path, public.as_path()] {
        if p.exists() {
            bail!("{} exists: a key is never overwritten", p.display());
        }
    }
    let pair = minisign::KeyPair::generate_unencrypted_keypair()?;
    let secret = pair
        .sk
        .to_box(Some("epu engine signing key"))?
        .into_string();
    let public_text = pair.pk.to_box()?.into_string();
    let open = |p: &Path, mode: u32| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(p)
            .with_context(|| format!("writing {}", p.display()))
    };
    open(path, 0o600)?.write_all(secret.as_bytes())?;
    open(&public, 0o644)?.write_all(public_text.as_bytes())?;
    Ok(public)
}

/// Signs component `bytes` with the unencrypted secret key at `key`; returns the signature's
/// text, as minisign writes it.
pub fn sign(bytes: &[u8], key: &Path, trusted_comment: &str) -> Result<String> {
    let text =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let secret = SecretKeyBox::from_string(&text)
        .and_then(SecretKey::from_unencrypted_box)
        .map_err(|e| {
            anyhow::anyhow!(
                "{} is not an unencrypted minisign secret key ({e}); make one with \
                 `epu engine keygen` or `minisign -G -W`",
                key.display()
            )
        })?;
    let public = PublicKey::from_secret_key(&secret).ok();
    let signature = minisign::sign(
        public.as_ref(),
        &secret,
        Cursor::new(bytes),
        Some(trusted_comment),
        Some("signature of an epu engine"),
    )?;
    Ok(signature.into_string())
}

/// The public key a daemon requires its engines to be signed with.
#[derive(Clone)]
pub struct TrustedKey {
    key: PublicKey,
    /// Where it was read from, for errors.
    pub path: PathBuf,
}

impl TrustedKey {
    /// Reads a minisign public key file.
    pub fn load(path: &Path) -> Result<TrustedKey> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let key = PublicKeyBox::from_string(&text)
            .and_then(PublicKey::from_box)
            .or_else(|_| PublicKey::from_base64(text.trim()))
            .map_err(|e| anyhow::anyhow!("{} is not a minisign public key: {e}", path.display()))?;
        Ok(TrustedKey {
            key,
            path: path.to_path_buf(),
        })
    }

    /// Checks that `signature` (minisign's text) signs `bytes` with this key.
    pub fn verify(&self, bytes: &[u8], signature: &str) -> Result<()> {
        let sig = SignatureBox::from_string(signature)
            .map_err(|e| anyhow::anyhow!("the signature is not minisign's format: {e}"))?;
        minisign::verify(&self.key, &sig, Cursor::new(bytes), true, false, false).map_err(|e| {
            anyhow::anyhow!(
                "the signature does not verify with {}: {e}",
                self.path.display()
            )
        })
    }
}

/// Reads the signature file beside a component file, if there is one (at most
/// [`MAX_SIGNATURE_BYTES`]).
pub fn read_beside(component: &Path) -> Result<Option<String>> {
    let path = signature_path(component);
    match std::fs::metadata(&path) {
        Err(_) => Ok(None),
        Ok(m) if !m.is_file() || m.len() > MAX_SIGNATURE_BYTES => bail!(
            "{} is not a signature file of at most {MAX_SIGNATURE_BYTES} bytes",
            path.display()
        ),
        Ok(_) => std::fs::read_to_string(&path)
            .map(Some)
            .with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only_and_only_for_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let public = keygen(&key).unwrap();
        assert!(keygen(&key)
            .unwrap_err()
            .to_string()
            .contains("never overwritten"));
        let sig = sign(b"component", &key, "file:x.wasm").unwrap();
        let trusted = TrustedKey::load(&public).unwrap();
        trusted.verify(b"component", &sig).unwrap();
        assert!(trusted.verify(b"componenT", &sig).is_err());
        let other = dir.path().join("other");
        let other_public = keygen(&other).unwrap();
        assert!(TrustedKey::load(&other_public)
            .unwrap()
            .verify(b"component", &sig)
            .is_err());
        assert!(trusted.verify(b"component", "junk").is_err());
        assert_eq!(
            signature_path(Path::new("/a/e.wasm")),
            Path::new("/a/e.wasm.minisig")
        );
    }
}
