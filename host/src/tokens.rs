//! Who may call the TCP API: its tokens, and the rate limit of the log of refused calls. The
//! admin token (`<state dir>/api-token`, mode 0600, or configured) may do anything; a worker's
//! token, derived from a secret kept in the state dir and the instance id, may only send that
//! instance's heartbeats. The provisioner hands workers their tokens; the API checks them. The
//! unix socket needs no token: its mode (0600) is its guard.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The env var that gives the admin token instead of the generated one.
pub const TOKEN_VAR: &str = "EPU_API_TOKEN";

/// The tokens a daemon accepts.
pub struct Tokens {
    admin: String,
    secret: String,
    /// The token every node of a cluster admits as the admin's, for requests that another
    /// node forwards.
    cluster: std::sync::OnceLock<String>,
}

/// The shortest token a state dir file may hold.
pub const MIN_FILE_TOKEN: usize = 32;

/// Reads a state dir file holding a token, creating it (mode 0600) with a random one first if
/// it is missing. A symlink, a file other users can read, or a token shorter than
/// [`MIN_FILE_TOKEN`] is refused, never replaced.
fn load_or_create(path: &Path) -> Result<String> {
    match crate::statedir::open_private(path, false) {
        Ok(mut f) => {
            let mut text = String::new();
            f.read_to_string(&mut text)
                .with_context(|| format!("reading {}", path.display()))?;
            let token = text.trim().to_string();
            anyhow::ensure!(
                token.len() >= MIN_FILE_TOKEN,
                "{} holds a token of {} characters; it needs at least {MIN_FILE_TOKEN} \
                 (delete the file to have a new one made)",
                path.display(),
                token.len()
            );
            return Ok(token);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("opening {}", path.display()))),
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut f = crate::statedir::open_private(path, true)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{token}")?;
    Ok(token)
}

/// How often refused TCP requests are logged at most.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Rate-limits the log lines of refused requests.
#[derive(Default)]
pub struct RefusalLog(Mutex<(Option<Instant>, u64)>);

impl RefusalLog {
    /// Whether to log this refusal; if so, with how many were left unlogged since the last.
    pub fn log_now(&self) -> Option<u64> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match g.0 {
            Some(last) if now.duration_since(last) < REFUSAL_LOG_EVERY => {
                g.1 += 1;
                None
            }
            _ => {
                let suppressed = std::mem::take(&mut g.1);
                g.0 = Some(now);
                Some(suppressed)
            }
        }
    }
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
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// The token that instance `id`'s worker uses. In a cluster it derives from the cluster's
    /// token, so that every node admits it (the worker's node may be gone).
    pub fn worker_token(&self, id: &str) -> String {
        let mut h = Sha256::new();
        match self.cluster.get() {
            Some(cluster) => {
                h.update(b"worker\0");
                h.update(cluster.as_bytes());
            }
            None => h.update(self.secret.as_bytes()),
        }
        h.update([0]);
        h.update(id.as_bytes());
        format!("{:x}", h.finalize())[..40].to_string()
    }

    /// Admits the cluster's token as an admin token from now on; worker tokens derive from it
    /// (call it before any worker is launched).
    pub fn admit_cluster(&self, token: String) {
        let _ = self.cluster.set(token);
    }

    /// Whether `token` is the admin token (or the cluster's).
    pub fn is_admin(&self, token: &str) -> bool {
        same(token, &self.admin) || self.cluster.get().is_some_and(|c| same(token, c))
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

    #[test]
    fn in_a_cluster_every_node_admits_every_worker_s_token() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (
            Tokens::load(a.path(), None).unwrap(),
            Tokens::load(b.path(), None).unwrap(),
        );
        assert!(!b.is_worker(&a.worker_token("i-1"), "i-1"));
        let cluster = "c".repeat(64);
        a.admit_cluster(cluster.clone());
        b.admit_cluster(cluster.clone());
        let w = a.worker_token("i-1");
        assert!(b.is_worker(&w, "i-1"));
        assert!(!b.is_worker(&w, "i-2"));
        assert!(!b.is_admin(&w));
        assert!(b.is_admin(&cluster));
    }
}
