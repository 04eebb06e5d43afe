//! One node's membership of the cluster: its lease, kept alive in the background, its claims
//! on domains, and fenced writes.

use super::pool::Pool;
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a cluster operation failed: the seam the daemon matches on.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// etcd could not be reached or refused the request.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// Another live node already has this name.
    #[error("node name '{0}' is taken by a live node")]
    NameTaken(String),
    /// The write was fenced off: the domain is no longer this node's.
    #[error("domain '{0}' is no longer owned by this node")]
    Fenced(String),
    /// A domain's first rows do not fit in one etcd transaction.
    #[error("domain '{0}' has too many rows to create at once")]
    TooLarge(String),
    /// etcd did not answer in time.
    #[error("etcd did not answer in time")]
    Timeout,
}

/// A node's claim on a domain: the create revision of its ownership key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim(pub i64);

impl Claim {
    /// The fence of every write for `domain` under `prefix`: its ownership key still has
    /// this claim's create revision.
    pub fn holds(self, prefix: &str, domain: &str) -> Compare {
        Compare::create_revision(owner_key(prefix, domain), CompareOp::Equal, self.0)
    }
}

/// The ownership key of `domain` under `prefix`.
pub fn owner_key(prefix: &str, domain: &str) -> String {
    format!("{prefix}owners/{domain}")
}

/// The lease stays ours until `ttl` after a keep-alive was `sent`; the node stops acting a
/// third of the TTL earlier, so that a clock slower than etcd's never lets it act late.
fn extend(live_until: &AtomicU64, epoch: Instant, sent: Instant, ttl: Duration) {
    let until = sent + ttl * 2 / 3 - epoch;
    live_until.fetch_max(until.as_micros() as u64, Ordering::AcqRel);
}

/// A node of the cluster.
pub struct Membership {
    pool: Pool,
    name: String,
    prefix: String,
    lease: i64,
    ttl: Duration,
    /// When the node stops acting, in microseconds since `epoch`, unless a keep-alive moves it.
    live_until: Arc<AtomicU64>,
    epoch: Instant,
    /// The keep-alive task, ended when the membership drops.
    keeper: Option<tokio::task::AbortHandle>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
    }
}

impl Membership {
    /// Joins the cluster at `endpoints` as `name`, with a lease of `ttl`. The node's key holds
    /// `info` (its host and labels, as JSON).
    pub async fn join(
        endpoints: &[String],
        prefix: &str,
        name: &str,
        ttl: Duration,
        info: &str,
    ) -> Result<Membership, ClusterError> {
        let pool = Pool::connect(endpoints, ttl / 6).await?;
        let epoch = Instant::now();
        let seconds = ttl.as_secs().max(1) as i64;
        let granted = pool
            .run(|mut c| async move { c.lease_grant(seconds, None).await })
            .await?;
        let lease = granted.id();
        let key = format!("{prefix}nodes/{name}");
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                info,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let answer = pool
            .run(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if !answer.succeeded() {
            let _ = pool
                .run(|mut c| async move { c.lease_revoke(lease).await })
                .await;
            return Err(ClusterError::NameTaken(name.to_string()));
        }
        let mut me = Membership {
            pool,
            name: name.to_string(),
            prefix: prefix.to_string(),
            lease,
            ttl,
            live_until: Arc::new(AtomicU64::new(0)),
            epoch,
            keeper: None,
        };
        extend(&me.live_until, epoch, epoch, ttl);
        me.keeper = Some(me.keep_alive());
        Ok(me)
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Clients of the cluster's etcd members.
    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// Whether the lease ran out: the node holds until it joins again.
    pub fn expired(&self) -> bool {
        self.keeper.as_ref().is_none_or(|k| k.is_finished())
    }

    /// Whether the node may act on its domains now: its lease is surely still alive.
    pub fn is_live(&self) -> bool {
        let now = (Instant::now() - self.epoch).as_micros() as u64;
        now < self.live_until.load(Ordering::Acquire)
    }

    /// Keeps the lease alive a few times per TTL for as long as the process runs.
    fn keep_alive(&self) -> tokio::task::AbortHandle {
        let pool = self.pool.clone();
        let (lease, ttl, epoch) = (self.lease, self.ttl, self.epoch);
        let live_until = self.live_until.clone();
        let task = tokio::spawn(async move {
            // One keep-alive stream, opened again (on the next member) only after it failed.
            let mut open = None;
            loop {
                let sent = Instant::now();
                let answered = async {
                    if open.is_none() {
                        let (i, mut client) = pool.client();
                        open = Some((i, client.lease_keep_alive(lease).await?));
                    }
                    let (_, (keeper, stream)) = open.as_mut().expect("opened above");
                    keeper.keep_alive().await?;
                    Ok::<_, etcd_client::Error>(stream.message().await?.map(|r| r.ttl()))
                };
                let answer = tokio::time::timeout(ttl / 3, answered).await;
                if !matches!(answer, Ok(Ok(Some(_)))) {
                    if let Some((i, _)) = open.take() {
                        pool.failed(i);
                    }
                }
                match answer {
                    Ok(Ok(Some(left))) if left > 0 => extend(&live_until, epoch, sent, ttl),
                    Ok(Ok(_)) => {
                        tracing::error!("the cluster lease ran out: this node holds");
                        return;
                    }
                    Ok(Err(e)) => tracing::warn!("keeping the cluster lease alive: {e}"),
                    Err(_) => tracing::warn!("keeping the cluster lease alive: no answer"),
                }
                tokio::time::sleep_until((sent + ttl / 6).into()).await;
            }
        });
        task.abort_handle()
    }

    fn owner_key(&self, domain: &str) -> String {
        owner_key(&self.prefix, domain)
    }

    /// Claims an unowned domain; `None` if another node owns it.
    pub async fn claim(&self, domain: &str) -> Result<Option<Claim>, ClusterError> {
        let key = self.owner_key(domain);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                self.name.as_str(),
                Some(PutOptions::new().with_lease(self.lease)),
            )]);
        let answer = self.txn(txn).await?;
        let revision = answer.header().map(|h| h.revision()).unwrap_or_default();
        Ok(answer.succeeded().then_some(Claim(revision)))
    }

    /// Gives a domain up, if it is still this claim's.
    pub async fn release(&self, domain: &str, claim: Claim) -> Result<(), ClusterError> {
        let txn = Txn::new()
            .when([claim.holds(&self.prefix, domain)])
            .and_then([TxnOp::delete(self.owner_key(domain), None)]);
        self.txn(txn).await?;
        Ok(())
    }

    /// Puts `key = value` only while `claim` on `domain` holds (the daemon's own writes go
    /// through [`Record::write`](super::record::Record::write), with the same fence).
    #[cfg(test)]
    pub async fn fenced_put(
        &self,
        domain: &str,
        claim: Claim,
        key: &str,
        value: &[u8],
    ) -> Result<(), ClusterError> {
        let txn = Txn::new()
            .when([claim.holds(&self.prefix, domain)])
            .and_then([TxnOp::put(format!("{}{key}", self.prefix), value, None)]);
        if self.txn(txn).await?.succeeded() {
            Ok(())
        } else {
            Err(ClusterError::Fenced(domain.to_string()))
        }
    }

    /// The live nodes, sorted, and the owner of every owned domain.
    pub async fn view(&self) -> Result<(Vec<String>, BTreeMap<String, String>), ClusterError> {
        let list = |p: &str| {
            (
                format!("{}{p}", self.prefix),
                Some(GetOptions::new().with_prefix()),
            )
        };
        let get = |key: String, options: Option<GetOptions>| {
            self.pool.run(move |mut c| {
                let (key, options) = (key.clone(), options.clone());
                async move { c.get(key, options).await }
            })
        };
        let (key, options) = list("nodes/");
        let nodes = get(key.clone(), options).await?;
        let mut names: Vec<String> = nodes
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&key).map(str::to_string))
            .collect();
        names.sort();
        let (key, options) = list("owners/");
        let owners = get(key.clone(), options).await?;
        let owned = owners
            .kvs()
            .iter()
            .filter_map(|kv| {
                let domain = kv.key_str().ok()?.strip_prefix(&key)?.to_string();
                Some((domain, kv.value_str().ok()?.to_string()))
            })
            .collect();
        Ok((names, owned))
    }

    /// Leaves the cluster: the lease is revoked, so every key bound to it goes at once.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let lease = self.lease;
        self.pool
            .run(|mut c| async move { c.lease_revoke(lease).await })
            .await?;
        Ok(())
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, ClusterError> {
        self.pool
            .run(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
    }
}

#[cfg(all(test, feature = "services"))]
mod tests;
