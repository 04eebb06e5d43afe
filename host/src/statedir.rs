//! The state dir as a private place: it must belong to the daemon's user and be closed to
//! everyone else, and the daemon opens its files without following symlinks, creating files
//! 0600 and dirs 0700. A state dir others could write to would let them plant a token or a
//! symlink; one they could read would show them the store and the workers' logs.

use anyhow::{ensure, Context, Result};
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Creates the state dir (0700) if needed, checks that it is private, and returns its
/// absolute path.
pub fn prepare(dir: &Path) -> Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating state dir {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    check_private_dir(&dir, "state dir")?;
    Ok(dir)
}

/// Checks that `dir` is a directory of ours that no other user can read, write or enter.
pub fn check_private_dir(dir: &Path, what: &str) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("reading the {what} {}", dir.display()))?;
    ensure!(
        meta.is_dir(),
        "the {what} {} is not a directory (a symlink is not accepted)",
        dir.display()
    );
    let me = nix::unistd::geteuid().as_raw();
    ensure!(
        meta.uid() == me,
        "the {what} {} belongs to uid {}, not to this user (uid {me}): refusing it",
        dir.display(),
        meta.uid()
    );
    let mode = meta.permissions().mode() & 0o777;
    ensure!(
        mode & 0o077 == 0,
        "the {what} {} is open to other users (mode {mode:o}): run `chmod 700 {}`",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// Creates `dir` (0700) inside the state dir if it is missing, and checks it as
/// [`check_private_dir`] does.
pub fn private_subdir(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
    }
    check_private_dir(dir, "directory")
}

/// Opens a file of the state dir for reading and writing without following a symlink:
/// `create` makes it (0600) if missing and empties it. An existing file must be a regular
/// file of ours.
pub fn open_private(path: &Path, create: bool) -> std::io::Result<File> {
    let mut o = File::options();
    o.read(true).custom_flags(libc_flags()).mode(0o600);
    if create {
        o.write(true).create(true).truncate(true);
    }
    let f = o.open(path)?;
    check_owned_file(&f, path)?;
    Ok(f)
}

/// Opens a log for appending (creating it 0600), without following a symlink.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    let f = File::options()
        .create(true)
        .append(true)
        .custom_flags(libc_flags())
        .mode(0o600)
        .open(path)?;
    check_owned_file(&f, path)?;
    Ok(f)
}

/// Writes a small file of the state dir whole (0600), replacing it, without following a
/// symlink.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    open_private(path, true)?.write_all(text.as_bytes())
}

/// `O_NOFOLLOW`: opening a symlink fails with ELOOP.
fn libc_flags() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

fn check_owned_file(f: &File, path: &Path) -> std::io::Result<()> {
    let meta = f.metadata()?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != me {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file of this user",
            path.display()
        )));
    }
    Ok(())
}

/// The umask the process had before [`private_umask`], which workers get back.
static WORKER_UMASK: AtomicU32 = AtomicU32::new(0o022);

/// Makes everything the daemon creates private (umask 077). Workers get the umask it
/// replaced ([`worker_umask`]).
pub fn private_umask() {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o077)).bits();
    if old != 0o077 {
        WORKER_UMASK.store(old, Ordering::Relaxed);
    }
}

/// The umask workers and services start with: the daemon's before it made its own private.
pub fn worker_umask() -> u32 {
    WORKER_UMASK.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_dirs_symlinks_and_short_files_are_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("s");
        let ok = prepare(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&ok).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = prepare(&dir).unwrap_err().to_string();
        assert!(
            err.contains("open to other users") && err.contains("755"),
            "{err}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = base.path().join("target");
        std::fs::write(&target, "keep me").unwrap();
        let link = dir.join("api-token");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_private(&link, false).is_err());
        assert!(open_private(&link, true).is_err());
        assert!(open_append(&link).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        write_private(&dir.join("f"), "x").unwrap();
        let mode = std::fs::metadata(dir.join("f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
