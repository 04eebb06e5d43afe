//! A daemon's node of the cluster: its membership (joined again after its lease ran out), its
//! claims, and the record it reads.

use super::balance;
use super::membership::{Claim, ClusterError, Membership};
use super::mirror::{Claims, EtcdMirror};
use super::record::{NodeInfo, Place, Record};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The default key prefix of a cluster in etcd.
pub const DEFAULT_PREFIX: &str = "/epu/";
/// The default time to live of a node's lease.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// How a daemon joins its cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub endpoints: Vec<String>,
    pub node: String,
    pub ttl: Duration,
    pub prefix: String,
    /// The node's labels, which domains' placements name.
    pub labels: BTreeMap<String, String>,
}

/// The cluster as a node reads it at one moment.
#[derive(Debug, Default)]
pub struct ClusterView {
    /// The live nodes and what each says of itself.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// The owner of every owned domain.
    pub owners: BTreeMap<String, String>,
    /// Every domain, with where it may run.
    pub places: BTreeMap<String, Place>,
}

impl ClusterView {
    /// Whether `node` may own `domain`.
    pub fn eligible(&self, domain: &str, node: &str) -> bool {
        match (self.places.get(domain), self.nodes.get(node)) {
            (Some(place), Some(info)) => place.admits(node, info),
            _ => false,
        }
    }

    /// What `me` should claim and give up now.
    pub fn plan(&self, me: &str) -> balance::Plan {
        let nodes: Vec<String> = self.nodes.keys().cloned().collect();
        let domains: Vec<(String, Option<String>)> = self
            .places
            .keys()
            .map(|d| (d.clone(), self.owners.get(d).cloned()))
            .collect();
        balance::plan(&balance::View {
            me,
            nodes: &nodes,
            domains: &domains,
            eligible: &|d, n| self.eligible(d, n),
        })
    }
}

/// A daemon's place in its cluster.
pub struct Node {
    pub options: ClusterOptions,
    pub info: NodeInfo,
    membership: RwLock<Arc<Membership>>,
    /// The record, through the daemon runtime's client.
    pub record: Record,
    claims: Claims,
    /// The token nodes forward requests to each other with.
    pub token: String,
    /// The live nodes as the last view saw them, for the workers' env.
    peers: RwLock<BTreeMap<String, NodeInfo>>,
}

impl Node {
    /// Joins the cluster.
    pub async fn join(options: ClusterOptions, info: NodeInfo) -> Result<Node, ClusterError> {
        let membership = Self::join_once(&options, &info).await?;
        let record = Record::new(membership.pool(), &options.prefix);
        let token = record.cluster_token().await?;
        Ok(Node {
            token,
            options,
            info,
            membership: RwLock::new(Arc::new(membership)),
            record,
            claims: Claims::default(),
            peers: RwLock::default(),
        })
    }

    /// Joins; a name held by a live lease is waited for up to twice the TTL, as a node that
    /// starts again right after it died finds its old lease still running.
    async fn join_once(
        options: &ClusterOptions,
        info: &NodeInfo,
    ) -> Result<Membership, ClusterError> {
        let info = serde_json::to_string(info).expect("node info serializes");
        let deadline = std::time::Instant::now() + options.ttl * 2;
        loop {
            let joined = Membership::join(
                &options.endpoints,
                &options.prefix,
                &options.node,
                options.ttl,
                &info,
            )
            .await;
            match joined {
                Err(ClusterError::NameTaken(_)) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(options.ttl / 6).await;
                }
                other => return other,
            }
        }
    }

    fn membership(&self) -> Arc<Membership> {
        self.membership.read().unwrap().clone()
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.options.node
    }

    /// Whether the node may act on its domains now.
    pub fn is_live(&self) -> bool {
        self.membership().is_live()
    }

    /// Whether the node's lease ran out.
    pub fn expired(&self) -> bool {
        self.membership().expired()
    }

    /// Joins again after the lease ran out; every claim went with it.
    pub async fn rejoin(&self) -> Result<(), ClusterError> {
        self.claims.lock().unwrap().clear();
        let fresh = Self::join_once(&self.options, &self.info).await?;
        *self.membership.write().unwrap() = Arc::new(fresh);
        Ok(())
    }

    /// The store's mirror for this node, fenced on its claims and its liveness.
    pub fn mirror(self: &Arc<Self>) -> anyhow::Result<Arc<EtcdMirror>> {
        let me = Arc::downgrade(self);
        let live = Arc::new(move || me.upgrade().is_some_and(|n| n.is_live()));
        Ok(Arc::new(EtcdMirror::connect(
            &self.options.endpoints,
            &self.options.prefix,
            self.options.ttl,
            self.claims.clone(),
            live,
        )?))
    }

    /// Wakes `wake` whenever a node, an owner or a domain comes or goes, until the daemon
    /// stops; a broken watch is opened again.
    pub async fn watch(&self, wake: Arc<tokio::sync::Notify>) {
        loop {
            if let Err(e) = self.watch_once(&wake).await {
                tracing::debug!("watching the cluster: {e}");
            }
            tokio::time::sleep(self.options.ttl / 6).await;
        }
    }

    async fn watch_once(&self, wake: &tokio::sync::Notify) -> Result<(), ClusterError> {
        use etcd_client::WatchOptions;
        let (i, mut client) = self.membership().pool().client();
        let key = |p: &str| format!("{}{p}", self.options.prefix);
        let prefix = || Some(WatchOptions::new().with_prefix());
        let watched = async {
            let mut stream = client.watch(key("owners/"), prefix()).await?;
            stream.watch(key("nodes/"), prefix()).await?;
            stream.watch(key("places/"), prefix()).await?;
            while let Some(answer) = stream.message().await? {
                if !answer.events().is_empty() {
                    wake.notify_one();
                }
            }
            Ok::<_, etcd_client::Error>(())
        };
        let result = watched.await;
        self.membership().pool().failed(i);
        Ok(result?)
    }

    /// Claims an unowned domain; false if another node was first.
    pub async fn claim(&self, domain: &str) -> Result<bool, ClusterError> {
        let claim = self.membership().claim(domain).await?;
        if let Some(c) = claim {
            self.claims.lock().unwrap().insert(domain.to_string(), c);
        }
        Ok(claim.is_some())
    }

    /// The domains this node holds claims on.
    pub fn claimed(&self) -> Vec<String> {
        self.claims.lock().unwrap().keys().cloned().collect()
    }

    /// This node's claim on `domain`.
    pub fn claim_of(&self, domain: &str) -> Option<Claim> {
        self.claims.lock().unwrap().get(domain).copied()
    }

    /// Forgets a claim (the domain was lost): nothing more is written for it.
    pub fn drop_claim(&self, domain: &str) -> Option<Claim> {
        self.claims.lock().unwrap().remove(domain)
    }

    /// Gives a domain up.
    pub async fn release(&self, domain: &str) -> Result<(), ClusterError> {
        match self.drop_claim(domain) {
            Some(claim) => self.membership().release(domain, claim).await,
            None => Ok(()),
        }
    }

    /// Deletes a removed domain from the record and gives its ownership up.
    pub async fn delete(&self, domain: &str) -> Result<(), ClusterError> {
        let claim = self
            .claim_of(domain)
            .ok_or_else(|| ClusterError::Fenced(domain.to_string()))?;
        self.record.delete(domain, claim).await?;
        self.release(domain).await
    }

    /// Leaves the cluster: the lease is revoked, so every domain of the node is free at once.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.claims.lock().unwrap().clear();
        self.membership().leave().await
    }

    /// The cluster as it is now.
    pub async fn view(&self) -> Result<ClusterView, ClusterError> {
        let (_, owners) = self.membership().view().await?;
        let nodes = self.record.nodes().await?;
        *self.peers.write().unwrap() = nodes.clone();
        Ok(ClusterView {
            nodes,
            owners,
            places: self.record.places().await?,
        })
    }

    /// Where a worker sends its heartbeats when this node is gone, as env vars: the API
    /// sockets of the other live nodes on this host (`EPU_API_SOCKETS`, ':'-separated, which
    /// `epu heartbeat` tries in turn) and the heartbeat URLs of the other live nodes that
    /// listen (`EPU_HEARTBEAT_URLS`, ','-separated). Any node passes a heartbeat on to the
    /// domain's owner. A list with nothing in it is left out.
    pub fn peer_env(&self) -> Vec<(String, String)> {
        let peers = self.peers.read().unwrap();
        let others = || peers.iter().filter(|(n, _)| *n != self.name());
        let sockets: Vec<&str> = others()
            .filter(|(_, i)| i.host == self.info.host)
            .filter_map(|(_, i)| i.socket.as_deref())
            .collect();
        let urls: Vec<String> = others()
            .filter_map(|(_, i)| i.addr.as_ref())
            .map(|a| format!("http://{a}/v1/heartbeat"))
            .collect();
        [
            ("EPU_API_SOCKETS", sockets.join(":")),
            ("EPU_HEARTBEAT_URLS", urls.join(",")),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
