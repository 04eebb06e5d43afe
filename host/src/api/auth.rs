//! Tokens of the TCP API. The admin token (`<state dir>/api-token`, mode 0600, or configured)
//! may do anything; a worker's token, derived from a secret kept in the state dir and the
//! instance id, may only send that instance's heartbeats. The unix socket needs no token: its
//! mode (0600) is its guard.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The env var that gives the admin token instead of the generated one.
pub const TOKEN_VAR: &str = "EPU_API_TOKEN";

/// The tokens a daemon accepts.
pub struct Tokens {
    admin: String,
    secret: String,
}

/// Reads a state dir file holding a token, creating it (mode 0600) with a random one first if
/// it is missing.
fn load_or_create(path: &Path) -> Result<String> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_string();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut f = std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{token}")?;
    Ok(token)
}

impl Tokens {
    /// The state dir's tokens; `configured` (or `$EPU_API_TOKEN`) replaces the generated
    /// admin token.
    pub fn load(state_dir: &Path, configured: Option<String>) -> Result<Tokens> {
        let admin = match configured.or_else(|| std::env::var(TOKEN_VAR).ok()) {
            Some(t) if t.len() >= 16 => t,
            Some(_) => anyhow::bail!("the API token must have at least 16 characters"),
            None => load_or_create(&state_dir.join("api-token"))?,
        };
        Ok(Tokens {
            admin,
            secret: load_or_create(&state_dir.join("api-secret"))?,
        })
    }

    /// The token that instance `id`'s worker uses.
    pub fn worker_token(&self, id: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        format!("{:x}", h.finalize())[..40].to_string()
    }

    /// Whether `token` is the admin token.
    pub fn is_admin(&self, token: &str) -> bool {
        same(token, &self.admin)
    }

    /// Whether `token` is the worker token of instance `id`.
    pub fn is_worker(&self, token: &str, id: &str) -> bool {
        same(token, &self.worker_token(id))
    }
}

/// Compares in time that depends only on the lengths.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_are_kept_private_and_a_worker_token_fits_only_its_instance() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::load(dir.path(), None).unwrap();
        let mode = std::fs::metadata(dir.path().join("api-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Tokens::load(dir.path(), None).unwrap();
        assert!(again.is_admin(&t.admin));
        let w = t.worker_token("i-1");
        assert!(t.is_worker(&w, "i-1"));
        assert!(!t.is_worker(&w, "i-2"));
        assert!(!t.is_admin(&w));
        assert!(Tokens::load(dir.path(), Some("short".into())).is_err());
    }
}
