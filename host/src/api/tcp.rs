//! The TCP listener: every request needs a bearer token, and a worker's token is good only
//! for its own heartbeats. Refusals are counted and logged at a bounded rate.

use super::*;

/// Serves the API on TCP: every request needs a bearer token (a worker's token only for its
/// own heartbeats), and bodies are limited to [`MAX_BODY`].
pub(super) async fn serve_tcp(daemon: Arc<Daemon>, listener: std::net::TcpListener) -> Result<()> {
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
pub(super) struct WorkerToken(pub(super) String);

/// Lets a request through with the admin token, or on to the heartbeat handler with any
/// other token (which checks it); refuses it with 401 and an event otherwise.
pub(super) async fn require_token(
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
pub(super) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// A 401. Refusals are counted in `epu_api_refused_total` and logged at most once per
/// [`crate::tokens::REFUSAL_LOG_EVERY`]; nothing of the request is stored.
pub(super) fn refuse(d: &Daemon, peer: std::net::SocketAddr, path: &str, why: &str) -> ApiError {
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
