//! A domain's shadow engines: starting one beside the live engine, stopping it, its report,
//! and promoting it through the usual validated swap. A node of a cluster runs none yet.

use super::{unknown_domain, Daemon, OpError};
use crate::controller::shadow::Shadow;
use crate::controller::Services;
use crate::engine::CallLimits;
use crate::model::shadow::ShadowRecord;
use crate::model::DomainSpec;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The shadows of a domain as its controller runs them, their engines loaded from the state
/// dir; one whose engine does not load is left out, with a warning. Blocks.
pub(super) fn load(services: &Services, spec: &DomainSpec) -> Vec<Arc<Shadow>> {
    let records = match services.store.shadows(&spec.name) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(domain = %spec.name, "reading the shadows: {e:#}");
            return Vec::new();
        }
    };
    let limits = CallLimits::from(&spec.limits);
    records
        .into_iter()
        .filter_map(|r| match services.engines.load(&r.engine_sha) {
            Ok(loaded) => Some(Arc::new(Shadow::new(r, loaded, limits, spec.max_instances))),
            Err(e) => {
                tracing::warn!(domain = %spec.name, shadow = r.id, "loading a shadow: {e:#}");
                None
            }
        })
        .collect()
}

impl Daemon {
    /// Starts a shadow of `domain`: `engine` (a bundled name or a `.wasm` path) with `config`,
    /// which its `initialize` must accept. Returns its id.
    pub async fn add_shadow(
        &self,
        domain: &str,
        engine: &str,
        config: Map<String, Value>,
    ) -> Result<i64, OpError> {
        if self.cluster.is_some() {
            return Err(OpError::Invalid(
                "a node of a cluster runs no shadow engines yet".into(),
            ));
        }
        let spec = self.spec_of(domain)?;
        let services = self.services.clone();
        let (spec_engine, text) = (
            engine.to_string(),
            Value::Object(config.clone()).to_string(),
        );
        let limits = CallLimits::from(&spec.limits);
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = services.engines.prepare_spec(&spec_engine)?;
            services
                .engines
                .instantiate(&loaded, &text, limits)
                .map_err(|e| anyhow::anyhow!("engine '{spec_engine}' rejected the config: {e}"))?;
            services.engines.keep(&loaded)?;
            anyhow::Ok(loaded)
        })
        .await
        .map_err(|e| OpError::Internal(e.into()))?
        .map_err(|e| OpError::Invalid(format!("{e:#}")))?;
        let name = crate::engine::engine_name(engine);
        let id = self
            .services
            .store
            .add_shadow(domain, &name, &loaded.sha, &config)
            .map_err(|e| OpError::Invalid(format!("{e:#}")))?;
        self.reload_shadows(&spec).await?;
        Ok(id)
    }

    /// Stops the shadow `id` of `domain`, or every one; returns the ids stopped.
    pub async fn stop_shadows(&self, domain: &str, id: Option<i64>) -> Result<Vec<i64>, OpError> {
        let spec = self.spec_of(domain)?;
        let store = &self.services.store;
        let mut stopped = Vec::new();
        for s in store.shadows(domain)? {
            if id.is_none_or(|id| id == s.id) && store.stop_shadow(domain, s.id)? {
                stopped.push(s.id);
            }
        }
        if stopped.is_empty() {
            return Err(OpError::NotFound(match id {
                Some(id) => format!("'{domain}' runs no shadow {id}"),
                None => format!("'{domain}' runs no shadow"),
            }));
        }
        self.reload_shadows(&spec).await?;
        Ok(stopped)
    }

    /// How each shadow of `domain` compared with the live engine (stopped ones too): its
    /// counts, the counts both would have kept over time, the newest differing pairs, and
    /// its cost per decide against the live engine's.
    pub fn shadow_report(&self, domain: &str) -> Result<Value, OpError> {
        self.spec_of(domain)?;
        let store = &self.services.store;
        let running: Vec<i64> = store.shadows(domain)?.iter().map(|s| s.id).collect();
        let mut shadows = Vec::new();
        for s in store.all_shadows(domain)? {
            let per = |sum: f64| (s.stats.decides > 0).then(|| sum / s.stats.decides as f64);
            let (live_us, shadow_us) = (per(s.stats.live_us), per(s.stats.shadow_us));
            let ratio = match (live_us, shadow_us) {
                (Some(l), Some(c)) if l > 0.0 => Some(c / l),
                _ => None,
            };
            let pairs: Vec<Value> = store
                .shadow_pairs(s.id, 20)?
                .into_iter()
                .map(|(t, live, shadow)| json!({"time": t, "live": live, "shadow": shadow}))
                .collect();
            let mut v = serde_json::to_value(&s).map_err(anyhow::Error::from)?;
            v["running"] = json!(running.contains(&s.id));
            v["live_us_per_decide"] = json!(live_us);
            v["shadow_us_per_decide"] = json!(shadow_us);
            v["cost_ratio"] = json!(ratio);
            v["points"] = json!(store.shadow_points(s.id)?);
            v["pairs"] = json!(pairs);
            shadows.push(v);
        }
        Ok(json!({"domain": domain, "shadows": shadows}))
    }

    /// Swaps the shadow `id` of `domain` (or its only one) in as its engine, with its config,
    /// through the validated swap; the shadow then stops. Returns the new engine version.
    pub async fn promote_shadow(&self, domain: &str, id: Option<i64>) -> Result<i64, OpError> {
        let shadows = self.services.store.shadows(domain)?;
        let pick: Vec<&ShadowRecord> = shadows
            .iter()
            .filter(|s| id.is_none_or(|id| id == s.id))
            .collect();
        let s = match pick.as_slice() {
            [one] => *one,
            [] => {
                return Err(OpError::NotFound(format!(
                    "'{domain}' runs no shadow{}",
                    id.map(|i| format!(" {i}")).unwrap_or_default()
                )))
            }
            _ => {
                return Err(OpError::Invalid(format!(
                    "'{domain}' runs {} shadows: name one with --shadow ID",
                    pick.len()
                )))
            }
        };
        let version = self
            .swap_engine(
                domain,
                &s.engine_name,
                Some(&s.engine_sha),
                Some(s.config.clone()),
            )
            .await?;
        self.stop_shadows(domain, Some(s.id)).await?;
        Ok(version)
    }

    fn spec_of(&self, domain: &str) -> Result<DomainSpec, OpError> {
        Ok(self
            .services
            .store
            .domain(domain)?
            .ok_or_else(|| unknown_domain(domain))?
            .spec)
    }

    /// Hands the domain's controller its shadows as the store has them.
    async fn reload_shadows(&self, spec: &DomainSpec) -> Result<(), OpError> {
        let services = self.services.clone();
        let spec2 = spec.clone();
        let shadows = tokio::task::spawn_blocking(move || load(&services, &spec2))
            .await
            .map_err(|e| OpError::Internal(e.into()))?;
        self.handle(&spec.name)
            .await?
            .set_shadows(shadows)
            .await
            .map_err(|e| OpError::from_command(e, OpError::Invalid))
    }
}
