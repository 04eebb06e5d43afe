//! The SQLite store: the one source of truth for domains, engine configs, instances, memos and
//! the append-only event log. A restart recovers everything from it.
//!
//! Every change of an instance's state or health appends an event in the same transaction and
//! stamps the instance with that event's sequence number (`changed_seq`). A controller remembers
//! the sequence number of its last decide, which is how it finds "what changed since".

mod schema;

use crate::model::{now, DomainSpec, Health, HealthSettings, InstanceState, ProcessDeployable};
use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;
use tokio::sync::watch;

pub use schema::VERSION as SCHEMA_VERSION;

/// A domain as stored: its spec plus what the daemon keeps for it.
#[derive(Clone, Debug)]
pub struct DomainRecord {
    pub spec: DomainSpec,
    /// The sha256 of the engine's component; its bytes are in the state dir's `engines/`.
    pub engine_sha: String,
    pub config_version: i64,
    pub memo: Vec<u8>,
    pub last_decide_seq: i64,
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
}

/// A launch to record before anything is spawned.
pub struct NewInstance {
    pub id: String,
    pub launch_id: String,
    pub vars: Vec<(String, String)>,
}

/// The SQLite store. Calls are short; one connection behind a mutex serves the whole daemon.
pub struct Store {
    conn: Mutex<Connection>,
    /// The newest event sequence number, for followers of the event log.
    last_seq: watch::Sender<i64>,
}

const INSTANCE_COLUMNS: &str = "id, domain, launch_id, state, state_time, health, health_time, \
     last_heartbeat, vars, pid, pid_start, error, changed_seq, created";

impl Store {
    /// Opens (creating if needed) the store at `path` in WAL mode and migrates it.
    pub fn open(path: &Path) -> Result<Store> {
        let mut conn =
            Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;
        let last: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        Ok(Store {
            conn: Mutex::new(conn),
            last_seq: watch::channel(last).0,
        })
    }

    fn with_tx<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        let last: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        self.last_seq.send_if_modified(|v| {
            let changed = *v != last;
            *v = last;
            changed
        });
        Ok(out)
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn)
    }

    /// Appends one event and returns its sequence number.
    pub fn event(
        &self,
        domain: Option<&str>,
        instance: Option<&str>,
        kind: &str,
        detail: Value,
    ) -> Result<i64> {
        self.with_tx(|tx| append_event(tx, domain, instance, kind, &detail))
    }

    /// A receiver that sees the newest event sequence number change.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.last_seq.subscribe()
    }

    /// Events after `after`, oldest first, optionally of one domain.
    pub fn events_after(&self, after: i64, domain: Option<&str>, limit: u32) -> Result<Vec<Event>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, time, domain, instance, kind, detail FROM events \
                 WHERE seq > ?1 AND (?2 IS NULL OR domain = ?2) ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![after, domain, limit], |r| {
                Ok(Event {
                    seq: r.get(0)?,
                    time: r.get(1)?,
                    domain: r.get(2)?,
                    instance: r.get(3)?,
                    kind: r.get(4)?,
                    detail: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or(Value::Null),
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    // ---- domains ----

    /// Creates a domain with its first config version. Fails if the name is taken.
    pub fn insert_domain(&self, spec: &DomainSpec, engine_sha: &str) -> Result<()> {
        self.with_tx(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM domains WHERE name = ?1)",
                [&spec.name],
                |r| r.get(0),
            )?;
            anyhow::ensure!(!exists, "domain '{}' already exists", spec.name);
            let t = now();
            tx.execute(
                "INSERT INTO domains (name, engine_name, engine_sha, deployable, health, \
                 max_instances, pulse_ms, run, config_version, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9)",
                params![
                    spec.name,
                    spec.engine,
                    engine_sha,
                    serde_json::to_string(&spec.deployable)?,
                    serde_json::to_string(&spec.health)?,
                    spec.max_instances,
                    spec.pulse_ms,
                    spec.run,
                    t
                ],
            )?;
            let config = Value::Object(spec.config.clone()).to_string();
            tx.execute(
                "INSERT INTO engine_configs (domain, version, config, time) VALUES (?1, 1, ?2, ?3)",
                params![spec.name, config, t],
            )?;
            let detail = serde_json::json!({"engine": spec.engine, "engine_sha": engine_sha, "config": spec.config});
            append_event(tx, Some(&spec.name), None, "domain-added", &detail)?;
            Ok(())
        })
    }

    pub fn domains(&self) -> Result<Vec<DomainRecord>> {
        self.query_domains(None)
    }

    pub fn domain(&self, name: &str) -> Result<Option<DomainRecord>> {
        Ok(self.query_domains(Some(name))?.pop())
    }

    fn query_domains(&self, name: Option<&str>) -> Result<Vec<DomainRecord>> {
        self.with_conn(|c| query_domains_in(c, name))
    }

    /// What a decide needs, read at one point in time: the domain, its live instances plus
    /// those changed since its last decide, and the newest event sequence number.
    pub fn decide_view(&self, domain: &str) -> Result<(DomainRecord, Vec<InstanceRecord>, i64)> {
        self.with_conn(|c| {
            let record = query_domains_in(c, Some(domain))?
                .pop()
                .ok_or_else(|| anyhow::anyhow!("unknown domain '{domain}'"))?;
            let sql = format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE domain = ?1 \
                 AND (state_ord < {} OR changed_seq > ?2) ORDER BY id",
                InstanceState::Terminated as i64
            );
            let instances = query_instances_in(c, &sql, params![domain, record.last_decide_seq])?;
            let seq: i64 =
                c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
            Ok((record, instances, seq))
        })
    }

    /// Stores a new config version for a domain, which becomes the one in force.
    pub fn save_config(
        &self,
        domain: &str,
        config: &serde_json::Map<String, Value>,
        change: &serde_json::Map<String, Value>,
    ) -> Result<i64> {
        self.with_tx(|tx| {
            let version: i64 = tx.query_row(
                "SELECT config_version + 1 FROM domains WHERE name = ?1",
                [domain],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO engine_configs (domain, version, config, time) VALUES (?1, ?2, ?3, ?4)",
                params![domain, version, Value::Object(config.clone()).to_string(), now()],
            )?;
            tx.execute(
                "UPDATE domains SET config_version = ?2 WHERE name = ?1",
                params![domain, version],
            )?;
            let detail = serde_json::json!({"version": version, "change": change});
            append_event(tx, Some(domain), None, "reconfigured", &detail)?;
            Ok(version)
        })
    }

    /// Deletes a domain, its configs and its instance records; the event log keeps its history.
    pub fn delete_domain(&self, domain: &str) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute("DELETE FROM instances WHERE domain = ?1", [domain])?;
            tx.execute("DELETE FROM engine_configs WHERE domain = ?1", [domain])?;
            tx.execute("DELETE FROM domains WHERE name = ?1", [domain])?;
            append_event(tx, Some(domain), None, "domain-removed", &Value::Null)?;
            Ok(())
        })
    }

    /// Records a decision in one transaction: the decide event, the new memo, the sequence
    /// number it saw, and a `requesting` row for every launch, before anything is spawned.
    pub fn record_decision(
        &self,
        domain: &str,
        seen_seq: i64,
        memo: Option<&[u8]>,
        launches: &[NewInstance],
        detail: Option<&Value>,
    ) -> Result<()> {
        self.with_tx(|tx| {
            if let Some(memo) = memo {
                tx.execute(
                    "UPDATE domains SET memo = ?2 WHERE name = ?1",
                    params![domain, memo],
                )?;
            }
            tx.execute(
                "UPDATE domains SET last_decide_seq = ?2 WHERE name = ?1",
                params![domain, seen_seq],
            )?;
            if let Some(detail) = detail {
                append_event(tx, Some(domain), None, "decision", detail)?;
            }
            let t = now();
            for l in launches {
                let seq = append_event(
                    tx,
                    Some(domain),
                    Some(&l.id),
                    "launch-recorded",
                    &serde_json::json!({"launch_id": l.launch_id}),
                )?;
                tx.execute(
                    "INSERT INTO instances (id, domain, launch_id, state, state_ord, state_time, \
                     health, health_time, vars, changed_seq, created) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8, ?9, ?6)",
                    params![
                        l.id,
                        domain,
                        l.launch_id,
                        InstanceState::Requesting.as_str(),
                        InstanceState::Requesting as i64,
                        t,
                        Health::Unknown.as_str(),
                        serde_json::to_string(&l.vars)?,
                        seq
                    ],
                )?;
            }
            Ok(())
        })
    }

    // ---- instances ----

    /// The instances of a domain (or of all domains) that are not final.
    pub fn live_instances(&self, domain: Option<&str>) -> Result<Vec<InstanceRecord>> {
        self.query_instances(
            &format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE (?1 IS NULL OR domain = ?1) \
                 AND state_ord < {} ORDER BY domain, id",
                InstanceState::Terminated as i64
            ),
            params![domain],
        )
    }

    pub fn instance(&self, id: &str) -> Result<Option<InstanceRecord>> {
        Ok(self
            .query_instances(
                &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1"),
                params![id],
            )?
            .pop())
    }

    fn query_instances(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<InstanceRecord>> {
        self.with_conn(|c| query_instances_in(c, sql, params))
    }

    /// Moves an instance forward to `state` and records why. Returns the updated record, or
    /// None when the instance is unknown or already at or past `state` (states never go back).
    pub fn advance(
        &self,
        id: &str,
        state: InstanceState,
        update: StateUpdate,
    ) -> Result<Option<InstanceRecord>> {
        self.with_tx(|tx| {
            let Some(current) = instance_in_tx(tx, id)? else {
                return Ok(None);
            };
            if current.state >= state {
                return Ok(None);
            }
            let mut detail = serde_json::json!({"from": current.state, "to": state});
            if let Some(pid) = update.pid {
                detail["pid"] = pid.into();
            }
            if let Some(e) = &update.error {
                detail["error"] = e.clone().into();
            }
            let seq = append_event(tx, Some(&current.domain), Some(id), "state", &detail)?;
            let t = now();
            // Reaching terminating or beyond resets health to unknown, as in the original.
            let reset_health = state >= InstanceState::Terminating && current.health != Health::Unknown;
            tx.execute(
                "UPDATE instances SET state = ?2, state_ord = ?3, state_time = ?4, changed_seq = ?5, \
                 pid = COALESCE(?6, pid), pid_start = COALESCE(?7, pid_start), error = COALESCE(?8, error), \
                 health = CASE WHEN ?9 THEN 'unknown' ELSE health END, \
                 health_time = CASE WHEN ?9 THEN ?4 ELSE health_time END WHERE id = ?1",
                params![
                    id,
                    state.as_str(),
                    state as i64,
                    t,
                    seq,
                    update.pid,
                    update.pid_start.map(|v| v as i64),
                    update.error,
                    reset_health
                ],
            )?;
            instance_in_tx(tx, id)
        })
    }

    /// Sets an instance's health. Returns the updated record if it changed.
    pub fn set_health(&self, id: &str, health: Health) -> Result<Option<InstanceRecord>> {
        self.with_tx(|tx| {
            let Some(current) = instance_in_tx(tx, id)? else {
                return Ok(None);
            };
            if current.health == health {
                return Ok(None);
            }
            let detail = serde_json::json!({"from": current.health, "to": health});
            let seq = append_event(tx, Some(&current.domain), Some(id), "health", &detail)?;
            tx.execute(
                "UPDATE instances SET health = ?2, health_time = ?3, changed_seq = ?4 WHERE id = ?1",
                params![id, health.as_str(), now(), seq],
            )?;
            instance_in_tx(tx, id)
        })
    }

    /// Records the time of a heartbeat.
    pub fn touch_heartbeat(&self, id: &str, time: f64) -> Result<()> {
        self.with_conn(|c| {
            c.prepare_cached("UPDATE instances SET last_heartbeat = ?2 WHERE id = ?1")?
                .execute(params![id, time])?;
            Ok(())
        })
    }
}

/// What else changes with a state: the pid of a spawned process, an error text.
#[derive(Default)]
pub struct StateUpdate {
    pub pid: Option<i32>,
    pub pid_start: Option<u64>,
    pub error: Option<String>,
}

impl StateUpdate {
    pub fn error(text: impl Into<String>) -> Self {
        StateUpdate {
            error: Some(text.into()),
            ..Default::default()
        }
    }
}

fn query_domains_in(c: &Connection, name: Option<&str>) -> Result<Vec<DomainRecord>> {
    let mut stmt = c.prepare_cached(
        "SELECT d.name, d.engine_name, d.engine_sha, d.deployable, d.health, d.max_instances, \
         d.pulse_ms, d.run, d.config_version, d.memo, d.last_decide_seq, e.config \
         FROM domains d JOIN engine_configs e ON e.domain = d.name AND e.version = d.config_version \
         WHERE ?1 IS NULL OR d.name = ?1 ORDER BY d.name",
    )?;
    let rows = stmt.query_map([name], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, u32>(5)?,
            r.get::<_, u32>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, i64>(8)?,
            r.get::<_, Vec<u8>>(9)?,
            r.get::<_, i64>(10)?,
            r.get::<_, String>(11)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, engine, sha, dep, health, max, pulse, run, version, memo, seq, config) = row?;
        let deployable: ProcessDeployable = serde_json::from_str(&dep)
            .with_context(|| format!("stored deployable of domain '{name}'"))?;
        let health: HealthSettings = serde_json::from_str(&health)
            .with_context(|| format!("stored health settings of domain '{name}'"))?;
        let config = match serde_json::from_str(&config)? {
            Value::Object(m) => m,
            _ => anyhow::bail!("stored config of domain '{name}' is not an object"),
        };
        out.push(DomainRecord {
            spec: DomainSpec {
                name,
                engine,
                config,
                deployable,
                health,
                max_instances: max,
                pulse_ms: pulse,
                run,
            },
            engine_sha: sha,
            config_version: version,
            memo,
            last_decide_seq: seq,
        });
    }
    Ok(out)
}

fn append_event(
    tx: &Transaction,
    domain: Option<&str>,
    instance: Option<&str>,
    kind: &str,
    detail: &Value,
) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO events (time, domain, instance, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now(), domain, instance, kind, detail.to_string()])?;
    Ok(tx.last_insert_rowid())
}

fn query_instances_in(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<InstanceRecord>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(params, instance_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn instance_in_tx(tx: &Transaction, id: &str) -> Result<Option<InstanceRecord>> {
    Ok(tx
        .prepare_cached(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1"
        ))?
        .query_row([id], instance_from_row)
        .optional()?)
}

fn instance_from_row(r: &Row) -> rusqlite::Result<InstanceRecord> {
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what}").into(),
        )
    };
    let state: String = r.get(3)?;
    let health: String = r.get(5)?;
    let vars: String = r.get(8)?;
    Ok(InstanceRecord {
        id: r.get(0)?,
        domain: r.get(1)?,
        launch_id: r.get(2)?,
        state: InstanceState::parse(&state).ok_or_else(|| bad(3, "state"))?,
        state_time: r.get(4)?,
        health: Health::parse(&health).ok_or_else(|| bad(5, "health"))?,
        health_time: r.get(6)?,
        last_heartbeat: r.get(7)?,
        vars: serde_json::from_str(&vars).map_err(|_| bad(8, "vars"))?,
        pid: r.get(9)?,
        pid_start: r.get::<_, Option<i64>>(10)?.map(|v| v as u64),
        error: r.get(11)?,
        changed_seq: r.get(12)?,
        created: r.get(13)?,
    })
}

#[cfg(test)]
mod tests;
