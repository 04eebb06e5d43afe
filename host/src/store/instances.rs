//! Instances: their forward-only states, health and heartbeats.

use super::events::append_event;
use super::{InstanceRecord, Store};
use crate::model::{now, Health, InstanceState};
use anyhow::Result;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

/// The columns of an [`InstanceRecord`]; its vars come from its launch.
pub(super) const INSTANCE_COLUMNS: &str = "id, domain, launch_id, state, state_time, health, \
     health_time, last_heartbeat, \
     COALESCE((SELECT vars FROM launches WHERE launches.launch_id = instances.launch_id), '[]'), \
     pid, pid_start, error, changed_seq, created, handle, cloud_id, protected, \
     drain_until, drained, version, surge";

impl Store {
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
        self.with_domain_write(|tx| {
            let Some(current) = instance_in_tx(tx, id)? else {
                return Ok((None, None));
            };
            let domain = Some(current.domain.clone());
            if current.state >= state {
                // A worker can report in before its spawn is recorded. Its pid is kept all
                // the same, or the process could be neither watched nor stopped.
                if let (Some(pid), None) = (update.pid, current.pid) {
                    tx.execute(
                        "UPDATE instances SET pid = ?2, pid_start = ?3 WHERE id = ?1",
                        params![id, pid, update.pid_start.map(|v| v as i64)],
                    )?;
                }
                return Ok((None, domain));
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
            Ok((instance_in_tx(tx, id)?, domain))
        })
    }

    /// Sets an instance's health. Returns the updated record if it changed.
    pub fn set_health(&self, id: &str, health: Health) -> Result<Option<InstanceRecord>> {
        self.with_domain_write(|tx| {
            let Some(current) = instance_in_tx(tx, id)? else {
                return Ok((None, None));
            };
            if current.health == health {
                return Ok((None, None));
            }
            let detail = serde_json::json!({"from": current.health, "to": health});
            let seq = append_event(tx, Some(&current.domain), Some(id), "health", &detail)?;
            tx.execute(
                "UPDATE instances SET health = ?2, health_time = ?3, changed_seq = ?4 WHERE id = ?1",
                params![id, health.as_str(), now(), seq],
            )?;
            Ok((instance_in_tx(tx, id)?, Some(current.domain)))
        })
    }

    /// Protects an instance from destroys while it is healthy, or lifts that; `by` says who
    /// (an operator, or the worker itself). Returns the updated record if it changed.
    pub fn set_protected(
        &self,
        id: &str,
        protected: bool,
        by: &str,
    ) -> Result<Option<InstanceRecord>> {
        let kind = if protected {
            "protected"
        } else {
            "unprotected"
        };
        let change = |i: &InstanceRecord| i.protected != protected;
        let detail = serde_json::json!({ "by": by });
        self.change_instance(id, change, kind, &detail, "protected = ?2", protected)
    }

    /// Starts an instance's drain, to end by `until` at the latest. Returns the updated
    /// record, or None when the instance is unknown, draining already, or past running.
    pub fn start_drain(&self, id: &str, until: f64) -> Result<Option<InstanceRecord>> {
        let change = |i: &InstanceRecord| !i.draining() && i.state < InstanceState::Terminating;
        let detail = serde_json::json!({ "until": until });
        let set = "drain_until = ?2, drained = 0";
        self.change_instance(id, change, "draining", &detail, set, until)
    }

    /// Returns a draining instance to service (a launch took it back). Returns the updated
    /// record, or None when it is not draining.
    pub fn cancel_drain(&self, id: &str, why: &str) -> Result<Option<InstanceRecord>> {
        let change = |i: &InstanceRecord| i.draining();
        let detail = serde_json::json!({ "why": why });
        let set = "drain_until = ?2, drained = 0";
        self.change_instance(id, change, "drain-cancelled", &detail, set, None::<f64>)
    }

    /// Records that a draining worker is done. Returns the updated record, or None when it
    /// is not draining or said so before.
    pub fn set_drained(&self, id: &str) -> Result<Option<InstanceRecord>> {
        let change = |i: &InstanceRecord| i.draining() && !i.drained;
        let detail = serde_json::json!({ "by": "worker" });
        self.change_instance(id, change, "drained", &detail, "drained = ?2", true)
    }

    /// Sets one column of an instance (`set`, with `value` as `?2`) when `change` says the
    /// instance needs it, with an event of `kind`. Returns the updated record if it changed.
    fn change_instance(
        &self,
        id: &str,
        change: impl FnOnce(&InstanceRecord) -> bool,
        kind: &str,
        detail: &serde_json::Value,
        set: &str,
        value: impl rusqlite::ToSql,
    ) -> Result<Option<InstanceRecord>> {
        self.with_domain_write(|tx| {
            let Some(current) = instance_in_tx(tx, id)? else {
                return Ok((None, None));
            };
            if !change(&current) {
                return Ok((None, None));
            }
            let seq = append_event(tx, Some(&current.domain), Some(id), kind, detail)?;
            tx.execute(
                &format!("UPDATE instances SET {set}, changed_seq = ?3 WHERE id = ?1"),
                params![id, value, seq],
            )?;
            Ok((instance_in_tx(tx, id)?, Some(current.domain)))
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

impl Store {
    /// Records the cloud's id of an instance (the `ec2` driver's instance id), once known.
    pub fn set_cloud_id(&self, id: &str, cloud_id: &str) -> Result<()> {
        self.with_domain_write(|tx| {
            tx.execute(
                "UPDATE instances SET cloud_id = ?2 WHERE id = ?1 AND cloud_id IS NULL",
                params![id, cloud_id],
            )?;
            let domain = tx
                .query_row("SELECT domain FROM instances WHERE id = ?1", [id], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?;
            Ok(((), domain))
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

pub(super) fn query_instances_in(
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
        handle: r.get::<_, i64>(14)? as u64,
        cloud_id: r.get(15)?,
        protected: r.get(16)?,
        drain_until: r.get(17)?,
        drained: r.get(18)?,
        version: r.get(19)?,
        surge: r.get(20)?,
    })
}
