//! A domain's engine: swaps, the history and rollbacks, quarantine, and scenario exports.

use super::{unknown_domain, Daemon, OpError};
use crate::store::EngineVersion;
use serde_json::{Map, Value};

impl Daemon {
    /// Validates an engine (a bundled name or a `.wasm` path) against the live domain and
    /// swaps it in, with `config` as the domain's new config if given (an engine of another
    /// kind takes other keys); returns the new engine version. On refusal the old engine runs
    /// on with its config.
    /// `staged`, if given, is the sha256 of the engine's bytes, which a node staged in the
    /// cluster's record ([`Daemon::stage_engine`]); `engine` then only names it.
    pub async fn swap_engine(
        &self,
        name: &str,
        engine: &str,
        staged: Option<&str>,
        config: Option<Map<String, Value>>,
    ) -> Result<i64, OpError> {
        if self.services.store.domain(name)?.is_none() {
            return Err(self
                .elsewhere(name)
                .await
                .unwrap_or_else(|| unknown_domain(name)));
        }
        let staged = match staged {
            Some(sha) => Some(self.staged_engine(sha).await?),
            None => None,
        };
        // Compile before taking the controllers' lock: it can take seconds for some guests.
        let engines = self.services.engines.clone();
        let spec = engine.to_string();
        let loaded = tokio::task::spawn_blocking(move || match staged {
            Some(bytes) => engines
                .prepare(&bytes)
                .map_err(|e| e.context(format!("engine '{spec}'"))),
            None => engines.prepare_spec(&spec),
        })
        .await
        .map_err(|e| OpError::Internal(e.into()))?;
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                let why = format!("{e:#}");
                let detail = serde_json::json!({"engine": engine, "error": why});
                self.services
                    .store
                    .event(Some(name), None, "swap-rejected", detail)?;
                return Err(OpError::Invalid(why));
            }
        };
        self.publish_engine(&loaded).await?;
        let handle = self.handle(name).await?;
        handle
            .swap(loaded, crate::engine::engine_name(engine), config)
            .await
            .map_err(|e| OpError::from_command(e, OpError::Invalid))
    }

    /// The engines a domain has had, oldest first.
    pub fn engine_history(&self, name: &str) -> Result<Vec<EngineVersion>, OpError> {
        let versions = self.services.store.engine_versions(name)?;
        if versions.is_empty() {
            return Err(unknown_domain(name));
        }
        Ok(versions)
    }

    /// Swaps back to the engine the domain had before its current one, and to the config it
    /// ran with, with the same checks.
    pub async fn rollback_engine(&self, name: &str) -> Result<i64, OpError> {
        let versions = self.engine_history(name)?;
        let [.., previous, current] = versions.as_slice() else {
            return Err(OpError::Invalid(format!(
                "'{name}' has had only one engine"
            )));
        };
        let record = self
            .services
            .store
            .domain(name)?
            .ok_or_else(|| unknown_domain(name))?;
        let config = match previous.config_version {
            Some(v) if v != record.config_version => Some(self.services.store.config_at(name, v)?),
            _ => None,
        };
        let engines = self.services.engines.clone();
        let sha = previous.sha.clone();
        let loaded = tokio::task::spawn_blocking(move || engines.load(&sha))
            .await
            .map_err(|e| OpError::Internal(e.into()))??;
        let handle = self.handle(name).await?;
        tracing::info!(domain = name, from = %current.sha, to = %previous.sha, "rolling back");
        handle
            .swap(loaded, previous.name.clone(), config)
            .await
            .map_err(|e| OpError::from_command(e, OpError::Invalid))
    }

    /// What the domain's engine says it is (none for an engine of an earlier contract), with
    /// the domain's config: what a form that edits the config needs.
    pub async fn describe_engine(&self, name: &str) -> Result<Value, OpError> {
        let record = match self.services.store.domain(name)? {
            Some(r) => r,
            None => {
                return Err(self
                    .elsewhere(name)
                    .await
                    .unwrap_or_else(|| unknown_domain(name)))
            }
        };
        let engines = self.services.engines.clone();
        let sha = record.engine_sha.clone();
        let limits = crate::engine::CallLimits::from(&record.spec.limits);
        let (contract, description) = tokio::task::spawn_blocking(move || {
            let loaded = engines.load(&sha)?;
            let description = engines
                .describe(&loaded, limits)
                .map_err(|e| anyhow::anyhow!("the engine's describe failed: {e}"))?;
            anyhow::Ok((loaded.contract.clone(), description))
        })
        .await
        .map_err(|e| OpError::Internal(e.into()))??;
        Ok(serde_json::json!({
            "domain": name,
            "engine": record.spec.engine,
            "contract": contract,
            "description": description.as_deref(),
            "config": record.spec.config,
        }))
    }

    /// The domain's last decides, explained, oldest first (see [`crate::controller::explain`]).
    pub async fn explain(
        &self,
        name: &str,
    ) -> Result<Vec<crate::controller::explain::Explained>, OpError> {
        let handle = self.handle(name).await?;
        let kept = handle.explained.lock().unwrap().iter().cloned().collect();
        Ok(kept)
    }

    /// A scenario file (TOML) of what the domain's engine saw and decided lately, from a full
    /// snapshot on, and its number of steps; `epu engine test` replays it.
    pub async fn export_scenario(&self, name: &str) -> Result<(String, usize), OpError> {
        let handle = self.handle(name).await?;
        let (config, steps) = handle
            .recording()
            .await
            .map_err(|e| OpError::from_command(e, OpError::Conflict))?;
        if steps.is_empty() {
            return Err(OpError::Conflict(format!(
                "'{name}' has no decide recorded yet since its engine or config last changed"
            )));
        }
        let scenario = crate::engine_test::from_recording(config, &steps);
        let text = toml::to_string(&scenario).map_err(|e| OpError::Internal(e.into()))?;
        Ok((text, steps.len()))
    }

    /// Lifts a domain's quarantine.
    pub async fn resume_engine(&self, name: &str) -> Result<(), OpError> {
        let handle = self.handle(name).await?;
        handle
            .resume()
            .await
            .map_err(|e| OpError::from_command(e, OpError::Conflict))
    }
}
