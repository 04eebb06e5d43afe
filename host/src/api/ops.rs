//! The handlers of workers and of the daemon as a whole: heartbeats, the event log, runs of
//! plans, clean-up and terminate.

use super::*;

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeartbeatBody {
    node_id: String,
    #[serde(default = "ok")]
    state: Reported,
    error: Option<String>,
    /// The instance's domain (`EPU_DOMAIN`): in a cluster, a node that does not own it passes
    /// the heartbeat on to the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    /// Protect the instance from destroys while it is healthy (true), or lift that (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protect: Option<bool>,
    /// The worker finished draining: stop it now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    drained: bool,
}

pub(super) fn ok() -> Reported {
    Reported::Ok
}

pub(super) async fn heartbeat(
    State(d): Shared,
    peer: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    worker: Option<axum::Extension<WorkerToken>>,
    headers: axum::http::HeaderMap,
    ApiJson(b): ApiJson<HeartbeatBody>,
) -> Response {
    if let (Some(axum::Extension(WorkerToken(t))), Some(axum::Extension(ConnectInfo(peer)))) =
        (worker, peer)
    {
        if !d.tokens.is_worker(&t, &b.node_id) {
            let why = "a token that is not this instance's";
            return refuse(&d, peer, "/v1/heartbeat", why).into_response();
        }
    }
    let beat = Beat {
        reported: b.state,
        error: b.error.as_deref(),
        protect: b.protect,
        drained: b.drained,
    };
    match d.health.heartbeat(&b.node_id, beat) {
        Ok(answer) => Json(json!({ "ok": true, "drain": answer.drain })).into_response(),
        Err(HeartbeatError::UnknownNode(n)) => {
            let owner = match &b.domain {
                Some(domain) if !forward::was_forwarded(&headers) => d.forward_target(domain).await,
                _ => None,
            };
            match owner {
                Some(target) => {
                    let body = serde_json::to_value(&b).expect("a heartbeat serializes");
                    forward::relay_json(&target, "/v1/heartbeat", &body).await
                }
                None => {
                    ApiError(StatusCode::NOT_FOUND, format!("unknown node '{n}'")).into_response()
                }
            }
        }
        Err(HeartbeatError::Store(e)) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    #[serde(default)]
    after: i64,
    domain: Option<String>,
    /// Wait up to this long for an event when there is none yet.
    #[serde(default)]
    wait_ms: u64,
    #[serde(default = "default_limit")]
    limit: u32,
    /// Only this run's events (its own and its domains').
    run: Option<String>,
}

pub(super) fn default_limit() -> u32 {
    1000
}

pub(super) async fn events(State(d): Shared, Query(q): Query<EventsQuery>) -> Reply {
    let store = &d.services.store;
    let mut rx = store.subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(q.wait_ms).min(MAX_EVENT_WAIT);
    loop {
        let last_seq = *rx.borrow_and_update();
        let limit = q.limit.min(10_000);
        let events = match &q.run {
            Some(run) => store.run_events(run, q.after, limit)?,
            None => store.events_after(q.after, q.domain.as_deref(), limit)?,
        };
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(json!({ "events": events, "last_seq": last_seq })));
        }
        // Wait for a new event, the deadline, or the daemon stopping (which must not wait
        // for long polls).
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = rx.changed() => {}
            _ = d.stopping() => return Ok(Json(json!({ "events": [] }))),
        }
    }
}

/// Stops the daemon and keeps its workers (`epu daemon stop`).
pub(super) async fn stop(State(d): Shared) -> Reply {
    d.request_shutdown();
    Ok(Json(json!({ "stopped": true })))
}

pub(super) async fn terminate(State(d): Shared) -> Reply {
    d.terminate().await?;
    Ok(Json(json!({ "terminated": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BootBody {
    /// The plan's directory or file, an absolute path on the daemon's machine.
    plan: std::path::PathBuf,
    /// The run's name (default: the plan's).
    name: Option<String>,
}

/// Boots a run. The boot goes on to its end (or its rollback) even if the client goes away.
pub(super) async fn boot_run(State(d): Shared, ApiJson(b): ApiJson<BootBody>) -> Reply {
    let task = tokio::spawn(async move { d.boot_run(&b.plan, b.name.as_deref()).await });
    let status = task.await.map_err(|e| anyhow::anyhow!(e))??;
    Ok(Json(status))
}

#[derive(Deserialize)]
pub(super) struct RunQuery {
    /// Re-run the services' readiness checks.
    #[serde(default)]
    check: bool,
}

pub(super) async fn run_status(
    State(d): Shared,
    Path(run): Path<String>,
    Query(q): Query<RunQuery>,
) -> Reply {
    Ok(Json(d.run_status(&run, q.check).await?))
}

pub(super) async fn terminate_run(State(d): Shared, Path(run): Path<String>) -> Reply {
    let task = tokio::spawn(async move { d.terminate_run(&run).await });
    Ok(Json(task.await.map_err(|e| anyhow::anyhow!(e))??))
}

pub(super) async fn clean(State(d): Shared) -> Reply {
    Ok(Json(d.clean().await?))
}
