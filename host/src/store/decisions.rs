//! The record of each decision: its event, the engine's memo, and the launches it makes.

use super::events::append_event;
use super::{NewInstance, Store};
use crate::model::{now, Health, InstanceState};
use anyhow::Result;
use rusqlite::params;
use serde_json::Value;

impl Store {
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
        self.with_domain_tx(domain, |tx| {
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
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO launches (launch_id, domain, vars) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![
                    l.launch_id,
                    domain,
                    serde_json::to_string(&l.vars)?
                ])?;
                let seq = append_event(
                    tx,
                    Some(domain),
                    Some(&l.id),
                    "launch-recorded",
                    &serde_json::json!({"launch_id": l.launch_id}),
                )?;
                tx.execute(
                    "INSERT INTO instances (id, domain, launch_id, state, state_ord, state_time, \
                     health, health_time, vars, changed_seq, created, handle, version, surge) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, '', ?8, ?6, \
                     (SELECT MAX(COALESCE(MAX(handle), 0), \
                       (SELECT handle_floor FROM domains WHERE name = ?2)) + 1 \
                      FROM instances WHERE domain = ?2), \
                     COALESCE((SELECT deployable_version FROM domains WHERE name = ?2), 1), ?9)",
                    params![
                        l.id,
                        domain,
                        l.launch_id,
                        InstanceState::Requesting.as_str(),
                        InstanceState::Requesting as i64,
                        t,
                        Health::Unknown.as_str(),
                        seq,
                        l.surge
                    ],
                )?;
            }
            Ok(())
        })
    }
}
