//! The drop-in plugins directory: a `.wasm` file copied there as `NAME.wasm` is swapped in
//! for every domain whose engine is named NAME, with the same validation as
//! `epu engine swap`. A file is taken once it has stayed unchanged for one scan, so a copy in
//! progress is never read half-written; each version is tried once. Its signature
//! (`NAME.wasm.minisig`) is part of its version, so a signature copied in after the engine
//! (which a daemon that requires signatures refused) makes it tried again.

use crate::daemon::Daemon;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the directory is scanned.
pub const SCAN_INTERVAL: Duration = Duration::from_millis(500);

/// What identifies a version of a file without reading it: its modification time and size.
type Stamp = (SystemTime, u64);

/// A version of an engine file and of the signature beside it, if any.
type Fingerprint = (Stamp, Option<Stamp>);

/// Scans `dir` until the daemon stops.
pub async fn watch(daemon: Arc<Daemon>, dir: PathBuf) {
    // Files as seen by the previous scan, and the version last acted on.
    let mut seen: HashMap<PathBuf, Fingerprint> = HashMap::new();
    let mut done: HashMap<PathBuf, Fingerprint> = HashMap::new();
    let mut tick = tokio::time::interval(SCAN_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = daemon.stopping() => return,
        }
        let now = scan(&dir);
        for (path, print) in &now {
            let stable = seen.get(path) == Some(print);
            if stable && done.get(path) != Some(print) {
                done.insert(path.clone(), *print);
                apply(&daemon, path).await;
            }
        }
        seen = now;
    }
}

fn scan(dir: &Path) -> HashMap<PathBuf, Fingerprint> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .filter_map(|p| {
            let print = (stamp(&p)?, stamp(&crate::signing::signature_path(&p)));
            Some((p, print))
        })
        .collect()
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Swaps `path` into every domain that uses its engine name and runs another version.
async fn apply(daemon: &Daemon, path: &Path) {
    let name = crate::engine::engine_name(&path.display().to_string());
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let sha = crate::engine::sha256_hex(&bytes);
    let Ok(domains) = daemon.services.store.domains() else {
        return;
    };
    for d in domains
        .iter()
        .filter(|d| d.spec.engine == name && d.engine_sha != sha)
    {
        match daemon
            .swap_engine(&d.spec.name, &path.display().to_string(), None, None)
            .await
        {
            Ok(v) => {
                tracing::info!(domain = %d.spec.name, version = v, "drop-in engine swapped in")
            }
            Err(e) => tracing::warn!(domain = %d.spec.name, "drop-in engine refused: {e}"),
        }
    }
}
