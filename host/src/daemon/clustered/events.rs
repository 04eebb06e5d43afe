//! The event log in the cluster's record: each node ships its domains' events to etcd every
//! second, and any node reads a domain's history back from there.

use super::super::{Daemon, OpError};
use super::Node;
use crate::store::Store;
use serde_json::Value;
use std::sync::Arc;

impl Daemon {
    /// A domain's events as the cluster's record keeps them, from every node that owned it.
    pub async fn cluster_events(&self, name: &str) -> Result<Vec<Value>, OpError> {
        let Some(node) = self.node() else {
            return Err(OpError::Invalid(
                "this daemon is not in a cluster (start it with --cluster)".into(),
            ));
        };
        // A removed domain's events stay until they age out.
        let events = node.record.events(name).await?;
        if events.is_empty() && !node.record.places().await?.contains_key(name) {
            return Err(OpError::NotFound(format!("unknown domain '{name}'")));
        }
        Ok(events)
    }
}

/// How often a node ships its new domain events to the record.
const SHIP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How often a node takes a fresh lease for the events it ships.
const EVENT_LEASE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Ships the node's domain events to the record every second, so that a domain's history
/// outlives the node that made it. Events from before the node joined stay local.
pub(super) async fn ship(store: Arc<Store>, node: Arc<Node>) {
    let mut after = *store.subscribe().borrow();
    let mut lease: Option<(i64, std::time::Instant)> = None;
    loop {
        tokio::time::sleep(SHIP_EVERY).await;
        if !node.is_live() {
            continue;
        }
        let shipped = async {
            if lease.is_none_or(|(_, at)| at.elapsed() > EVENT_LEASE_EVERY) {
                lease = Some((node.record.event_lease().await?, std::time::Instant::now()));
            }
            let events = store.events_after(after, None, 1000)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok::<_, anyhow::Error>(());
            };
            let batch: Vec<(String, String, Vec<u8>)> = events
                .into_iter()
                .filter_map(|e| {
                    let d = e.domain.clone()?;
                    let key = format!(
                        "{:016}-{}-{:012}",
                        (e.time * 1e6) as u64,
                        node.name(),
                        e.seq
                    );
                    let mut v = serde_json::to_value(&e).ok()?;
                    v["node"] = node.name().into();
                    Some((d, key, serde_json::to_vec(&v).ok()?))
                })
                .collect();
            let (id, _) = lease.expect("granted above");
            node.record.put_events(id, &batch).await?;
            after = last;
            Ok(())
        };
        if let Err(e) = shipped.await {
            tracing::warn!("shipping events to the cluster's record: {e:#}");
        }
    }
}
