//! The HTTP/JSON API on the state dir's unix socket (mode 0600): the CLI's and the workers'
//! way into the daemon. With `--listen`, the same API is served on TCP too, behind tokens
//! ([`crate::tokens`]) and a body size limit, for workers on other machines and remote tools.
//!
//! Errors are `{"error": "..."}` with 400 (bad input, malformed JSON), 401 (no or wrong
//! token), 404 (unknown domain or node), 409 (conflict), 413 (body too large) or 500.

mod dashboard;
mod metrics;
mod server;

use crate::daemon::{Daemon, OpError};
use crate::health::{HeartbeatError, Reported};
use crate::model::DomainSpec;
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
        .route("/v1/domains/{name}/engine/rollback", post(rollback_engine))
        .route("/v1/domains/{name}/engine/resume", post(resume_engine))
        .route("/v1/domains/{name}/scenario", get(scenario))
        .route("/v1/domains/{name}/sensors/{sensor}", post(push_reading))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/v1/events", get(events))
        .route("/v1/terminate", post(terminate))
        .route("/v1/runs", post(boot_run))
        .route("/v1/runs/{run}", get(run_status))
        .route("/v1/runs/{run}/terminate", post(terminate_run))
        .route("/v1/clean", post(clean))
        .route("/v1/domains/{name}/series", get(series))
        .route("/", get(dashboard::page))
        .route("/app.js", get(dashboard::script))
        .route("/style.css", get(dashboard::style))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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

/// Serves the API on TCP: every request needs a bearer token (a worker's token only for its
/// own heartbeats), and bodies are limited to [`MAX_BODY`].
async fn serve_tcp(daemon: Arc<Daemon>, listener: std::net::TcpListener) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = router(daemon.clone())
        .layer(axum::middleware::from_fn_with_state(
            daemon.clone(),
            require_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    let d = daemon.clone();
    let max = daemon.tcp_max_connections;
    server::serve(listener, app, max, async move { d.stopping().await }).await;
    Ok(())
}

/// A worker's token, for the heartbeat handler to match against the instance.
#[derive(Clone)]
struct WorkerToken(String);

/// Lets a request through with the admin token, or on to the heartbeat handler with any
/// other token (which checks it); refuses it with 401 and an event otherwise.
async fn require_token(
    State(d): Shared,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_string);
    let path = req.uri().path().to_string();
    let open = path == "/healthz"
        || path == "/readyz"
        || dashboard::ASSETS.contains(&path.as_str())
        || (path == "/metrics" && d.metrics_open);
    match token {
        _ if open => next.run(req).await,
        Some(t) if d.tokens.is_admin(&t) => next.run(req).await,
        Some(t) if path == "/v1/heartbeat" => {
            req.extensions_mut().insert(WorkerToken(t));
            next.run(req).await
        }
        Some(_) => refuse(&d, peer, &path, "a wrong token").into_response(),
        None => refuse(&d, peer, &path, "no token").into_response(),
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any case, as RFC 7235
/// has it).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// A 401. Refusals are counted in `epu_api_refused_total` and logged at most once per
/// [`crate::tokens::REFUSAL_LOG_EVERY`]; nothing of the request is stored.
fn refuse(d: &Daemon, peer: std::net::SocketAddr, path: &str, why: &str) -> ApiError {
    d.services
        .metrics
        .api_refused
        .with_label_values(&[why])
        .inc();
    if let Some(more) = d.refusals.log_now() {
        let path: String = path.chars().take(80).collect();
        tracing::warn!(%peer, path = %path.escape_debug(), reason = why, suppressed = more,
            "refused a TCP API request");
    }
    ApiError(StatusCode::UNAUTHORIZED, format!("refused: {why}"))
}

#[derive(Deserialize)]
struct StatusQuery {
    domain: Option<String>,
}

async fn status(State(d): Shared, Query(q): Query<StatusQuery>) -> Reply {
    let domains = d.status(q.domain.as_deref()).await?;
    let store = &d.services.store;
    let mut held = Vec::new();
    for (name, error) in store.held_domains()? {
        if q.domain.as_ref().is_none_or(|only| *only == name) {
            let instances = store.live_instances(Some(&name))?.len();
            held.push(json!({"name": name, "error": error, "instances": instances}));
        }
    }
    Ok(Json(json!({ "domains": domains, "held": held })))
}

async fn add_domain(State(d): Shared, ApiJson(spec): ApiJson<DomainSpec>) -> Reply {
    let name = spec.name.clone();
    d.add_domain(spec).await?;
    Ok(Json(json!({ "added": name })))
}

async fn remove_domain(State(d): Shared, Path(name): Path<String>) -> Reply {
    d.remove_domain(&name).await?;
    Ok(Json(json!({ "removed": name })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconfigureBody {
    config: Map<String, Value>,
}

async fn reconfigure(
    State(d): Shared,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<ReconfigureBody>,
) -> Reply {
    let version = d.reconfigure(&name, b.config).await?;
    Ok(Json(json!({ "domain": name, "config_version": version })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwapBody {
    /// A bundled engine's name or the path of a `.wasm` file on the daemon's machine.
    engine: String,
    /// The domain's new config, for an engine that takes other keys.
    config: Option<serde_json::Map<String, Value>>,
}

async fn swap_engine(
    State(d): Shared,
    Path(name): Path<String>,
    ApiJson(b): ApiJson<SwapBody>,
) -> Reply {
    let version = d.swap_engine(&name, &b.engine, b.config).await?;
    Ok(Json(json!({ "domain": name, "engine_version": version })))
}

async fn engine_history(State(d): Shared, Path(name): Path<String>) -> Reply {
    Ok(Json(
        json!({ "domain": name, "versions": d.engine_history(&name)? }),
    ))
}

async fn rollback_engine(State(d): Shared, Path(name): Path<String>) -> Reply {
    let version = d.rollback_engine(&name).await?;
    Ok(Json(json!({ "domain": name, "engine_version": version })))
}

async fn resume_engine(State(d): Shared, Path(name): Path<String>) -> Reply {
    d.resume_engine(&name).await?;
    Ok(Json(json!({ "domain": name, "resumed": true })))
}

async fn scenario(State(d): Shared, Path(name): Path<String>) -> Reply {
    let (text, steps) = d.export_scenario(&name).await?;
    Ok(Json(
        json!({ "domain": name, "steps": steps, "scenario": text }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingBody {
    value: f64,
}

async fn push_reading(
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
struct HeartbeatBody {
    node_id: String,
    #[serde(default = "ok")]
    state: Reported,
    error: Option<String>,
}

fn ok() -> Reported {
    Reported::Ok
}

async fn heartbeat(
    State(d): Shared,
    peer: Option<axum::Extension<ConnectInfo<std::net::SocketAddr>>>,
    worker: Option<axum::Extension<WorkerToken>>,
    ApiJson(b): ApiJson<HeartbeatBody>,
) -> Reply {
    if let (Some(axum::Extension(WorkerToken(t))), Some(axum::Extension(ConnectInfo(peer)))) =
        (worker, peer)
    {
        if !d.tokens.is_worker(&t, &b.node_id) {
            let why = "a token that is not this instance's";
            return Err(refuse(&d, peer, "/v1/heartbeat", why));
        }
    }
    match d.health.heartbeat(&b.node_id, b.state, b.error.as_deref()) {
        Ok(()) => Ok(Json(json!({ "ok": true }))),
        Err(HeartbeatError::UnknownNode(n)) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown node '{n}'"),
        )),
        Err(HeartbeatError::Store(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
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

fn default_limit() -> u32 {
    1000
}

async fn events(State(d): Shared, Query(q): Query<EventsQuery>) -> Reply {
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

async fn terminate(State(d): Shared) -> Reply {
    d.terminate().await?;
    Ok(Json(json!({ "terminated": true })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BootBody {
    /// The plan's directory or file, an absolute path on the daemon's machine.
    plan: std::path::PathBuf,
    /// The run's name (default: the plan's).
    name: Option<String>,
}

/// Boots a run. The boot goes on to its end (or its rollback) even if the client goes away.
async fn boot_run(State(d): Shared, ApiJson(b): ApiJson<BootBody>) -> Reply {
    let task = tokio::spawn(async move { d.boot_run(&b.plan, b.name.as_deref()).await });
    let status = task.await.map_err(|e| anyhow::anyhow!(e))??;
    Ok(Json(status))
}

#[derive(Deserialize)]
struct RunQuery {
    /// Re-run the services' readiness checks.
    #[serde(default)]
    check: bool,
}

async fn run_status(State(d): Shared, Path(run): Path<String>, Query(q): Query<RunQuery>) -> Reply {
    Ok(Json(d.run_status(&run, q.check).await?))
}

async fn terminate_run(State(d): Shared, Path(run): Path<String>) -> Reply {
    let task = tokio::spawn(async move { d.terminate_run(&run).await });
    Ok(Json(task.await.map_err(|e| anyhow::anyhow!(e))??))
}

async fn clean(State(d): Shared) -> Reply {
    Ok(Json(d.clean().await?))
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
    let domains = d.status(None).await?;
    let text = metrics::render(&d.services.metrics, &domains);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
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

#[derive(Deserialize)]
struct SeriesQuery {
    /// How far back, in seconds.
    #[serde(default = "default_window")]
    seconds: f64,
}

fn default_window() -> f64 {
    3600.0
}

/// A domain's live instances by state over the window, as `[time, counts]` with the count
/// at the window's start first, and its kept sensor readings in the window.
async fn series(State(d): Shared, Path(name): Path<String>, Query(q): Query<SeriesQuery>) -> Reply {
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
    Ok(Json(json!({
        "groups": crate::analysis::STATE_GROUPS,
        "counts": counts,
        "readings": readings,
        "since": since,
        "now": now,
    })))
}
