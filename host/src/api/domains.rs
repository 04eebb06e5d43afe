//! The handlers of domains, their engines and sensors: status, add, remove, reconfigure,
//! swap, history, rollback, resume, scenario export, pushed readings, and the chart series.

use super::*;
use crate::model::DomainSpec;

#[derive(Deserialize)]
pub(super) struct StatusQuery {
    domain: Option<String>,
}

pub(super) async fn status(State(d): Shared, Query(q): Query<StatusQuery>) -> Reply {
    let domains = d.status(q.domain.as_deref()).await?;
    let store = &d.services.store;
    let mut held = Vec::new();
    for (name, error) in store.held_domains()? {
        if q.domain.as_ref().is_none_or(|only| *only == name) {
            let instances = store.live_instances(Some(&name))?.len();
            held.push(json!({"name": name, "error": error, "instances": instances}));
        }
    }
    // The runs, unless one domain is asked for: each with its domains.
    let mut runs = Vec::new();
    if q.domain.is_none() {
        for run in store.runs()? {
            let domains = store.run_domains(&run.name)?;
            let mut v = serde_json::to_value(&run).map_err(anyhow::Error::from)?;
            v["domains"] = json!(domains);
            runs.push(v);
        }
    }
    Ok(Json(
        json!({ "domains": domains, "held": held, "runs": runs }),
    ))
}

pub(super) async fn add_domain(State(d): Shared, ApiJson(spec): ApiJson<DomainSpec>) -> Reply {
    let name = spec.name.clone();
    d.add_domain(spec).await?;
    Ok(Json(json!({ "domain": name, "added": name })))
}

pub(super) async fn remove_domain(State(d): Shared, Path(name): Path<String>) -> Reply {
    d.remove_domain(&name).await?;
    Ok(Json(json!({ "domain": name, "removed": name })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReconfigureBody {
    config: Map<String, Value>,
}

pub(super) async fn reconfigure(
    State(d): Shared,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<ReconfigureBody>,
) -> Reply {
    let version = d.reconfigure(&name, b.config).await?;
    Ok(Json(json!({ "domain": name, "config_version": version })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SwapBody {
    /// A bundled engine's name or the path of a `.wasm` file on the daemon's machine.
    engine: String,
    /// In a cluster: the sha256 of an engine a node staged in the record (a request
    /// forwarded from the node whose machine has the file); `engine` then only names it.
    #[serde(default)]
    engine_sha: Option<String>,
    /// The domain's new config, for an engine that takes other keys.
    config: Option<serde_json::Map<String, Value>>,
}

pub(super) async fn swap_engine(
    State(d): Shared,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<SwapBody>,
) -> Reply {
    let sha = b.engine_sha.as_deref();
    let version = d.swap_engine(&name, &b.engine, sha, b.config).await?;
    Ok(Json(json!({ "domain": name, "engine_version": version })))
}

pub(super) async fn describe_engine(State(d): Shared, Path(name): Path<String>) -> Reply {
    Ok(Json(d.describe_engine(&name).await?))
}

pub(super) async fn engine_history(State(d): Shared, Path(name): Path<String>) -> Reply {
    Ok(Json(
        json!({ "domain": name, "versions": d.engine_history(&name)? }),
    ))
}

pub(super) async fn rollback_engine(State(d): Shared, Path(name): Path<String>) -> Reply {
    let version = d.rollback_engine(&name).await?;
    Ok(Json(json!({ "domain": name, "engine_version": version })))
}

pub(super) async fn resume_engine(State(d): Shared, Path(name): Path<String>) -> Reply {
    d.resume_engine(&name).await?;
    Ok(Json(json!({ "domain": name, "resumed": true })))
}

pub(super) async fn explain(State(d): Shared, Path(name): Path<String>) -> Reply {
    let decides = d.explain(&name).await?;
    Ok(Json(json!({ "domain": name, "decides": decides })))
}

pub(super) async fn scenario(State(d): Shared, Path(name): Path<String>) -> Reply {
    let (text, steps) = d.export_scenario(&name).await?;
    Ok(Json(
        json!({ "domain": name, "steps": steps, "scenario": text }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadingBody {
    value: f64,
}

pub(super) async fn push_reading(
    State(d): Shared,
    Path((name, sensor)): Path<(String, String)>,
    ApiJson(b): ApiJson<ReadingBody>,
) -> Reply {
    d.push_reading(&name, &sensor, b.value)?;
    Ok(Json(
        json!({ "domain": name, "sensor": sensor, "value": b.value }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProtectBody {
    protected: bool,
}

pub(super) async fn protect_instance(
    State(d): Shared,
    Path((name, id)): Path<(String, String)>,
    ApiJson(b): ApiJson<ProtectBody>,
) -> Reply {
    let inst = d.protect_instance(&name, &id, b.protected).await?;
    Ok(Json(json!({ "domain": name, "instance": inst })))
}

pub(super) async fn destroy_instance(
    State(d): Shared,
    Path((name, id)): Path<(String, String)>,
) -> Reply {
    let inst = d.destroy_instance(&name, &id).await?;
    Ok(Json(
        json!({ "domain": name, "instance": inst, "destroyed": true }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeployableBody {
    deployable: crate::model::Deployable,
}

pub(super) async fn update_deployable(
    State(d): Shared,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<DeployableBody>,
) -> Reply {
    let version = d.update_deployable(&name, b.deployable).await?;
    Ok(Json(json!({ "domain": name, "version": version })))
}

pub(super) async fn refresh_domain(
    State(d): Shared,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<crate::model::RefreshRequest>,
) -> Reply {
    let refresh = d.refresh(&name, b).await?;
    Ok(Json(json!({ "domain": name, "refresh": refresh })))
}

#[derive(Deserialize)]
pub(super) struct SeriesQuery {
    /// How far back, in seconds.
    #[serde(default = "default_window")]
    seconds: f64,
}

pub(super) fn default_window() -> f64 {
    3600.0
}

/// A domain's live instances by state over the window, as `[time, counts]` with the count
/// at the window's start first, and its kept sensor readings in the window.
pub(super) async fn series(
    State(d): Shared,
    Path(name): Path<String>,
    Query(q): Query<SeriesQuery>,
) -> Reply {
    let store = &d.services.store;
    if store.domain(&name)?.is_none() {
        return Err(OpError::NotFound(format!("unknown domain '{name}'")).into());
    }
    let now = crate::model::now();
    let since = now - q.seconds.clamp(1.0, 7.0 * 86400.0);
    let events = store.events_after(0, Some(&name), u32::MAX)?;
    let all = crate::analysis::instance_counts(&events);
    let before = all
        .iter()
        .rev()
        .find(|(t, _)| *t < since)
        .map(|(_, c)| (since, *c));
    let counts: Vec<_> = before
        .into_iter()
        .chain(all.into_iter().filter(|(t, _)| *t >= since))
        .collect();
    let readings: Vec<_> = store
        .readings_of(&name)?
        .into_iter()
        .filter(|r| r.1 >= since)
        .collect();
    // The target in force at `since`, then each change.
    let all_targets = crate::analysis::targets(&events);
    let target_before = all_targets.iter().rev().find(|(t, _)| *t < since);
    let targets: Vec<_> = target_before
        .map(|(_, n)| (since, *n))
        .into_iter()
        .chain(all_targets.iter().copied().filter(|(t, _)| *t >= since))
        .collect();
    let marks: Vec<_> = crate::analysis::marks(&events)
        .into_iter()
        .filter(|(t, _)| *t >= since)
        .map(|(t, m)| json!([t, m.name()]))
        .collect();
    Ok(Json(json!({
        "groups": crate::analysis::STATE_GROUPS,
        "counts": counts,
        "readings": readings,
        "targets": targets,
        "marks": marks,
        "since": since,
        "now": now,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShadowBody {
    engine: String,
    #[serde(default)]
    config: Option<serde_json::Map<String, Value>>,
}

pub(super) async fn add_shadow(
    State(d): Shared,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<ShadowBody>,
) -> Reply {
    let config = match b.config {
        Some(c) => c,
        None => d
            .services
            .store
            .domain(&name)?
            .map(|r| r.spec.config)
            .unwrap_or_default(),
    };
    let id = d.add_shadow(&name, &b.engine, config).await?;
    Ok(Json(json!({ "domain": name, "shadow": id })))
}

pub(super) async fn stop_shadows(State(d): Shared, Path(name): Path<String>) -> Reply {
    let stopped = d.stop_shadows(&name, None).await?;
    Ok(Json(json!({ "domain": name, "stopped": stopped })))
}

pub(super) async fn stop_shadow(State(d): Shared, Path((name, id)): Path<(String, i64)>) -> Reply {
    let stopped = d.stop_shadows(&name, Some(id)).await?;
    Ok(Json(json!({ "domain": name, "stopped": stopped })))
}

pub(super) async fn shadow_report(State(d): Shared, Path(name): Path<String>) -> Reply {
    Ok(Json(d.shadow_report(&name)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PromoteBody {
    #[serde(default)]
    shadow: Option<i64>,
}

pub(super) async fn promote_shadow(
    State(d): Shared,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<PromoteBody>,
) -> Reply {
    let version = d.promote_shadow(&name, b.shadow).await?;
    Ok(Json(json!({ "domain": name, "engine_version": version })))
}
