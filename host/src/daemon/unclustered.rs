//! A daemon built without the cluster (cargo feature `cluster`): it is never a node, and
//! every cluster hook of the daemon does nothing.

use super::{Daemon, DomainStatus, OpError};
use crate::engine::LoadedEngine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Never made: this build has no cluster.
pub enum Node {}

impl Daemon {
    pub(super) async fn balance_forever(self: Arc<Self>) {}

    /// Nothing to leave.
    pub async fn leave_cluster(&self) {}

    pub(super) async fn publish_engine(&self, _: &Arc<LoadedEngine>) -> Result<(), OpError> {
        Ok(())
    }

    /// Never called: nothing is forwarded outside a cluster.
    pub async fn stage_engine(&self, _: &str) -> Result<String, OpError> {
        Err(OpError::Invalid("staging an engine needs a cluster".into()))
    }

    pub(super) async fn staged_engine(&self, _: &str) -> Result<Vec<u8>, OpError> {
        Err(OpError::Invalid(
            "engine_sha names a staged engine, which needs a cluster".into(),
        ))
    }

    pub(super) async fn removed_from_cluster(&self, name: &str) -> Result<(), OpError> {
        self.removing.lock().await.remove(name);
        Ok(())
    }

    pub(super) async fn in_cluster(&self, _: &str) -> Result<bool, OpError> {
        Ok(false)
    }

    pub(super) async fn elsewhere(&self, _: &str) -> Option<OpError> {
        None
    }

    /// None: this daemon is not a node.
    pub fn node_state(&self) -> Option<(String, bool)> {
        None
    }

    /// Never: no other node owns anything.
    pub async fn forward_target(&self, _: &str) -> Option<super::ForwardTarget> {
        None
    }

    pub(super) async fn remote_domains(&self, _: Option<&str>) -> Result<Vec<String>, OpError> {
        Ok(vec![])
    }

    pub(super) async fn remote_status(
        &self,
        _: &str,
        _: Option<String>,
    ) -> Result<Option<DomainStatus>, OpError> {
        Ok(None)
    }

    pub(super) async fn owners(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Refused: this build has no cluster.
    pub async fn cluster_events(&self, _: &str) -> Result<Vec<Value>, OpError> {
        self.cluster_status().await.map(|_| vec![])
    }

    /// Refused: this build has no cluster.
    pub async fn cluster_status(&self) -> Result<Value, OpError> {
        Err(OpError::Invalid(
            "this epu was built without the cluster (cargo feature `cluster`)".into(),
        ))
    }
}
