//! The SQLite store: the one source of truth for domains, engine configs, instances, memos and
//! the append-only event log. A restart recovers everything from it.
//!
//! Every change of an instance's state or health appends an event in the same transaction and
//! stamps the instance with that event's sequence number (`changed_seq`). A controller remembers
//! the sequence number of its last decide, which is how it finds "what changed since".

mod decide_view;
mod decisions;
mod deployables;
mod domains;
mod events;
mod instances;
mod mirror;
mod readings;
mod runs;
mod schema;
mod shadows;

use crate::model::{DomainSpec, Health, InstanceState};
use anyhow::{Context, Result};
use rusqlite::{Connection, Transaction};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub use decide_view::DecideView;
pub use instances::StateUpdate;
pub use mirror::{Mirror, Rows};
pub use readings::KEEP_EVERY as READING_KEEP_EVERY;
pub use runs::{RunRecord, RunState, ServiceRecord};
pub use schema::VERSION as SCHEMA_VERSION;
pub use shadows::ShadowFlush;

/// A domain as stored: its spec plus what the daemon keeps for it.
#[derive(Clone, Debug)]
pub struct DomainRecord {
    pub spec: DomainSpec,
    /// The sha256 of the engine's component; its bytes are in the state dir's `engines/`.
    pub engine_sha: String,
    pub config_version: i64,
    pub memo: Vec<u8>,
    pub last_decide_seq: i64,
    /// Whether the engine is quarantined (it faulted too often).
    pub quarantined: bool,
    /// The count a `preserve` fallback holds while quarantined.
    pub preserve_target: Option<u32>,
    /// The version of `spec.deployable`: new instances run it.
    pub deployable_version: i64,
    /// The rolling refresh under way, if any.
    pub refresh: Option<crate::model::Refresh>,
}

/// One entry of a domain's engine history.
#[derive(Clone, Debug, Serialize)]
pub struct EngineVersion {
    pub version: i64,
    pub name: String,
    pub sha: String,
    pub time: f64,
    /// The config version it ran with when it became the domain's engine (none for versions
    /// recorded before schema 5).
    pub config_version: Option<i64>,
}

/// One instance as stored.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceRecord {
    pub id: String,
    pub domain: String,
    pub launch_id: String,
    pub state: InstanceState,
    pub state_time: f64,
    pub health: Health,
    pub health_time: f64,
    pub last_heartbeat: Option<f64>,
    pub vars: Vec<(String, String)>,
    pub pid: Option<i32>,
    /// The process start time (clock ticks since boot), to tell a reused pid from the worker.
    pub pid_start: Option<u64>,
    pub error: Option<String>,
    pub changed_seq: i64,
    /// When the launch was recorded.
    pub created: f64,
    /// The instance's number for its engine: larger for newer instances, and never reused while
    /// its domain exists.
    pub handle: u64,
    /// The cloud's id of the instance (`ec2` driver), once known.
    pub cloud_id: Option<String>,
    /// Whether the daemon keeps the instance from destroys while it is healthy.
    pub protected: bool,
    /// While the instance drains (it was destroyed and finishes its work first): when the
    /// drain ends at the latest.
    pub drain_until: Option<f64>,
    /// Whether the draining worker said it is done.
    pub drained: bool,
    /// The version of the domain's deployable it was launched with.
    pub version: i64,
    /// A refresh's replacement that the engine is not shown yet: until it runs healthy and an
    /// instance of another version is retired in its place.
    pub surge: bool,
}

impl InstanceRecord {
    /// Whether the instance is draining: destroyed, and not yet told to stop.
    pub fn draining(&self) -> bool {
        self.drain_until.is_some() && self.state < InstanceState::Terminating
    }
}

#[cfg(test)]
impl InstanceRecord {
    /// A record for unit tests: instance `handle` (id `i-<handle>`) in `state`, last changed at
    /// event `changed_seq`.
    pub fn for_test(handle: u64, state: InstanceState, changed_seq: i64) -> InstanceRecord {
        InstanceRecord {
            id: format!("i-{handle}"),
            domain: "d".into(),
            launch_id: "l".into(),
            state,
            state_time: 0.0,
            health: Health::Ok,
            health_time: 0.0,
            last_heartbeat: None,
            vars: vec![],
            pid: None,
            pid_start: None,
            error: None,
            changed_seq,
            created: 0.0,
            handle,
            cloud_id: None,
            protected: false,
            drain_until: None,
            drained: false,
            version: 1,
            surge: false,
        }
    }
}

/// One entry of the event log.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub seq: i64,
    pub time: f64,
    pub domain: Option<String>,
    pub instance: Option<String>,
    pub kind: String,
    pub detail: Value,
    /// The run, for an event of a run, its levels or services (`instance` names the service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// A launch to record before anything is spawned.
pub struct NewInstance {
    pub id: String,
    pub launch_id: String,
    pub vars: Vec<(String, String)>,
    /// A refresh's replacement, kept from the engine until it runs healthy.
    pub surge: bool,
}

/// The SQLite store. Calls are short; one connection behind a mutex serves the whole daemon.
pub struct Store {
    conn: Mutex<Connection>,
    /// The newest event sequence number, for followers of the event log.
    last_seq: watch::Sender<i64>,
    /// A counter per domain, bumped after every committed write to the domain's row or its
    /// instances: a reader that finds it unchanged knows its copy is current.
    generations: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// Told how long each write transaction took, in seconds (for metrics).
    write_observer: std::sync::OnceLock<Box<dyn Fn(f64) + Send + Sync>>,
    /// Where domain writes go first, in a cluster (see [`mirror`]).
    mirror: std::sync::OnceLock<mirror::Mirrored>,
}

impl Store {
    /// Opens (creating if needed) the store at `path` in WAL mode and migrates it.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement the store runs stays prepared (the default keeps 16).
        conn.set_prepared_statement_cache_capacity(128);
        schema::migrate(&mut conn)?;
        Self::with_connection(conn)
    }

    /// A store in memory, for drafts: a domain's rows made or read without a state dir.
    pub fn in_memory() -> Result<Store> {
        let mut conn = Connection::open_in_memory()?;
        schema::migrate(&mut conn)?;
        Self::with_connection(conn)
    }

    /// Opens an existing store only to read it (the history commands): nothing is migrated or
    /// written, so it works beside a running daemon and on a read-only state dir. A store of
    /// an older schema is opened with [`Store::open`] instead, which migrates it.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        use rusqlite::OpenFlags;
        let what = || format!("opening {} to read it", path.display());
        let read = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        };
        let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(what)?;
        let mut version = read(&conn);
        let dir = path.parent().unwrap_or(Path::new("."));
        if version.is_err() && nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_err() {
            // A read-only state dir has no room for SQLite's shared-memory file; nothing can
            // write there either, so the file is read as immutable.
            let file = path.display().to_string();
            let file = file
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23");
            let uri = format!("file:{file}?immutable=1");
            conn = Connection::open_with_flags(
                uri,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
            )
            .with_context(what)?;
            version = read(&conn);
        }
        let version = version.with_context(what)?;
        if version < SCHEMA_VERSION {
            drop(conn);
            return Self::open(path);
        }
        anyhow::ensure!(
            version == SCHEMA_VERSION,
            "{} was written by a newer epu (schema {version}, this build knows {SCHEMA_VERSION})",
            path.display()
        );
        Self::with_connection(conn)
    }

    fn with_connection(conn: Connection) -> Result<Store> {
        let last = newest_seq(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            last_seq: watch::channel(last).0,
            generations: Mutex::default(),
            write_observer: std::sync::OnceLock::new(),
            mirror: std::sync::OnceLock::new(),
        })
    }

    /// Sets what is told the duration (seconds) of every write transaction.
    pub fn observe_writes(&self, observer: impl Fn(f64) + Send + Sync + 'static) {
        let _ = self.write_observer.set(Box::new(observer));
    }

    /// The change counter of `domain` (see [`Store::decide_view`]). Reading it takes no lock.
    pub fn generation(&self, domain: &str) -> Arc<AtomicU64> {
        let mut map = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(domain.to_string()).or_default().clone()
    }

    /// Bumps `domain`'s change counter; called after the write has committed.
    fn touched(&self, domain: &str) {
        let map = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = map.get(domain) {
            g.fetch_add(1, Ordering::Release);
        }
    }

    fn with_tx<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let began = std::time::Instant::now();
        // Immediate: the write lock is taken (or waited for) up front. A deferred transaction
        // that reads first fails at once, without waiting, when another process holds it.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        if let Some(observe) = self.write_observer.get() {
            observe(began.elapsed().as_secs_f64());
        }
        let last = newest_seq(&conn)?;
        self.last_seq.send_if_modified(|v| {
            let changed = *v != last;
            *v = last;
            changed
        });
        Ok(out)
    }

    /// [`Store::with_tx`] for a write to `domain`'s row or instances.
    fn with_domain_tx<T>(
        &self,
        domain: &str,
        f: impl FnOnce(&Transaction) -> Result<T>,
    ) -> Result<T> {
        self.with_domain_write(|tx| Ok((f(tx)?, Some(domain.to_string()))))
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn)
    }

    /// Sets or clears a daemon-wide flag that must outlive a crash (such as `terminating`).
    pub fn set_flag(&self, name: &str, on: bool) -> Result<()> {
        self.with_tx(|tx| {
            if on {
                tx.execute(
                    "INSERT OR REPLACE INTO flags (name, time) VALUES (?1, ?2)",
                    rusqlite::params![name, crate::model::now()],
                )?;
            } else {
                tx.execute("DELETE FROM flags WHERE name = ?1", [name])?;
            }
            Ok(())
        })
    }

    /// Whether a flag is set.
    pub fn flag(&self, name: &str) -> Result<bool> {
        self.with_conn(|c| {
            let mut stmt =
                c.prepare_cached("SELECT EXISTS(SELECT 1 FROM flags WHERE name = ?1)")?;
            Ok(stmt.query_row([name], |r| r.get(0))?)
        })
    }
}

/// The sequence number of the newest event (0 when there is none).
fn newest_seq(c: &Connection) -> Result<i64> {
    let mut stmt = c.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

#[cfg(test)]
mod tests;
