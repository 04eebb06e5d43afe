//! Shadow engines as stored: which run beside each domain's live engine, how their decisions
//! compared, the counts both would have kept, and the decision pairs that differed.

use super::events::append_event;
use super::Store;
use crate::model::now;
use crate::model::shadow::{ShadowPoint, ShadowRecord, ShadowStats, MAX_SHADOWS_PER_DOMAIN};
use anyhow::{bail, Result};
use rusqlite::{params, Connection};
use serde_json::{json, Map, Value};

/// The newest points kept per shadow.
pub const MAX_SHADOW_POINTS: i64 = 5000;
/// The newest differing decision pairs kept per shadow.
pub const MAX_SHADOW_PAIRS: i64 = 500;

/// What one flush of a shadow writes: its stats and memo, new points, new differing pairs.
pub struct ShadowFlush<'a> {
    pub stats: &'a ShadowStats,
    pub memo: &'a [u8],
    pub points: &'a [ShadowPoint],
    /// (time, the live decision, the shadow's), as JSON.
    pub pairs: &'a [(f64, Value, Value)],
}

impl Store {
    /// Starts a shadow of `domain` running engine `sha` (named `name`) with `config`;
    /// returns its id. At most [`MAX_SHADOWS_PER_DOMAIN`] run at once.
    pub fn add_shadow(
        &self,
        domain: &str,
        name: &str,
        sha: &str,
        config: &Map<String, Value>,
    ) -> Result<i64> {
        self.with_tx(|tx| {
            let running: i64 = tx.query_row(
                "SELECT COUNT(*) FROM shadows WHERE domain = ?1 AND stopped IS NULL",
                [domain],
                |r| r.get(0),
            )?;
            if running as usize >= MAX_SHADOWS_PER_DOMAIN {
                bail!(
                    "'{domain}' runs {running} shadows already, the most a domain may; stop one \
                     with `epu engine shadow {domain} --stop ID`"
                );
            }
            tx.execute(
                "INSERT INTO shadows (domain, engine_name, engine_sha, config, started) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    domain,
                    name,
                    sha,
                    Value::Object(config.clone()).to_string(),
                    now()
                ],
            )?;
            let id = tx.last_insert_rowid();
            let detail = json!({"shadow": id, "engine": name, "sha": sha, "config": config});
            append_event(tx, Some(domain), None, "shadow-started", &detail)?;
            Ok(id)
        })
    }

    /// Stops a shadow of `domain`; false if it had none of that id running.
    pub fn stop_shadow(&self, domain: &str, id: i64) -> Result<bool> {
        self.with_tx(|tx| {
            let n = tx.execute(
                "UPDATE shadows SET stopped = ?3 WHERE domain = ?1 AND id = ?2 AND stopped IS NULL",
                params![domain, id, now()],
            )?;
            if n > 0 {
                append_event(
                    tx,
                    Some(domain),
                    None,
                    "shadow-stopped",
                    &json!({"shadow": id}),
                )?;
            }
            Ok(n > 0)
        })
    }

    /// The shadows that run beside `domain`'s engine, oldest first.
    pub fn shadows(&self, domain: &str) -> Result<Vec<ShadowRecord>> {
        self.with_conn(|c| shadows_in(c, domain, true))
    }

    /// Every shadow `domain` has had, stopped ones too, oldest first.
    pub fn all_shadows(&self, domain: &str) -> Result<Vec<ShadowRecord>> {
        self.with_conn(|c| shadows_in(c, domain, false))
    }

    /// Writes what a shadow learnt since its last flush, and trims its points and pairs to
    /// the newest [`MAX_SHADOW_POINTS`] and [`MAX_SHADOW_PAIRS`].
    pub fn flush_shadow(&self, id: i64, f: &ShadowFlush) -> Result<()> {
        self.with_tx(|tx| {
            tx.execute(
                "UPDATE shadows SET stats = ?2, memo = ?3 WHERE id = ?1",
                params![id, serde_json::to_string(f.stats)?, f.memo],
            )?;
            let mut point = tx.prepare_cached(
                "INSERT INTO shadow_points (shadow, time, live, candidate) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (t, live, candidate) in f.points {
                point.execute(params![id, t, live, candidate])?;
            }
            let mut pair = tx.prepare_cached(
                "INSERT INTO shadow_pairs (shadow, time, live, candidate) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (t, live, candidate) in f.pairs {
                pair.execute(params![id, t, live.to_string(), candidate.to_string()])?;
            }
            for (table, keep) in [
                ("shadow_points", MAX_SHADOW_POINTS),
                ("shadow_pairs", MAX_SHADOW_PAIRS),
            ] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE shadow = ?1 AND time < (SELECT time FROM \
                         {table} WHERE shadow = ?1 ORDER BY time DESC LIMIT 1 OFFSET ?2)"
                    ),
                    params![id, keep - 1],
                )?;
            }
            Ok(())
        })
    }

    /// A shadow's points, oldest first.
    pub fn shadow_points(&self, id: i64) -> Result<Vec<ShadowPoint>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT time, live, candidate FROM shadow_points WHERE shadow = ?1 ORDER BY time",
            )?;
            let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// A shadow's newest differing decision pairs, newest first, at most `limit`.
    pub fn shadow_pairs(&self, id: i64, limit: u32) -> Result<Vec<(f64, Value, Value)>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT time, live, candidate FROM shadow_pairs WHERE shadow = ?1 \
                 ORDER BY time DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![id, limit], |r| {
                let (t, l, s): (f64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
                Ok((t, l, s))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (t, l, s) = row?;
                out.push((t, serde_json::from_str(&l)?, serde_json::from_str(&s)?));
            }
            Ok(out)
        })
    }
}

fn shadows_in(c: &Connection, domain: &str, running: bool) -> Result<Vec<ShadowRecord>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, engine_name, engine_sha, config, started, stats, memo FROM shadows \
         WHERE domain = ?1 AND (stopped IS NULL OR ?2 = 0) ORDER BY id",
    )?;
    let rows = stmt.query_map(params![domain, running], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, f64>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Vec<u8>>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, engine_name, engine_sha, config, started, stats, memo) = row?;
        out.push(ShadowRecord {
            id,
            domain: domain.to_string(),
            engine_name,
            engine_sha,
            config: serde_json::from_str(&config)?,
            started,
            stats: serde_json::from_str(&stats).unwrap_or_default(),
            memo,
        });
    }
    Ok(out)
}
