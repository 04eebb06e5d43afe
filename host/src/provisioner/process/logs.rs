//! The workers' log files, `<state dir>/logs/<instance>.log`, and how much of them is kept.
//!
//! A worker writes its output straight to its file (appending), so the daemon bounds the
//! files from outside. Every [`SWEEP_EVERY`] it:
//! - rotates a file that grew past [`Retention::max_bytes`]: that many of its last bytes go
//!   to `<instance>.log.1` (replacing the one before) and the file is emptied, so the
//!   worker's next write lands at its start;
//! - deletes the files of ended workers beyond the newest [`Retention::keep_ended`] of each
//!   domain (newest by last write), and those of workers the store no longer knows beyond
//!   the newest [`Retention::keep_ended`] of them.
//!
//! So a domain's logs take at most `2 × max_bytes` per live worker and per kept ended one,
//! plus what a worker writes between two sweeps.

use crate::store::Store;
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How much of the workers' logs is kept (`--worker-log-mib`, `--keep-worker-logs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retention {
    /// The size past which a worker's log file is rotated, and how much the rotation keeps.
    pub max_bytes: u64,
    /// How many ended workers' log files are kept per domain.
    pub keep_ended: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_bytes: 16 << 20,
            keep_ended: 20,
        }
    }
}
/// How often the files are checked.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The log file of an instance.
pub fn path(logs_dir: &Path, id: &str) -> PathBuf {
    logs_dir.join(format!("{id}.log"))
}

/// Where a rotated log's last part is kept.
pub fn rotated_path(logs_dir: &Path, id: &str) -> PathBuf {
    logs_dir.join(format!("{id}.log.1"))
}

/// What a sweep did.
#[derive(Debug, Default, PartialEq)]
pub struct Swept {
    /// Files that were rotated.
    pub rotated: usize,
    /// Instances whose files were deleted.
    pub removed: usize,
}

/// Rotates and deletes as the module says; `live` holds the ids of the live workers. A file
/// that goes away meanwhile is skipped.
pub fn sweep(
    logs_dir: &Path,
    store: &Store,
    live: &HashSet<String>,
    keep: Retention,
) -> Result<Swept> {
    let mut ended: HashMap<Option<String>, Vec<(SystemTime, String)>> = HashMap::new();
    let mut swept = Swept::default();
    for entry in std::fs::read_dir(logs_dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".log") else {
            continue;
        };
        // Never follow a link a worker may have planted.
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if meta.len() > keep.max_bytes && rotate(logs_dir, id, keep.max_bytes).is_ok() {
            swept.rotated += 1;
        }
        if live.contains(id) {
            continue;
        }
        let domain = store.instance(id)?.map(|i| i.domain);
        let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        ended
            .entry(domain)
            .or_default()
            .push((written, id.to_string()));
    }
    for (_, mut files) in ended {
        files.sort_by(|a, b| b.cmp(a));
        for (_, id) in files.into_iter().skip(keep.keep_ended) {
            let _ = std::fs::remove_file(rotated_path(logs_dir, &id));
            if std::fs::remove_file(path(logs_dir, &id)).is_ok() {
                swept.removed += 1;
            }
        }
    }
    Ok(swept)
}

/// Keeps the last `max_bytes` of the instance's log in its rotated file, then empties the
/// log. Lines written between the copy and the emptying are lost.
fn rotate(logs_dir: &Path, id: &str, max_bytes: u64) -> Result<()> {
    let from = path(logs_dir, id);
    let mut log = crate::statedir::open_private(&from, false)?;
    let len = log.metadata()?.len();
    log.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
    let to = rotated_path(logs_dir, id);
    let _ = std::fs::remove_file(&to);
    let mut kept = crate::statedir::open_private(&to, true)?;
    std::io::copy(&mut log.take(max_bytes), &mut kept)?;
    let log = std::fs::File::options()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&from)?;
    log.set_len(0)?;
    Ok(())
}
