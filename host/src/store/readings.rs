//! Sensor readings over time, for graphs: a reading is kept when its value changes, or at
//! least every [`KEEP_EVERY`] seconds, for [`KEEP_FOR`] seconds.

use super::Store;
use anyhow::Result;
use rusqlite::params;

/// Seconds between kept readings of a value that does not change.
pub const KEEP_EVERY: f64 = 10.0;
/// Seconds a reading is kept.
pub const KEEP_FOR: f64 = 7.0 * 24.0 * 3600.0;

impl Store {
    /// Keeps a reading of `domain`'s sensor `name`.
    pub fn save_reading(&self, domain: &str, name: &str, value: f64, time: f64) -> Result<()> {
        self.with_tx(|tx| {
            tx.prepare_cached(
                "INSERT INTO readings (domain, name, time, value) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![domain, name, time, value])?;
            tx.prepare_cached("DELETE FROM readings WHERE domain = ?1 AND time < ?2")?
                .execute(params![domain, time - KEEP_FOR])?;
            Ok(())
        })
    }

    /// The kept readings of a domain, oldest first, as `(sensor, time, value)`.
    pub fn readings_of(&self, domain: &str) -> Result<Vec<(String, f64, f64)>> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, time, value FROM readings WHERE domain = ?1 ORDER BY time",
            )?;
            let rows = stmt.query_map([domain], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
