//! The HTTP/JSON API on the state dir's unix socket (mode 0600): the CLI's and the workers'
//! way into the daemon. With `--listen`, the same API is served on TCP too, behind tokens
//! ([`crate::tokens`]) and a body size limit, for workers on other machines and remote tools.
//!
//! Errors are `{"error": "..."}` with 400 (bad input, malformed JSON), 401 (no or wrong
//! token), 404 (unknown domain or node), 409 (conflict), 413 (body too large) or 500.

mod dashboard;
mod domains;
mod forward;
mod metrics;
mod ops;
mod server;
mod tcp;

use crate::daemon::{Daemon, OpError};
use crate::health::{Beat, HeartbeatError, Reported};
use anyhow::{Context, Result};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use domains::*;
use forward::forward;
use ops::*;
use tcp::*;

/// The longest an events request waits for something new.
const MAX_EVENT_WAIT: Duration = Duration::from_secs(30);

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let code = match &e {
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Invalid(_) => StatusCode::BAD_REQUEST,
            OpError::Conflict(_) => StatusCode::CONFLICT,
            OpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, format!("{e:#}"))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

/// The largest request body the TCP listener accepts.
const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub use crate::daemon::UNIX_MAX_CONNECTIONS;

/// A JSON body whose every rejection is a `{"error"}` answer: 413 for a body over the limit,
/// 400 for anything else (malformed JSON, wrong fields, no content type).
struct ApiJson<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let read = tokio::time::timeout(BODY_TIMEOUT, Json::<T>::from_request(req, state));
        let Ok(body) = read.await else {
            let why = format!("the body took over {} s to arrive", BODY_TIMEOUT.as_secs());
            return Err(ApiError(StatusCode::REQUEST_TIMEOUT, why));
        };
        match body {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => {
                let code = match r.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(ApiError(code, r.body_text()))
            }
        }
    }
}

type Reply = Result<Json<Value>, ApiError>;
type Shared = State<Arc<Daemon>>;

/// The API's routes.
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/domains", post(add_domain))
        .route("/v1/domains/{name}", delete(remove_domain))
        .route("/v1/domains/{name}/reconfigure", post(reconfigure))
        .route("/v1/domains/{name}/engine", post(swap_engine))
        .route("/v1/domains/{name}/engine/history", get(engine_history))
        .route("/v1/domains/{name}/engine/describe", get(describe_engine))
        .route("/v1/domains/{name}/engine/rollback", post(rollback_engine))
        .route("/v1/domains/{name}/engine/resume", post(resume_engine))
        .route("/v1/domains/{name}/scenario", get(scenario))
        .route("/v1/domains/{name}/explain", get(explain))
        .route(
            "/v1/domains/{name}/shadows",
            get(shadow_report).post(add_shadow).delete(stop_shadows),
        )
        .route("/v1/domains/{name}/shadows/{id}", delete(stop_shadow))
        .route("/v1/domains/{name}/shadows/promote", post(promote_shadow))
        .route("/v1/domains/{name}/sensors/{sensor}", post(push_reading))
        .route(
            "/v1/domains/{name}/instances/{id}/protect",
            post(protect_instance),
        )
        .route(
            "/v1/domains/{name}/instances/{id}/destroy",
            post(destroy_instance),
        )
        .route("/v1/domains/{name}/deployable", post(update_deployable))
        .route("/v1/domains/{name}/refresh", post(refresh_domain))
        .route("/v1/cluster", get(cluster_status))
        .route("/v1/cluster/events/{name}", get(cluster_events))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/v1/events", get(events))
        .route("/v1/terminate", post(terminate))
        .route("/v1/stop", post(stop))
        .route("/v1/runs", post(boot_run))
        .route("/v1/runs/{run}", get(run_status))
        .route("/v1/runs/{run}/terminate", post(terminate_run))
        .route("/v1/clean", post(clean))
        .route("/v1/domains/{name}/series", get(series))
        .route("/", get(dashboard::page))
        .route("/app.js", get(dashboard::script))
        .route("/config-form.js", get(dashboard::config_form))
        .route("/style.css", get(dashboard::style))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route_layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            forward,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            count_request,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response(guard_headers))
        .with_state(daemon)
}

/// Headers that keep a browser from framing the API's pages or running what they did not
/// ship: the dashboard loads only its own script and style.
async fn guard_headers(mut res: Response) -> Response {
    use axum::http::header::{
        HeaderValue, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
        X_FRAME_OPTIONS,
    };
    let h = res.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; \
             base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

/// Makes every refusal a JSON `{"error"}`, including those of axum's own extractors and router
/// (a path segment or query that does not parse, an unknown route, a wrong method), which
/// answer in plain text or with an empty body.
async fn json_errors(res: Response) -> Response {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    let status = res.status();
    let json = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let error = match text.is_empty() {
        true => status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase(),
        false => text,
    };
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, "application/json".parse().unwrap());
    let body = json!({ "error": error }).to_string();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Serves the API on `<state dir>/epu.sock`, and on the daemon's TCP listener if it has one,
/// until the daemon's shutdown is notified.
pub async fn serve(daemon: Arc<Daemon>) -> Result<()> {
    let tcp = daemon.tcp.lock().unwrap_or_else(|e| e.into_inner()).take();
    let tcp_server = tcp.map(|listener| tokio::spawn(serve_tcp(daemon.clone(), listener)));
    let path = daemon.state_dir.join("epu.sock");
    // The state dir's lock is ours, so a socket file left there is from a dead daemon.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("listening on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let d = daemon.clone();
    server::serve(listener, router(daemon), UNIX_MAX_CONNECTIONS, async move {
        d.stopping().await
    })
    .await;
    let _ = std::fs::remove_file(&path);
    if let Some(server) = tcp_server {
        server.await??;
    }
    Ok(())
}

/// Counts every request to a route by its route (the pattern, with `:name` for each
/// parameter, not the path) and status.
async fn count_request(State(d): Shared, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().replace('{', ":").replace('}', ""))
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    d.services
        .metrics
        .api_requests
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .inc();
    resp
}

/// Prometheus metrics, in the text exposition format.
async fn metrics_text(State(d): Shared) -> Result<Response, ApiError> {
    let domains = d.own_status().await?;
    let text = metrics::render(&d.services.metrics, &domains, d.node_state());
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// A domain's events as the cluster's record keeps them.
async fn cluster_events(State(d): Shared, Path(name): Path<String>) -> Reply {
    Ok(Json(json!({"events": d.cluster_events(&name).await?})))
}

/// The cluster's nodes and who owns what.
async fn cluster_status(State(d): Shared) -> Reply {
    Ok(Json(d.cluster_status().await?))
}

/// Liveness: the daemon answers.
async fn healthz() -> Reply {
    Ok(Json(json!({"status": "ok"})))
}

/// Readiness: the store answers and every domain is loaded.
async fn readyz(State(d): Shared) -> Reply {
    match d.ready().await {
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(why) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, why)),
    }
}
