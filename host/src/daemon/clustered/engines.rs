//! Engines in the cluster's record: a node publishes every engine a domain may use, and
//! stages the file of an `engine swap` it forwards, so that the owner, on another machine,
//! swaps in the same bytes.

use super::super::{Daemon, OpError};
use crate::engine::LoadedEngine;
use std::sync::Arc;

impl Daemon {
    /// Publishes an engine to the record before a swap makes a domain use it.
    pub(in crate::daemon) async fn publish_engine(
        &self,
        loaded: &Arc<LoadedEngine>,
    ) -> Result<(), OpError> {
        let Some(node) = self.node() else {
            return Ok(());
        };
        self.services.engines.keep(loaded)?;
        let bytes = self.services.engines.bytes(&loaded.sha)?;
        node.record.put_engine(&loaded.sha, &bytes).await?;
        Ok(())
    }

    /// Reads an engine on this machine (a bundled name or a `.wasm` path), checks that it
    /// compiles and publishes it to the record: its sha256, which the owner swaps in.
    pub async fn stage_engine(&self, engine: &str) -> Result<String, OpError> {
        let engines = self.services.engines.clone();
        let spec = engine.to_string();
        let loaded = tokio::task::spawn_blocking(move || engines.prepare_spec(&spec))
            .await
            .map_err(|e| OpError::Internal(e.into()))?
            .map_err(|e| OpError::Invalid(format!("{e:#}")))?;
        self.publish_engine(&loaded).await?;
        Ok(loaded.sha.clone())
    }

    /// The bytes of an engine another node staged: from this node's engines, or the record.
    pub(in crate::daemon) async fn staged_engine(&self, sha: &str) -> Result<Vec<u8>, OpError> {
        if self.services.engines.has(sha) {
            return Ok(self.services.engines.bytes(sha)?);
        }
        let node = self.node().ok_or_else(|| {
            OpError::Invalid("engine_sha names a staged engine, which needs a cluster".into())
        })?;
        node.record
            .get_engine(sha)
            .await?
            .ok_or_else(|| OpError::Invalid(format!("the cluster has no engine {sha}")))
    }
}
