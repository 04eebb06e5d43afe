//! The store's mirror in a cluster: every domain write goes to etcd as a fenced transaction
//! before it commits locally.
//!
//! The store is called from any thread (async tasks and the decide threads alike), so the
//! mirror runs its etcd client on a thread and runtime of its own and waits for the answer,
//! at most a third of the lease's TTL. Its client is made on that runtime too, so that its
//! connections never wait on the daemon's runtime, whose threads may be the ones waiting.

use super::membership::{Claim, ClusterError};
use super::pool::Pool;
use super::record::Record;
use anyhow::Result;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The claims this node holds, by domain: what its writes are fenced on.
pub type Claims = Arc<Mutex<HashMap<String, Claim>>>;

/// Runs futures on a runtime of its own, for callers that must block.
struct Bridge {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl Bridge {
    fn start() -> Result<Bridge> {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("epu-etcd".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                })
            })?;
        Ok(Bridge { jobs })
    }

    /// Runs `fut` and waits for it, at most `timeout`.
    fn block<T: Send + 'static>(
        &self,
        timeout: Duration,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job = Box::pin(async move {
            let _ = tx.send(fut.await);
        });
        self.jobs.send(job).ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

/// Writes a node's domain rows to etcd, fenced on its claims.
pub struct EtcdMirror {
    bridge: Bridge,
    record: Record,
    claims: Claims,
    live: Arc<dyn Fn() -> bool + Send + Sync>,
    timeout: Duration,
}

impl EtcdMirror {
    /// A mirror with a client of its own on `endpoints`; `live` tells whether the node may
    /// act now.
    pub fn connect(
        endpoints: &[String],
        prefix: &str,
        ttl: Duration,
        claims: Claims,
        live: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Result<EtcdMirror> {
        let bridge = Bridge::start()?;
        let timeout = ttl / 3;
        let endpoints = endpoints.to_vec();
        let pool = bridge
            .block(ttl, async move { Pool::connect(&endpoints, ttl / 6).await })
            .ok_or(ClusterError::Timeout)??;
        Ok(EtcdMirror {
            bridge,
            record: Record::new(pool, prefix),
            claims,
            live,
            timeout,
        })
    }
}

impl EtcdMirror {
    /// The ids of every instance the record holds live, from any thread.
    pub fn live_instance_ids(&self) -> Result<std::collections::HashSet<String>> {
        let record = self.record.clone();
        let ids = self
            .bridge
            .block(
                self.timeout,
                async move { record.live_instance_ids().await },
            )
            .ok_or(ClusterError::Timeout)??;
        Ok(ids)
    }
}

impl crate::store::Mirror for Arc<EtcdMirror> {
    fn write(&self, domain: &str, put: &[(&str, &[u8])], delete: &[&str]) -> Result<()> {
        anyhow::ensure!(
            (self.live)(),
            "this node is not live in its cluster: it holds, and writes nothing for '{domain}'"
        );
        let claim = self.claims.lock().unwrap().get(domain).copied();
        let claim = claim.ok_or_else(|| ClusterError::Fenced(domain.to_string()))?;
        let record = self.record.clone();
        let domain = domain.to_string();
        let put: Vec<(String, Vec<u8>)> = put
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        let delete: Vec<String> = delete.iter().map(|k| k.to_string()).collect();
        let written = self.bridge.block(self.timeout, async move {
            let put: Vec<(&str, &[u8])> = put
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            let delete: Vec<&str> = delete.iter().map(String::as_str).collect();
            record.write(&domain, claim, &put, &delete).await
        });
        Ok(written.ok_or(ClusterError::Timeout)??)
    }
}
