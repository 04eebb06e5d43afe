//! Domains, their versioned engine configs, memos, and the record of each decision.

use super::events::append_event;
use super::instances::{query_instances_in, INSTANCE_COLUMNS};
use super::{DomainRecord, InstanceRecord, NewInstance, Store};
use crate::model::{now, DomainSpec, Health, HealthSettings, InstanceState, ProcessDeployable};
use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use serde_json::Value;

impl Store {
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
