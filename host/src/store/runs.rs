//! Runs (booted launch plans): their levels, services, published attributes and domains. Every
//! change of a run, level or service appends an event tagged with the run in the same
//! transaction, so `epu history RUN` is a query.

use super::events::{append_run_event, row_to_event};
use super::{Event, Store};
use crate::model::now;
use crate::plan::template::Attrs;
use crate::plan::ServiceSpec;
use anyhow::{Context, Result};
use rusqlite::params;
use serde::Serialize;
use serde_json::{json, Value};

/// A run's state. `booting` and `booted` runs are live: they own their domains' workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Booting,
    Booted,
    Failed,
    Terminating,
    Terminated,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booting => "booting",
            Self::Booted => "booted",
            Self::Failed => "failed",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "booting" => Self::Booting,
            "booted" => Self::Booted,
            "failed" => Self::Failed,
            "terminating" => Self::Terminating,
            "terminated" => Self::Terminated,
            _ => anyhow::bail!("unknown run state '{s}' in the store"),
        })
    }

    /// Whether the run owns its domains and services (booting or booted).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Booting | Self::Booted)
    }
}

/// A run as stored.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    pub name: String,
    /// The plan file it was booted from.
    pub plan: String,
    pub state: RunState,
    pub error: Option<String>,
    pub created: f64,
    pub updated: f64,
}

/// A service of a run as stored: its spec as started (references filled), its process, and
/// what it published.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceRecord {
    pub name: String,
    /// Its bootlevel, from 1.
    pub level: u32,
    /// pending, starting, ready, failed, terminating or terminated.
    pub state: String,
    pub spec: ServiceSpec,
    pub pid: Option<i32>,
    pub pid_start: Option<u64>,
    pub attrs: std::collections::BTreeMap<String, String>,
    pub updated: f64,
}

impl Store {
    /// Records a run that starts to boot: its levels and services pending, and its domains.
    /// A run of the same name that is no longer live is replaced (its events stay).
    pub fn begin_run(
        &self,
        name: &str,
        plan: &str,
        levels: &[Vec<ServiceSpec>],
        domains: &[String],
    ) -> Result<()> {
        self.with_tx(|tx| {
            for table in ["run_levels", "run_services", "run_attrs", "run_domains"] {
                tx.execute(&format!("DELETE FROM {table} WHERE run = ?1"), [name])?;
            }
            let t = now();
            tx.execute(
                "INSERT OR REPLACE INTO runs (name, plan, state, error, created, updated) \
                 VALUES (?1, ?2, 'booting', NULL, ?3, ?3)",
                params![name, plan, t],
            )?;
            for (i, services) in levels.iter().enumerate() {
                let level = i as i64 + 1;
                tx.execute(
                    "INSERT INTO run_levels (run, level, state, updated) VALUES (?1, ?2, 'pending', ?3)",
                    params![name, level, t],
                )?;
                for s in services {
                    tx.execute(
                        "INSERT INTO run_services (run, name, level, state, spec, updated) \
                         VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
                        params![name, s.name, level, serde_json::to_string(s)?, t],
                    )?;
                }
            }
            for d in domains {
                tx.execute(
                    "INSERT INTO run_domains (run, domain) VALUES (?1, ?2)",
                    params![name, d],
                )?;
            }
            let detail = json!({"plan": plan, "levels": levels.len(), "domains": domains});
            append_run_event(tx, name, None, "run-booting", &detail)?;
            Ok(())
        })
    }

    /// Moves a run to `state`, with an error for a failed run, and records the event `kind`.
    pub fn set_run_state(
        &self,
        name: &str,
        state: RunState,
        error: Option<&str>,
        kind: &str,
        detail: Value,
    ) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "UPDATE runs SET state = ?2, error = ?3, updated = ?4 WHERE name = ?1",
                params![name, state.as_str(), error, now()],
            )?;
            append_run_event(tx, name, None, kind, &detail)?;
            Ok(())
        })
    }

    /// Moves a bootlevel (from 1) to `state` and records the event `kind`.
    pub fn set_level_state(
        &self,
        run: &str,
        level: u32,
        state: &str,
        kind: &str,
        mut detail: Value,
    ) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "UPDATE run_levels SET state = ?3, updated = ?4 WHERE run = ?1 AND level = ?2",
                params![run, level, state, now()],
            )?;
            detail["level"] = level.into();
            append_run_event(tx, run, None, kind, &detail)?;
            Ok(())
        })
    }

    /// Moves a service to `state` and records the event `kind`. `started` sets its spec as
    /// started and its process.
    pub fn set_service_state(
        &self,
        run: &str,
        service: &str,
        state: &str,
        started: Option<(&ServiceSpec, Option<(i32, u64)>)>,
        kind: &str,
        mut detail: Value,
    ) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "UPDATE run_services SET state = ?3, updated = ?4 WHERE run = ?1 AND name = ?2",
                params![run, service, state, now()],
            )?;
            if let Some((spec, process)) = started {
                tx.execute(
                    "UPDATE run_services SET spec = ?3, pid = ?4, pid_start = ?5 \
                     WHERE run = ?1 AND name = ?2",
                    params![
                        run,
                        service,
                        serde_json::to_string(spec)?,
                        process.map(|p| p.0),
                        process.map(|p| p.1 as i64)
                    ],
                )?;
            }
            detail["service"] = service.into();
            append_run_event(tx, run, Some(service), kind, &detail)?;
            Ok(())
        })
    }

    /// Keeps the attributes a service published.
    pub fn save_attrs(
        &self,
        run: &str,
        service: &str,
        attrs: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        self.with_tx(|tx| {
            for (k, v) in attrs {
                tx.execute(
                    "INSERT OR REPLACE INTO run_attrs (run, service, key, value) VALUES (?1, ?2, ?3, ?4)",
                    params![run, service, k, v],
                )?;
            }
            Ok(())
        })
    }

    pub fn run(&self, name: &str) -> Result<Option<RunRecord>> {
        Ok(self.query_runs(Some(name))?.pop())
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        self.query_runs(None)
    }

    fn query_runs(&self, name: Option<&str>) -> Result<Vec<RunRecord>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, plan, state, error, created, updated FROM runs \
                 WHERE ?1 IS NULL OR name = ?1 ORDER BY created, name",
            )?;
            let rows = stmt.query_map([name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.map(|row| {
                let (name, plan, state, error, created, updated) = row?;
                Ok(RunRecord {
                    name,
                    plan,
                    state: RunState::parse(&state)?,
                    error,
                    created,
                    updated,
                })
            })
            .collect()
        })
    }

    /// A run's services in boot order, with what they published.
    pub fn run_services(&self, run: &str) -> Result<Vec<ServiceRecord>> {
        let attrs = self.run_attrs(run)?;
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, level, state, spec, pid, pid_start, updated FROM run_services \
                 WHERE run = ?1 ORDER BY level, rowid",
            )?;
            let rows = stmt.query_map([run], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i32>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, f64>(6)?,
                ))
            })?;
            rows.map(|row| {
                let (name, level, state, spec, pid, pid_start, updated) = row?;
                Ok(ServiceRecord {
                    attrs: attrs.get(&name).cloned().unwrap_or_default(),
                    spec: serde_json::from_str(&spec)
                        .with_context(|| format!("the stored spec of service '{name}'"))?,
                    name,
                    level,
                    state,
                    pid,
                    pid_start: pid_start.map(|v| v as u64),
                    updated,
                })
            })
            .collect()
        })
    }

    /// The attributes a run's services published.
    pub fn run_attrs(&self, run: &str) -> Result<Attrs> {
        self.with_conn(|c| {
            let mut stmt =
                c.prepare_cached("SELECT service, key, value FROM run_attrs WHERE run = ?1")?;
            let mut attrs = Attrs::new();
            let rows = stmt.query_map([run], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
            })?;
            for row in rows {
                let (service, k, v) = row?;
                attrs.entry(service).or_default().insert(k, v);
            }
            Ok(attrs)
        })
    }

    /// The domains a run creates (whether they exist now or not).
    pub fn run_domains(&self, run: &str) -> Result<Vec<String>> {
        self.with_conn(|c| {
            let mut stmt =
                c.prepare_cached("SELECT domain FROM run_domains WHERE run = ?1 ORDER BY rowid")?;
            let rows = stmt.query_map([run], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// A run's events (its own and its domains'), oldest first, after `after`.
    pub fn run_events(&self, run: &str, after: i64, limit: u32) -> Result<Vec<Event>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, time, domain, instance, kind, detail, run FROM events \
                 WHERE seq > ?2 AND (run = ?1 OR domain IN \
                 (SELECT domain FROM run_domains WHERE run = ?1)) ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![run, after, limit], row_to_event)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Appends an event of a run, or of one of its services.
    pub fn event_of_run(
        &self,
        run: &str,
        service: Option<&str>,
        kind: &str,
        detail: Value,
    ) -> Result<i64> {
        self.with_tx(|tx| append_run_event(tx, run, service, kind, &detail))
    }
}
