//! The append-only event log.

use super::{Event, Store};
use crate::model::now;
use anyhow::Result;
use rusqlite::{params, Transaction};
use serde_json::Value;
use tokio::sync::watch;

impl Store {
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

    /// Deletes the oldest events a domain's engine caused (log lines, faults, the count of
    /// unrecorded faults, decisions that launched and destroyed nothing, and a dry run's
    /// decisions) beyond the newest
    /// `keep`. Returns how many were deleted.
    pub fn prune_engine_events(&self, domain: &str, keep: usize) -> Result<usize> {
        self.with_tx(|tx| {
            Ok(tx.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE domain = ?1 AND \
                 (kind IN ('engine-log', 'engine-fault', 'engine-faults-unrecorded') OR \
                  (kind = 'decision' AND json_array_length(detail, '$.launch') = 0 \
                   AND json_array_length(detail, '$.destroy') = 0) OR \
                  (kind = 'decision' AND json_extract(detail, '$.dry_run') = 1)) \
                 ORDER BY seq DESC LIMIT -1 OFFSET ?2)",
                params![domain, keep as i64],
            )?)
        })
    }

    /// The launches and destroys a domain's decisions carried out after `since` (a time), as
    /// (time, launches, destroys), newest first; at most the last 100,000 decisions.
    pub fn carried_out_since(&self, domain: &str, since: f64) -> Result<Vec<(f64, u32, u32)>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT time, COALESCE(json_array_length(detail, '$.launch'), 0), \
                 COALESCE(json_array_length(detail, '$.destroy'), 0) FROM events \
                 WHERE domain = ?1 AND kind = 'decision' AND time > ?2 \
                 ORDER BY seq DESC LIMIT 100000",
            )?;
            let rows = stmt.query_map(params![domain, since], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// A receiver that sees the newest event sequence number change.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.last_seq.subscribe()
    }

    /// Events after `after`, oldest first, optionally of one domain.
    pub fn events_after(&self, after: i64, domain: Option<&str>, limit: u32) -> Result<Vec<Event>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, time, domain, instance, kind, detail, run FROM events \
                 WHERE seq > ?1 AND (?2 IS NULL OR domain = ?2) ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![after, domain, limit], row_to_event)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

/// An event from a row of `seq, time, domain, instance, kind, detail, run`.
pub(super) fn row_to_event(r: &rusqlite::Row) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: r.get(0)?,
        time: r.get(1)?,
        domain: r.get(2)?,
        instance: r.get(3)?,
        kind: r.get(4)?,
        detail: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or(Value::Null),
        run: r.get(6)?,
    })
}

/// Appends an event of a run (and one of its services, as `instance`).
pub(super) fn append_run_event(
    tx: &Transaction,
    run: &str,
    service: Option<&str>,
    kind: &str,
    detail: &Value,
) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO events (time, run, instance, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now(), run, service, kind, detail.to_string()])?;
    Ok(tx.last_insert_rowid())
}

pub(super) fn append_event(
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
