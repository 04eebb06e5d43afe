//! What a daemon takes at start: the state dir's lock, and its share of fds.

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// The most TCP API connections served at once unless configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// The most connections the unix socket serves at once.
pub const UNIX_MAX_CONNECTIONS: usize = 256;

/// The fds kept for everything but API connections: the store, the listeners, worker logs
/// and watchers, engines' compile cache, sensors.
pub const FD_RESERVE: u64 = 1024;

/// Raises the fd soft limit to the hard one, and returns how many TCP connections fit
/// beside [`FD_RESERVE`] and the unix socket's connections.
pub(super) fn fd_budget(wanted: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("raising the fd limit from {soft} to {hard}: {e}");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    let room = soft
        .saturating_sub(FD_RESERVE)
        .saturating_sub(UNIX_MAX_CONNECTIONS as u64);
    let max = wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(16);
    if max < wanted {
        tracing::warn!(
            "the fd limit ({soft}) leaves room for {max} TCP connections, not {wanted}: \
             raise it (ulimit -n) for more"
        );
    }
    max
}

/// How long to wait for the lock of a daemon that is already dead but still exiting (a killed
/// process keeps its files until its last thread is gone, which a slow disk can delay).
const DYING_HOLDER_WAIT: Duration = Duration::from_secs(15);

/// Takes the state dir's lock, or says which daemon holds it.
pub(super) fn lock_state_dir(dir: &Path) -> Result<Flock<File>> {
    let path = dir.join("daemon.lock");
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .with_context(|| format!("opening {} (a symlink is refused)", path.display()))?
    };
    let deadline = std::time::Instant::now() + DYING_HOLDER_WAIT;
    let mut lock = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((f, _)) => file = f,
        }
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder_pid = holder.trim().parse::<i32>().ok();
        let holder_dead =
            holder_pid.is_some_and(|p| crate::provisioner::process::os::start_time(p).is_none());
        if !holder_dead || std::time::Instant::now() > deadline {
            anyhow::bail!(
                "another epu daemon is already running on {} (pid {})",
                dir.display(),
                holder.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    lock.set_len(0)?;
    write!(lock, "{}", std::process::id())?;
    Ok(lock)
}
