//! A daemon as a node of a cluster (cargo feature `cluster`): it owns a fair share of the
//! domains, whose state of record is in etcd, and runs their controllers.
//!
//! The balance loop runs a few times per lease TTL. It reads the cluster (live nodes, owners,
//! domains), lets go of domains it lost (its claim is gone: its lease ran out while it was
//! paused, say), gives up domains over its fair share, claims unowned ones under it, and takes
//! each claimed domain on: its rows come from etcd into the local store, its engine's bytes
//! too if the node lacks them, its workers are recovered as after a restart (adopted by pid
//! and start time, or through the cloud's API), and its controller starts. Letting go stops
//! the controller (the workers keep running) and forgets the local copy.
//!
//! A node that is not live (it cannot reach etcd, or its lease ran out) holds: it lets go of
//! every controller and launches and destroys nothing (the provisioner's gate, and the
//! store's mirror, refuse). When it is live again, it takes back whatever is still its own.

use super::{domain_exists, Daemon, OpError};
use crate::cluster::record::{NodeInfo, Place};
pub(super) use crate::cluster::Node;

mod engines;
mod events;
use crate::cluster::{ClusterError, ClusterOptions};
use crate::controller;
use crate::engine::LoadedEngine;
use crate::model::DomainSpec;
use crate::provisioner::LiveIds;
use crate::store::{Rows, Store};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

impl From<ClusterError> for OpError {
    fn from(e: ClusterError) -> OpError {
        match e {
            ClusterError::Fenced(_) | ClusterError::NameTaken(_) => {
                OpError::Conflict(e.to_string())
            }
            ClusterError::TooLarge(_) => OpError::Invalid(e.to_string()),
            ClusterError::Etcd(_) | ClusterError::Timeout => OpError::Unavailable(e.to_string()),
        }
    }
}

/// The host name nodes compare to place `process` domains.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Joins the cluster, and readies the store as the working copy of the domains the node will
/// own: a domain the state dir holds from before is dropped if the cluster knows it (the
/// record is newer), and refused if it does not (nothing is lost).
pub(super) async fn join(
    options: &ClusterOptions,
    store: &Store,
    listen: Option<String>,
    socket: String,
) -> Result<(Arc<Node>, LiveIds)> {
    let info = NodeInfo {
        host: host_name(),
        addr: listen,
        socket: Some(socket),
        pid: std::process::id(),
        labels: options.labels.clone(),
    };
    let node = Node::join(options.clone(), info)
        .await
        .with_context(|| format!("joining the cluster at {}", options.endpoints.join(",")))?;
    let node = Arc::new(node);
    let places = node.record.places().await?;
    let local: BTreeSet<String> = store
        .domains()?
        .into_iter()
        .map(|d| d.spec.name)
        .chain(store.held_domains()?.into_iter().map(|(n, _)| n))
        .collect();
    let unknown: Vec<&String> = local.iter().filter(|d| !places.contains_key(*d)).collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
        anyhow::bail!(
            "the state dir holds domains the cluster does not know ({}): remove them with a \
             daemon outside the cluster first, or give this node a fresh state dir",
            names.join(", ")
        );
    }
    for d in &local {
        store.forget_domain(d)?;
    }
    let mirror = node.mirror()?;
    store.set_mirror(Box::new(mirror.clone()));
    let live: LiveIds = Arc::new(move || mirror.live_instance_ids());
    Ok((node, live))
}

impl Daemon {
    fn node(&self) -> Option<&Arc<Node>> {
        self.cluster.as_ref()
    }

    /// Balances, takes and lets go of domains until the daemon stops.
    pub(super) async fn balance_forever(self: Arc<Self>) {
        let Some(node) = self.node().cloned() else {
            return;
        };
        let period = node.options.ttl / 6;
        let wake = Arc::new(tokio::sync::Notify::new());
        let watch = tokio::spawn({
            let (node, wake) = (node.clone(), wake.clone());
            async move { node.watch(wake).await }
        });
        let shipper = tokio::spawn(events::ship(self.services.store.clone(), node.clone()));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = wake.notified() => {}
                _ = self.stopping() => break,
            }
            if let Err(e) = self.balance_once(&node).await {
                tracing::warn!("balancing the cluster's domains: {e:#}");
            }
        }
        watch.abort();
        shipper.abort();
    }

    /// Stops every controller (the workers run on) and leaves the cluster, so that the other
    /// nodes take the domains over at once instead of after the lease's TTL.
    pub async fn leave_cluster(&self) {
        let Some(node) = self.node() else {
            return;
        };
        self.let_go_all("the daemon stops").await;
        if let Err(e) = node.leave().await {
            tracing::warn!("leaving the cluster: {e}");
        }
    }

    async fn balance_once(self: &Arc<Self>, node: &Arc<Node>) -> Result<()> {
        if node.expired() {
            self.let_go_all("the cluster lease ran out").await;
            node.rejoin().await?;
            tracing::info!("joined the cluster again after the lease ran out");
            return Ok(());
        }
        if !node.is_live() {
            self.let_go_all("this node cannot reach etcd").await;
            return Ok(());
        }
        let view = node.view().await?;
        let me = node.name().to_string();
        for d in node.claimed() {
            if view.owners.get(&d) != Some(&me) {
                node.drop_claim(&d);
                self.let_go(&d, "another node owns it now").await;
            } else if !view.places.contains_key(&d) {
                node.drop_claim(&d);
                self.let_go(&d, "the domain was removed").await;
            }
        }
        let plan = view.plan(&me);
        for d in &plan.release {
            self.let_go(d, "the cluster's balance moves it").await;
            node.release(d).await?;
        }
        for d in &plan.claim {
            node.claim(d).await?;
        }
        let running: BTreeSet<String> = self.controllers.lock().await.keys().cloned().collect();
        for d in node.claimed() {
            if running.contains(&d) || self.removing.lock().await.contains(&d) {
                continue;
            }
            if let Err(e) = self.take(node, &d).await {
                tracing::error!("taking domain '{d}' on: {e:#}");
                let _ = self.services.store.event(
                    Some(&d),
                    None,
                    "take-failed",
                    json!({"node": me, "error": format!("{e:#}")}),
                );
                self.let_go(&d, "it could not be taken on").await;
                node.release(&d).await?;
            }
        }
        Ok(())
    }

    /// Takes a claimed domain on: its rows and engines from the record, its workers
    /// recovered, its controller started.
    async fn take(self: &Arc<Self>, node: &Arc<Node>, name: &str) -> Result<()> {
        let rows = node.record.load(name).await?;
        anyhow::ensure!(rows.contains_key("row"), "the record has no row for it");
        for sha in engine_shas(&rows) {
            if self.services.engines.has(&sha) {
                continue;
            }
            let bytes = node
                .record
                .get_engine(&sha)
                .await?
                .with_context(|| format!("the record lacks engine {sha} (or it is damaged)"))?;
            let engines = self.services.engines.clone();
            tokio::task::spawn_blocking(move || engines.add(&bytes)).await??;
        }
        let store = &self.services.store;
        store.import_domain(name, &rows)?;
        let record = store
            .domain(name)?
            .context("its stored spec does not read back")?;
        let others: Vec<String> = store
            .domains()?
            .into_iter()
            .map(|d| d.spec.name)
            .filter(|d| d != name)
            .collect();
        self.services.provisioner.recover(&others)?;
        let detail = json!({"node": node.name()});
        store.event(Some(name), None, "domain-taken", detail)?;
        if store.removing_domains()?.iter().any(|d| d == name) {
            // Its owner died while removing it: finish the removal.
            self.removing.lock().await.insert(name.to_string());
            let name = name.to_string();
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.remove_domain(&name).await {
                    tracing::error!("finishing the removal of '{name}': {e}");
                }
            });
            return Ok(());
        }
        let engines = self.services.engines.clone();
        let sha = record.engine_sha.clone();
        let loaded = tokio::task::spawn_blocking(move || engines.load(&sha)).await??;
        self.services.provisioner.attach(&record.spec);
        let handle = controller::start(self.services.clone(), record, loaded, None, Vec::new());
        self.controllers
            .lock()
            .await
            .insert(name.to_string(), handle);
        Ok(())
    }

    /// Stops a domain's controller (its workers run on) and forgets the local copy.
    async fn let_go(&self, name: &str, why: &str) {
        let handle = self.controllers.lock().await.remove(name);
        if let Some(h) = handle {
            h.stop().await;
        }
        self.services.provisioner.detach(name);
        if let Err(e) = self.services.store.forget_domain(name) {
            tracing::error!("forgetting domain '{name}': {e:#}");
        }
        let detail = json!({"why": why});
        let _ = self
            .services
            .store
            .event(Some(name), None, "domain-let-go", detail);
    }

    async fn let_go_all(&self, why: &str) {
        let names: Vec<String> = self.controllers.lock().await.keys().cloned().collect();
        for d in names {
            self.let_go(&d, why).await;
        }
    }

    /// Creates a domain in the cluster's record; a node claims it soon after.
    pub(super) async fn add_to_cluster(
        &self,
        node: &Node,
        spec: &DomainSpec,
        loaded: &Arc<LoadedEngine>,
    ) -> Result<(), OpError> {
        self.services.engines.keep(loaded)?;
        let bytes = self.services.engines.bytes(&loaded.sha)?;
        node.record.put_engine(&loaded.sha, &bytes).await?;
        let draft = Store::in_memory()?;
        draft.insert_domain(spec, &loaded.sha)?;
        let rows = draft.export_domain(&spec.name)?;
        let place = self.place_of(node, spec).await?;
        if !node.record.create(&spec.name, &place, &rows).await? {
            return Err(domain_exists(&spec.name));
        }
        let detail = json!({"engine": spec.engine, "engine_sha": loaded.sha, "node": node.name()});
        self.services
            .store
            .event(Some(&spec.name), None, "domain-added", detail)?;
        Ok(())
    }

    /// Where a new domain may run. A `process` domain is held to one host: this node's, or
    /// if its placement does not admit this node, the host of a live node it admits.
    async fn place_of(&self, node: &Node, spec: &DomainSpec) -> Result<Place, OpError> {
        let mut place = Place {
            driver: spec.deployable.driver().to_string(),
            host: None,
            placement: spec.placement.clone(),
        };
        if spec.deployable.driver() != "process" {
            return Ok(place);
        }
        if place.admits(node.name(), &node.info) {
            place.host = Some(node.info.host.clone());
            return Ok(place);
        }
        let view = node.view().await?;
        let Some((_, info)) = view.nodes.iter().find(|(n, i)| place.admits(n, i)) else {
            return Err(OpError::Invalid(format!(
                "no live node matches the placement of domain '{}' ({}), and a process \
                 domain needs one to fix the host its workers run on: start such a node, or \
                 change the placement",
                spec.name,
                serde_json::to_string(&spec.placement).unwrap_or_default()
            )));
        };
        place.host = Some(info.host.clone());
        Ok(place)
    }

    /// After a removal: the domain leaves the record and its ownership is given up.
    pub(super) async fn removed_from_cluster(&self, name: &str) -> Result<(), OpError> {
        self.removing.lock().await.remove(name);
        if let Some(node) = self.node() {
            node.delete(name).await?;
            self.services.store.forget_domain(name)?;
        }
        Ok(())
    }

    /// Whether the cluster knows a domain of that name.
    pub(super) async fn in_cluster(&self, name: &str) -> Result<bool, OpError> {
        match self.node() {
            Some(node) => Ok(node.record.places().await?.contains_key(name)),
            None => Ok(false),
        }
    }

    /// Why a command for a domain this node does not run cannot be served here.
    pub(super) async fn elsewhere(&self, name: &str) -> Option<OpError> {
        let node = self.node()?;
        let view = node.view().await.ok()?;
        view.places.get(name)?;
        Some(match view.owners.get(name) {
            Some(owner) => {
                let addr = view.nodes.get(owner).and_then(|n| n.addr.clone());
                let at = addr.map(|a| format!(" (at {a})")).unwrap_or_default();
                OpError::Unavailable(format!(
                    "domain '{name}' is owned by node '{owner}'{at}, which cannot be forwarded \
                     to (a node forwards only to nodes started with --listen)"
                ))
            }
            None => OpError::Unavailable(format!(
                "domain '{name}' has no owner at the moment; try again in a few seconds"
            )),
        })
    }

    /// This node's name and whether it may act now, in a cluster.
    pub fn node_state(&self) -> Option<(String, bool)> {
        self.node().map(|n| (n.name().to_string(), n.is_live()))
    }

    /// Where a request for `name` goes, if another node owns it.
    pub async fn forward_target(&self, name: &str) -> Option<super::ForwardTarget> {
        let node = self.node()?;
        if self.services.store.domain(name).ok()?.is_some() {
            return None;
        }
        let view = node.view().await.ok()?;
        let owner = view.owners.get(name)?;
        if owner == node.name() {
            return None;
        }
        Some(super::ForwardTarget {
            node: owner.clone(),
            addr: view.nodes.get(owner)?.addr.clone()?,
            token: node.token.clone(),
            me: node.name().to_string(),
        })
    }

    /// The status of a domain another node owns, read from the record.
    pub(super) async fn remote_status(
        &self,
        name: &str,
        owner: Option<String>,
    ) -> Result<Option<super::DomainStatus>, OpError> {
        let Some(node) = self.node() else {
            return Ok(None);
        };
        let rows = node.record.load(name).await?;
        let draft = Store::in_memory()?;
        draft.import_domain(name, &rows)?;
        let Some(r) = draft.domain(name)? else {
            return Ok(None);
        };
        let mut status = super::status::of_record(r, draft.live_instances(Some(name))?);
        status.owner = owner;
        Ok(Some(status))
    }

    /// The cluster's nodes, each with the domains it owns, and the unowned domains.
    pub async fn cluster_status(&self) -> Result<Value, OpError> {
        let Some(node) = self.node() else {
            return Err(OpError::Invalid(
                "this daemon is not in a cluster (start it with --cluster)".into(),
            ));
        };
        let view = node.view().await?;
        let nodes: Vec<Value> = view
            .nodes
            .iter()
            .map(|(name, info)| {
                let domains: Vec<&String> = view
                    .owners
                    .iter()
                    .filter(|(d, o)| *o == name && view.places.contains_key(*d))
                    .map(|(d, _)| d)
                    .collect();
                json!({"name": name, "alive": true, "host": info.host, "addr": info.addr,
                       "labels": info.labels, "domains": domains})
            })
            .collect();
        let unowned: Vec<&String> = view
            .places
            .keys()
            .filter(|d| !view.owners.contains_key(*d))
            .collect();
        Ok(json!({"me": node.name(), "nodes": nodes, "unowned": unowned}))
    }

    /// The owner of each domain, as the cluster has it (empty outside a cluster).
    pub(super) async fn owners(&self) -> std::collections::BTreeMap<String, String> {
        match self.node() {
            Some(node) => node.view().await.map(|v| v.owners).unwrap_or_default(),
            None => Default::default(),
        }
    }
}

/// The engines a domain's rows name: its own and every one it may roll back to.
fn engine_shas(rows: &Rows) -> BTreeSet<String> {
    rows.iter()
        .filter(|(k, _)| *k == "row" || k.starts_with("ver/"))
        .filter_map(|(k, v)| {
            let row: Value = serde_json::from_slice(v).ok()?;
            let column = if k == "row" { "engine_sha" } else { "sha" };
            row.get(column)?.as_str().map(str::to_string)
        })
        .collect()
}

impl Daemon {
    /// The domains other nodes own (or none owns), or just `only` if it is one of them.
    pub(super) async fn remote_domains(&self, only: Option<&str>) -> Result<Vec<String>, OpError> {
        let Some(node) = self.node() else {
            return Ok(vec![]);
        };
        let store = &self.services.store;
        let places = node.record.places().await?;
        let mut out = Vec::new();
        for name in places.into_keys() {
            if only.is_some_and(|o| o != name) || store.domain(&name)?.is_some() {
                continue;
            }
            out.push(name);
        }
        Ok(out)
    }
}
