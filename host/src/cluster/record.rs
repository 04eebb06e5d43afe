//! The cluster's state of record in etcd: each domain's rows and placement, and the engines'
//! bytes in chunks.
//!
//! Keys, under the cluster's prefix:
//! - `places/DOMAIN`: where the domain may run ([`Place`]); its presence is the domain's;
//! - `domains/DOMAIN/KEY`: the domain's rows (see [`crate::store::Rows`]);
//! - `engines/SHA/N`: the engine's bytes in chunks of [`CHUNK`], then `engines/SHA/meta`.

use super::membership::{Claim, ClusterError};
use super::pool::Pool;
use crate::model::Placement;
use crate::store::Rows;
use etcd_client::{Compare, CompareOp, GetOptions, GetResponse, Txn, TxnOp, TxnResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An engine's bytes go to etcd in chunks of this size (etcd refuses requests past 1.5 MiB).
pub const CHUNK: usize = 1 << 20;
/// The most operations in one etcd transaction (etcd's default `--max-txn-ops` is 128).
const TXN_OPS: usize = 120;
/// The most events the record keeps of one domain; older ones are deleted.
pub const EVENTS_PER_DOMAIN: usize = 1000;
/// How long the record keeps an event, at most: each is bound to a lease of this TTL, granted
/// afresh every hour, so an event goes between 23 and 24 hours after it was shipped.
pub const EVENT_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Where a domain may run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Place {
    /// The domain's driver.
    pub driver: String,
    /// For a `process` domain: the host its workers run on; only nodes there may own it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The nodes and labels the domain names.
    #[serde(default, skip_serializing_if = "Placement::is_empty")]
    pub placement: Placement,
}

/// What a node says of itself in `nodes/NODE`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub host: String,
    /// The node's TCP API, if it listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The node's API socket, which workers on its host may send heartbeats to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    pub pid: u32,
    /// The node's labels (`--label KEY=VALUE`), which placements name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Place {
    /// Whether node `name` may own the domain: on its host (if it has one), and admitted by
    /// its placement.
    pub fn admits(&self, name: &str, node: &NodeInfo) -> bool {
        self.host.as_deref().is_none_or(|h| h == node.host)
            && self.placement.admits(name, &node.labels)
    }
}

/// The record, through one etcd client.
#[derive(Clone)]
pub struct Record {
    pool: Pool,
    prefix: String,
}

impl Record {
    pub fn new(pool: Pool, prefix: &str) -> Record {
        Record {
            pool,
            prefix: prefix.to_string(),
        }
    }

    async fn get(&self, key: &str, prefix: bool) -> Result<GetResponse, ClusterError> {
        self.get_with(key, prefix.then(|| GetOptions::new().with_prefix()))
            .await
    }

    async fn get_with(
        &self,
        key: &str,
        options: Option<GetOptions>,
    ) -> Result<GetResponse, ClusterError> {
        self.pool
            .run(|mut c| {
                let (key, options) = (key.to_string(), options.clone());
                async move { c.get(key, options).await }
            })
            .await
    }

    /// Every key under `under` (relative to the prefix), each parsed by `parse` from the rest
    /// of its key and its value (empty when `keys_only`); keys it gives `None` for are left
    /// out.
    async fn list<T>(
        &self,
        under: &str,
        keys_only: bool,
        parse: impl Fn(&str, &[u8]) -> Option<T>,
    ) -> Result<Vec<T>, ClusterError> {
        let key = self.key(under);
        let mut options = GetOptions::new().with_prefix();
        if keys_only {
            options = options.with_keys_only();
        }
        let got = self.get_with(&key, Some(options)).await?;
        Ok(got
            .kvs()
            .iter()
            .filter_map(|kv| parse(kv.key_str().ok()?.strip_prefix(&key)?, kv.value()))
            .collect())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, ClusterError> {
        self.pool
            .run(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
    }

    async fn put(&self, key: String, value: Vec<u8>) -> Result<(), ClusterError> {
        self.pool
            .run(|mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move { c.put(key, value, None).await }
            })
            .await?;
        Ok(())
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn row_key(&self, domain: &str, row: &str) -> String {
        self.key(&format!("domains/{domain}/{row}"))
    }

    /// Creates a domain with its first rows; false if a domain of that name exists.
    pub async fn create(
        &self,
        domain: &str,
        place: &Place,
        rows: &Rows,
    ) -> Result<bool, ClusterError> {
        let place_key = self.key(&format!("places/{domain}"));
        let mut ops = vec![TxnOp::put(
            place_key.as_str(),
            serde_json::to_vec(place).expect("a place serializes"),
            None,
        )];
        ops.extend(
            rows.iter()
                .map(|(k, v)| TxnOp::put(self.row_key(domain, k), v.clone(), None)),
        );
        if ops.len() > TXN_OPS {
            return Err(ClusterError::TooLarge(domain.to_string()));
        }
        let txn = Txn::new()
            .when([Compare::create_revision(
                place_key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then(ops);
        Ok(self.txn(txn).await?.succeeded())
    }

    /// The token nodes forward requests to each other with: made by the first node that asks.
    pub async fn cluster_token(&self) -> Result<String, ClusterError> {
        let key = self.key("secret/api-token");
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), fresh, None)]);
        self.txn(txn).await?;
        let got = self.get(&key, false).await?;
        let kv = got.kvs().first().ok_or(ClusterError::Timeout)?;
        Ok(String::from_utf8_lossy(kv.value()).into_owned())
    }

    /// Every domain with its placement.
    pub async fn places(&self) -> Result<BTreeMap<String, Place>, ClusterError> {
        let places = self
            .list("places/", false, |name, v| {
                Some((name.to_string(), serde_json::from_slice(v).ok()?))
            })
            .await?;
        Ok(places.into_iter().collect())
    }

    /// A domain's rows.
    pub async fn load(&self, domain: &str) -> Result<Rows, ClusterError> {
        let rows = self
            .list(&format!("domains/{domain}/"), false, |row, v| {
                Some((row.to_string(), v.to_vec()))
            })
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Puts and deletes rows of `domain` while `claim` holds, in transactions of at most
    /// [`TXN_OPS`] operations, deletes last.
    pub async fn write(
        &self,
        domain: &str,
        claim: Claim,
        put: &[(&str, &[u8])],
        delete: &[&str],
    ) -> Result<(), ClusterError> {
        let ops: Vec<TxnOp> = put
            .iter()
            .map(|(k, v)| TxnOp::put(self.row_key(domain, k), v.to_vec(), None))
            .chain(
                delete
                    .iter()
                    .map(|k| TxnOp::delete(self.row_key(domain, k), None)),
            )
            .collect();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let batch: Vec<TxnOp> = ops.by_ref().take(TXN_OPS).collect();
            let txn = Txn::new()
                .when([claim.holds(&self.prefix, domain)])
                .and_then(batch);
            if !self.txn(txn).await?.succeeded() {
                return Err(ClusterError::Fenced(domain.to_string()));
            }
        }
        Ok(())
    }

    /// Deletes a removed domain's placement and rows while `claim` holds.
    pub async fn delete(&self, domain: &str, claim: Claim) -> Result<(), ClusterError> {
        let txn = Txn::new()
            .when([claim.holds(&self.prefix, domain)])
            .and_then([
                TxnOp::delete(self.key(&format!("places/{domain}")), None),
                TxnOp::delete(
                    self.row_key(domain, ""),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                ),
            ]);
        if self.txn(txn).await?.succeeded() {
            Ok(())
        } else {
            Err(ClusterError::Fenced(domain.to_string()))
        }
    }

    /// Stores an engine's bytes, unless they are there already.
    pub async fn put_engine(&self, sha: &str, bytes: &[u8]) -> Result<(), ClusterError> {
        let meta = self.key(&format!("engines/{sha}/meta"));
        if self.get(&meta, false).await?.count() > 0 {
            return Ok(());
        }
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let key = self.key(&format!("engines/{sha}/{i:06}"));
            self.put(key, chunk.to_vec()).await?;
        }
        let info = serde_json::json!({"chunks": chunks.len(), "size": bytes.len()});
        self.put(meta, info.to_string().into_bytes()).await?;
        Ok(())
    }

    /// An engine's bytes, checked against its sha256; `None` if the record lacks them.
    pub async fn get_engine(&self, sha: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        let meta = self.key(&format!("engines/{sha}/meta"));
        if self.get(&meta, false).await?.count() == 0 {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        for i in 0.. {
            let key = self.key(&format!("engines/{sha}/{i:06}"));
            let got = self.get(&key, false).await?;
            let Some(kv) = got.kvs().first() else { break };
            bytes.extend_from_slice(kv.value());
        }
        let digest = hex::encode(Sha256::digest(&bytes));
        Ok((digest == sha).then_some(bytes))
    }

    /// The ids of every instance the record holds live, of every domain.
    pub async fn live_instance_ids(
        &self,
    ) -> Result<std::collections::HashSet<String>, ClusterError> {
        let ids = self
            .list("domains/", true, |rest, _| {
                let (_, row) = rest.split_once('/')?;
                Some(row.strip_prefix("inst/")?.to_string())
            })
            .await?;
        Ok(ids.into_iter().collect())
    }

    /// A lease for the events shipped in the coming hour.
    pub async fn event_lease(&self) -> Result<i64, ClusterError> {
        let ttl = EVENT_RETENTION.as_secs() as i64;
        let granted = self
            .pool
            .run(|mut c| async move { c.lease_grant(ttl, None).await })
            .await?;
        Ok(granted.id())
    }

    /// Adds events to the record (unfenced: they are history), each `(domain, key, JSON)`
    /// with a key that sorts by time, bound to `lease`; then trims each domain's to
    /// [`EVENTS_PER_DOMAIN`].
    pub async fn put_events(
        &self,
        lease: i64,
        events: &[(String, String, Vec<u8>)],
    ) -> Result<(), ClusterError> {
        for batch in events.chunks(TXN_OPS) {
            let ops: Vec<TxnOp> = batch
                .iter()
                .map(|(d, k, v)| {
                    let key = self.key(&format!("events/{d}/{k}"));
                    let options = etcd_client::PutOptions::new().with_lease(lease);
                    TxnOp::put(key, v.clone(), Some(options))
                })
                .collect();
            self.txn(Txn::new().and_then(ops)).await?;
        }
        let domains: std::collections::BTreeSet<&String> =
            events.iter().map(|(d, _, _)| d).collect();
        for d in domains {
            self.trim_events(d).await?;
        }
        Ok(())
    }

    async fn trim_events(&self, domain: &str) -> Result<(), ClusterError> {
        let under = format!("events/{domain}/");
        let mut keys = self.list(&under, true, |k, _| Some(k.to_string())).await?;
        if keys.len() <= EVENTS_PER_DOMAIN {
            return Ok(());
        }
        keys.sort();
        let excess = keys.len() - EVENTS_PER_DOMAIN;
        let ops: Vec<TxnOp> = keys[..excess]
            .iter()
            .map(|k| TxnOp::delete(self.key(&format!("events/{domain}/{k}")), None))
            .collect();
        for batch in ops.chunks(TXN_OPS) {
            self.txn(Txn::new().and_then(batch.to_vec())).await?;
        }
        Ok(())
    }

    /// A domain's events in the record, oldest first.
    pub async fn events(&self, domain: &str) -> Result<Vec<serde_json::Value>, ClusterError> {
        let mut events = self
            .list(&format!("events/{domain}/"), false, |k, v| {
                Some((k.to_string(), serde_json::from_slice(v).ok()?))
            })
            .await?;
        events.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(events.into_iter().map(|(_, v)| v).collect())
    }

    /// The live nodes and what each says of itself.
    pub async fn nodes(&self) -> Result<BTreeMap<String, NodeInfo>, ClusterError> {
        let nodes = self
            .list("nodes/", false, |name, v| {
                Some((
                    name.to_string(),
                    serde_json::from_slice(v).unwrap_or_default(),
                ))
            })
            .await?;
        Ok(nodes.into_iter().collect())
    }
}
