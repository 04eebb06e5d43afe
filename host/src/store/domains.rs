//! Domains, their versioned engine configs and memos.

use super::events::append_event;
use super::instances::{query_instances_in, INSTANCE_COLUMNS};
use super::{DecideView, DomainRecord, EngineVersion, Store};
use crate::model::{now, Deployable, DomainSpec, EngineLimits, HealthSettings, InstanceState};
use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use serde_json::Value;

impl Store {
    /// Creates a domain with its first config version. Fails if the name is taken.
    pub fn insert_domain(&self, spec: &DomainSpec, engine_sha: &str) -> Result<()> {
        self.with_domain_tx(&spec.name, |tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM domains WHERE name = ?1)",
                [&spec.name],
                |r| r.get(0),
            )?;
            anyhow::ensure!(!exists, "domain '{}' already exists", spec.name);
            let t = now();
            tx.execute(
                "INSERT INTO domains (name, engine_name, engine_sha, deployable, health, \
                 max_instances, pulse_ms, run, config_version, created, limits, sensors, dry_run, \
                 placement, budget, drain_timeout) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    spec.name,
                    spec.engine,
                    engine_sha,
                    serde_json::to_string(&spec.deployable)?,
                    serde_json::to_string(&spec.health)?,
                    spec.max_instances,
                    spec.pulse_ms,
                    spec.run,
                    t,
                    serde_json::to_string(&spec.limits)?,
                    serde_json::to_string(&spec.sensors)?,
                    spec.dry_run,
                    serde_json::to_string(&spec.placement)?,
                    serde_json::to_string(&spec.budget)?,
                    spec.drain_timeout_seconds,
                ],
            )?;
            tx.execute(
                "INSERT INTO engine_versions (domain, seq, name, sha, time, config_version) \
                 VALUES (?1, 1, ?2, ?3, ?4, 1)",
                params![spec.name, spec.engine, engine_sha, t],
            )?;
            tx.execute(
                "INSERT INTO deployables (domain, version, deployable, time) \
                 VALUES (?1, 1, ?2, ?3)",
                params![spec.name, serde_json::to_string(&spec.deployable)?, t],
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

    /// Every domain whose stored spec reads back whole and within its ranges.
    pub fn domains(&self) -> Result<Vec<DomainRecord>> {
        self.query_domains(None)
    }

    /// A domain, if it exists and its stored spec is good (see [`Store::held_domains`]).
    pub fn domain(&self, name: &str) -> Result<Option<DomainRecord>> {
        Ok(self.query_domains(Some(name))?.pop())
    }

    /// The domains whose stored spec does not read back or is out of range (written by an
    /// older daemon, or edited by hand), with why. The daemon holds them: it starts no
    /// controller for them and leaves their workers be, until they are removed.
    pub fn held_domains(&self) -> Result<Vec<(String, String)>> {
        self.with_conn(|c| {
            Ok(read_domains_in(c, None)?
                .into_iter()
                .filter_map(|(name, r)| r.err().map(|e| (name, format!("{e:#}"))))
                .collect())
        })
    }

    fn query_domains(&self, name: Option<&str>) -> Result<Vec<DomainRecord>> {
        self.with_conn(|c| query_domains_in(c, name))
    }

    /// What a decide needs, read at one point in time: the domain, its live instances plus
    /// those changed since its last decide, the newest event sequence number, and the domain's
    /// [generation](Store::generation) before the read. While the generation stays the same,
    /// a new read would give the same.
    pub fn decide_view(&self, domain: &str) -> Result<DecideView> {
        let generation = self.generation(domain);
        self.with_conn(|c| {
            let generation = generation.load(std::sync::atomic::Ordering::Acquire);
            let record = query_domains_in(c, Some(domain))?
                .pop()
                .ok_or_else(|| anyhow::anyhow!("unknown domain '{domain}'"))?;
            let sql = format!(
                "SELECT {INSTANCE_COLUMNS} FROM instances WHERE domain = ?1 \
                 AND (state_ord < {} OR changed_seq > ?2) ORDER BY id",
                InstanceState::Terminated as i64
            );
            let instances = query_instances_in(c, &sql, params![domain, record.last_decide_seq])?;
            let seen_seq = super::newest_seq(c)?;
            Ok(DecideView {
                generation,
                deployable: Some((record.deployable_version, record.spec.deployable)),
                refresh: record.refresh,
                ..DecideView::new(instances, record.last_decide_seq, seen_seq, record.memo)
            })
        })
    }

    /// Stores a new config version for a domain, which becomes the one in force.
    pub fn save_config(
        &self,
        domain: &str,
        config: &serde_json::Map<String, Value>,
        change: &serde_json::Map<String, Value>,
    ) -> Result<i64> {
        self.with_domain_tx(domain, |tx| insert_config(tx, domain, config, change))
    }

    /// A domain's config as it was at `version`.
    pub fn config_at(&self, domain: &str, version: i64) -> Result<serde_json::Map<String, Value>> {
        self.with_conn(|c| {
            let text: String = c
                .prepare_cached(
                    "SELECT config FROM engine_configs WHERE domain = ?1 AND version = ?2",
                )?
                .query_row(params![domain, version], |r| r.get(0))
                .with_context(|| format!("config version {version} of '{domain}'"))?;
            Ok(serde_json::from_str(&text)?)
        })
    }

    /// Marks a domain as being removed: from now on it launches nothing, and a restart
    /// finishes its removal instead of starting its controller.
    pub fn set_removing(&self, domain: &str) -> Result<()> {
        self.with_domain_tx(domain, |tx| {
            tx.execute("UPDATE domains SET removing = 1 WHERE name = ?1", [domain])?;
            Ok(())
        })
    }

    /// The domains being removed (see [`Store::set_removing`]).
    pub fn removing_domains(&self) -> Result<Vec<String>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached("SELECT name FROM domains WHERE removing = 1")?;
            let names = stmt.query_map([], |r| r.get(0))?;
            Ok(names.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Deletes a domain, its configs and its instance records; the event log keeps its history.
    pub fn delete_domain(&self, domain: &str) -> Result<()> {
        self.with_domain_tx(domain, |tx| {
            tx.execute("DELETE FROM instances WHERE domain = ?1", [domain])?;
            tx.execute("DELETE FROM launches WHERE domain = ?1", [domain])?;
            tx.execute("DELETE FROM engine_configs WHERE domain = ?1", [domain])?;
            tx.execute("DELETE FROM engine_versions WHERE domain = ?1", [domain])?;
            tx.execute("DELETE FROM deployables WHERE domain = ?1", [domain])?;
            tx.execute("DELETE FROM pushed_readings WHERE domain = ?1", [domain])?;
            for table in ["shadow_points", "shadow_pairs"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE shadow IN (SELECT id FROM shadows WHERE \
                         domain = ?1)"
                    ),
                    [domain],
                )?;
            }
            tx.execute("DELETE FROM shadows WHERE domain = ?1", [domain])?;
            tx.execute("DELETE FROM domains WHERE name = ?1", [domain])?;
            append_event(tx, Some(domain), None, "domain-removed", &Value::Null)?;
            Ok(())
        })
    }

    /// Keeps a pushed sensor reading, so that it survives a restart.
    pub fn save_pushed_reading(
        &self,
        domain: &str,
        name: &str,
        value: f64,
        time: f64,
    ) -> Result<()> {
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO pushed_readings (domain, name, value, time) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (domain, name) DO UPDATE SET value = ?3, time = ?4",
                params![domain, name, value, time],
            )?;
            Ok(())
        })
    }

    /// The kept pushed readings of a domain, as `(name, value, time)`.
    pub fn pushed_readings(&self, domain: &str) -> Result<Vec<(String, f64, f64)>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, value, time FROM pushed_readings WHERE domain = ?1",
            )?;
            let rows = stmt.query_map([domain], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Makes another engine the domain's own, with a new config if one is given, and adds it
    /// to the domain's engine history, in one transaction. Returns the version number.
    pub fn set_engine(
        &self,
        domain: &str,
        name: &str,
        sha: &str,
        config: Option<&serde_json::Map<String, Value>>,
        detail: &Value,
    ) -> Result<i64> {
        self.with_domain_tx(domain, |tx| {
            if let Some(config) = config {
                insert_config(tx, domain, config, config)?;
            }
            let seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM engine_versions WHERE domain = ?1",
                [domain],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO engine_versions (domain, seq, name, sha, time, config_version) \
                 SELECT ?1, ?2, ?3, ?4, ?5, config_version FROM domains WHERE name = ?1",
                params![domain, seq, name, sha, now()],
            )?;
            tx.execute(
                "UPDATE domains SET engine_name = ?2, engine_sha = ?3, quarantined = 0 WHERE name = ?1",
                params![domain, name, sha],
            )?;
            append_event(tx, Some(domain), None, "engine-swapped", detail)?;
            Ok(seq)
        })
    }

    /// The engines a domain has had, oldest first.
    /// The sha256 of every engine a domain runs or may roll back to.
    pub fn engine_shas(&self) -> Result<std::collections::HashSet<String>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(
                "SELECT sha FROM engine_versions UNION SELECT engine_sha FROM domains \
                     UNION SELECT engine_sha FROM shadows WHERE stopped IS NULL",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub fn engine_versions(&self, domain: &str) -> Result<Vec<EngineVersion>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, name, sha, time, config_version FROM engine_versions WHERE domain = ?1 \
                 ORDER BY seq",
            )?;
            let rows = stmt.query_map([domain], |r| {
                Ok(EngineVersion {
                    version: r.get(0)?,
                    name: r.get(1)?,
                    sha: r.get(2)?,
                    time: r.get(3)?,
                    config_version: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Puts a domain's engine into quarantine (with the count a `preserve` fallback holds) or
    /// takes it out.
    pub fn set_quarantine(
        &self,
        domain: &str,
        on: bool,
        preserve_target: Option<u32>,
        detail: &Value,
    ) -> Result<()> {
        self.with_domain_tx(domain, |tx| {
            tx.execute(
                "UPDATE domains SET quarantined = ?2, preserve_target = ?3 WHERE name = ?1",
                params![domain, on, preserve_target],
            )?;
            let kind = if on {
                "quarantined"
            } else {
                "quarantine-lifted"
            };
            append_event(tx, Some(domain), None, kind, detail)?;
            Ok(())
        })
    }
}

/// Stores the next config version of a domain and makes it the one in force.
fn insert_config(
    tx: &rusqlite::Transaction,
    domain: &str,
    config: &serde_json::Map<String, Value>,
    change: &serde_json::Map<String, Value>,
) -> Result<i64> {
    let version: i64 = tx.query_row(
        "SELECT config_version + 1 FROM domains WHERE name = ?1",
        [domain],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO engine_configs (domain, version, config, time) VALUES (?1, ?2, ?3, ?4)",
        params![
            domain,
            version,
            Value::Object(config.clone()).to_string(),
            now()
        ],
    )?;
    tx.execute(
        "UPDATE domains SET config_version = ?2 WHERE name = ?1",
        params![domain, version],
    )?;
    let detail = serde_json::json!({"version": version, "change": change});
    append_event(tx, Some(domain), None, "reconfigured", &detail)?;
    Ok(version)
}

/// The domains (or one) whose stored spec is good.
fn query_domains_in(c: &Connection, name: Option<&str>) -> Result<Vec<DomainRecord>> {
    Ok(read_domains_in(c, name)?
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .collect())
}

/// The domains (or one), each read and checked by itself: one bad row is that domain's
/// error, not the whole read's.
fn read_domains_in(
    c: &Connection,
    name: Option<&str>,
) -> Result<Vec<(String, Result<DomainRecord>)>> {
    macro_rules! select {
        () => {
            "SELECT d.name, d.engine_name, d.engine_sha, d.deployable, d.health, \
         d.max_instances, d.pulse_ms, d.run, d.config_version, d.memo, d.last_decide_seq, \
         e.config, d.limits, d.quarantined, d.preserve_target, d.sensors, d.dry_run, \
         d.placement, d.budget, d.drain_timeout, d.deployable_version, d.refresh FROM domains d JOIN engine_configs e ON e.domain = d.name AND e.version = d.config_version"
        };
    }
    // Two statements: with `?1 IS NULL OR d.name = ?1`, SQLite scans every domain.
    let (mut stmt, mut rows);
    match name {
        Some(name) => {
            stmt = c.prepare_cached(concat!(select!(), " WHERE d.name = ?1"))?;
            rows = stmt.query([name])?;
        }
        None => {
            stmt = c.prepare_cached(concat!(select!(), " ORDER BY d.name"))?;
            rows = stmt.query([])?;
        }
    }
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let name: String = r.get(0)?;
        let record = read_domain_row(r, &name).and_then(|d| {
            d.spec
                .check_values()
                .with_context(|| format!("stored spec of domain '{name}'"))?;
            Ok(d)
        });
        out.push((name, record));
    }
    Ok(out)
}

/// One row of the domains query as a record.
fn read_domain_row(r: &rusqlite::Row, name: &str) -> Result<DomainRecord> {
    let name = name.to_string();
    {
        // max_instances and pulse_ms are read as i64 so that a stored value out of u32's
        // range is this domain's error, not a panic or the whole read's.
        let int = |i: usize, what: &str| -> Result<u32> {
            let v: i64 = r.get(i)?;
            u32::try_from(v).with_context(|| format!("stored {what} of domain '{name}': {v}"))
        };
        let json = |i: usize, what: &str| -> Result<String> {
            r.get::<_, String>(i)
                .with_context(|| format!("stored {what} of domain '{name}'"))
        };
        let deployable: Deployable = serde_json::from_str(&json(3, "deployable")?)
            .with_context(|| format!("stored deployable of domain '{name}'"))?;
        let health: HealthSettings = serde_json::from_str(&json(4, "health settings")?)
            .with_context(|| format!("stored health settings of domain '{name}'"))?;
        let config = match serde_json::from_str(&json(11, "config")?)? {
            Value::Object(m) => m,
            _ => anyhow::bail!("stored config of domain '{name}' is not an object"),
        };
        let limits: EngineLimits = serde_json::from_str(&json(12, "limits")?)
            .with_context(|| format!("stored limits of domain '{name}'"))?;
        let sensors = serde_json::from_str(&json(15, "sensors")?)
            .with_context(|| format!("stored sensors of domain '{name}'"))?;
        let placement = serde_json::from_str(&json(17, "placement")?)
            .with_context(|| format!("stored placement of domain '{name}'"))?;
        let budget = serde_json::from_str(&json(18, "budget")?)
            .with_context(|| format!("stored budget of domain '{name}'"))?;
        let drain_timeout_seconds = match r.get::<_, Option<i64>>(19)? {
            Some(_) => Some(int(19, "drain_timeout")?),
            None => None,
        };
        let refresh = match r.get::<_, Option<String>>(21)? {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("stored refresh of domain '{name}'"))?,
            ),
            None => None,
        };
        Ok(DomainRecord {
            deployable_version: r.get(20)?,
            refresh,
            engine_sha: r.get(2)?,
            config_version: r.get(8)?,
            memo: r.get(9)?,
            last_decide_seq: r.get(10)?,
            quarantined: r.get(13)?,
            preserve_target: r.get(14)?,
            spec: DomainSpec {
                engine: r.get(1)?,
                config,
                deployable,
                health,
                max_instances: int(5, "max_instances")?,
                pulse_ms: int(6, "pulse_ms")?,
                run: r.get(7)?,
                limits,
                sensors,
                dry_run: r.get(16)?,
                placement,
                budget,
                drain_timeout_seconds,
                name,
            },
        })
    }
}
