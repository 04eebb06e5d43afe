//! Versions of a domain's deployable, and rolling refreshes: each update of the deployable is
//! a new version; a refresh replaces the instances of other versions by ones of the current.

use super::events::append_event;
use super::Store;
use crate::model::{now, Deployable, InstanceState, Refresh};
use anyhow::{bail, Context, Result};
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::json;

impl Store {
    /// Stores `deployable` as the domain's next version, which new instances run from now on.
    /// Returns the version.
    pub fn update_deployable(&self, domain: &str, deployable: &Deployable) -> Result<i64> {
        self.with_domain_tx(domain, |tx| {
            // Past every stored version, and past the current one should its row be missing
            // (a record written before versions were kept).
            let version: i64 = tx.query_row(
                "SELECT MAX(deployable_version, COALESCE((SELECT MAX(version) FROM deployables \
                 WHERE domain = ?1), 0)) + 1 FROM domains WHERE name = ?1",
                [domain],
                |r| r.get(0),
            )?;
            let text = serde_json::to_string(deployable)?;
            tx.execute(
                "INSERT INTO deployables (domain, version, deployable, time) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![domain, version, text, now()],
            )?;
            set_current(tx, domain, version, &text)?;
            let detail = json!({ "version": version, "deployable": deployable });
            append_event(tx, Some(domain), None, "deployable-updated", &detail)?;
            Ok(version)
        })
    }

    /// Starts a refresh of `domain` to its current deployable, or, with `rollback`, makes the
    /// version before it current again and refreshes to that. A running refresh is replaced
    /// (a rollback goes back to where it started). Returns the refresh.
    pub fn start_refresh(
        &self,
        domain: &str,
        batch: u32,
        min_healthy_percent: u32,
        rollback: bool,
    ) -> Result<Refresh> {
        self.with_domain_tx(domain, |tx| {
            let (current, running): (i64, Option<String>) = tx.query_row(
                "SELECT deployable_version, refresh FROM domains WHERE name = ?1",
                [domain],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let running: Option<Refresh> = running
                .map(|t| serde_json::from_str(&t))
                .transpose()
                .context("the stored refresh")?;
            let to = if rollback {
                let back = match &running {
                    Some(r) if r.from_version != current => Some(r.from_version),
                    _ => previous_version(tx, domain, current)?,
                };
                let Some(back) = back else {
                    bail!(
                        "domain '{domain}' has no version to roll back to: its deployable is at \
                         version {current}, the first"
                    );
                };
                let text: String = tx.query_row(
                    "SELECT deployable FROM deployables WHERE domain = ?1 AND version = ?2",
                    params![domain, back],
                    |r| r.get(0),
                )?;
                set_current(tx, domain, back, &text)?;
                back
            } else {
                current
            };
            let from_version = match &running {
                Some(r) if !rollback => r.from_version,
                _ => current,
            };
            let refresh = Refresh {
                from_version,
                to_version: to,
                batch,
                min_healthy_percent,
                started: now(),
                rollback,
                failed: None,
            };
            let old: i64 = tx.query_row(
                "SELECT COUNT(*) FROM instances WHERE domain = ?1 AND version != ?2 \
                 AND state_ord < ?3",
                params![domain, to, InstanceState::Terminating as i64],
                |r| r.get(0),
            )?;
            write_refresh(tx, domain, Some(&refresh))?;
            let mut detail = serde_json::to_value(&refresh)?;
            detail["to_replace"] = old.into();
            append_event(tx, Some(domain), None, "refresh-started", &detail)?;
            Ok(refresh)
        })
    }

    /// Ends a refresh: `Ok` when every instance runs the current version, or with why it
    /// stopped (it then stays, marked failed, until a new refresh or a rollback).
    pub fn end_refresh(
        &self,
        domain: &str,
        refresh: &Refresh,
        outcome: Result<(), String>,
    ) -> Result<()> {
        self.with_domain_tx(domain, |tx| {
            match outcome {
                Ok(()) => {
                    write_refresh(tx, domain, None)?;
                    let detail = json!({ "to_version": refresh.to_version });
                    append_event(tx, Some(domain), None, "refresh-done", &detail)?;
                }
                Err(why) => {
                    let failed = Refresh {
                        failed: Some(why.clone()),
                        ..refresh.clone()
                    };
                    write_refresh(tx, domain, Some(&failed))?;
                    let detail = json!({ "to_version": refresh.to_version, "why": why });
                    append_event(tx, Some(domain), None, "refresh-failed", &detail)?;
                }
            }
            Ok(())
        })
    }

    /// Puts a refresh's replacement in service, in place of `retired` (which the caller then
    /// destroys or drains), or of nothing when no instance is left to replace.
    pub fn put_in_service(&self, id: &str, retired: Option<&str>) -> Result<()> {
        self.with_domain_write(|tx| {
            let domain: Option<String> = tx
                .query_row(
                    "SELECT domain FROM instances WHERE id = ?1 AND surge = 1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(domain) = domain else {
                return Ok(((), None));
            };
            let detail = json!({ "retires": retired });
            let seq = append_event(tx, Some(&domain), Some(id), "refresh-replaced", &detail)?;
            tx.execute(
                "UPDATE instances SET surge = 0, changed_seq = ?2 WHERE id = ?1",
                params![id, seq],
            )?;
            Ok(((), Some(domain)))
        })
    }

    /// How many of a refresh's replacements ended without going into service since `since`.
    pub fn failed_replacements(&self, domain: &str, since: f64) -> Result<u32> {
        self.with_conn(|c| {
            Ok(c.prepare_cached(
                "SELECT COUNT(*) FROM instances WHERE domain = ?1 AND surge = 1 \
                 AND state_ord >= ?2 AND created >= ?3",
            )?
            .query_row(
                params![domain, InstanceState::Terminated as i64, since],
                |r| r.get(0),
            )?)
        })
    }
}

/// The newest version of `domain`'s deployable before `version`.
fn previous_version(tx: &Transaction, domain: &str, version: i64) -> Result<Option<i64>> {
    Ok(tx.query_row(
        "SELECT MAX(version) FROM deployables WHERE domain = ?1 AND version < ?2",
        params![domain, version],
        |r| r.get(0),
    )?)
}

/// Makes `version` (its deployable as JSON `text`) the one new instances run.
fn set_current(tx: &Transaction, domain: &str, version: i64, text: &str) -> Result<()> {
    tx.execute(
        "UPDATE domains SET deployable = ?2, deployable_version = ?3 WHERE name = ?1",
        params![domain, text, version],
    )?;
    Ok(())
}

fn write_refresh(tx: &Transaction, domain: &str, refresh: Option<&Refresh>) -> Result<()> {
    let text = refresh.map(serde_json::to_string).transpose()?;
    tx.execute(
        "UPDATE domains SET refresh = ?2 WHERE name = ?1",
        params![domain, text],
    )?;
    Ok(())
}
