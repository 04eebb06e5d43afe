//! In a cluster, a request for a domain another node owns is forwarded to that node's TCP
//! listener with the cluster's token, and its answer is passed back as it is. A forwarded
//! request is never forwarded again.

use super::*;
use axum::body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Marks a request that a node forwarded; its value is that node's name.
const FORWARDED: &str = "x-epu-forwarded-by";
/// The largest answer passed back (a scenario export can be large).
const MAX_ANSWER: usize = 64 << 20;
/// How long the owner may take to answer (a swap compiles, then calls the engine twice).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// Forwards a request for a domain this node does not run to the domain's owner.
pub(super) async fn forward(State(d): Shared, req: Request, next: Next) -> Response {
    let Some(name) = domain_of(req.uri()) else {
        return next.run(req).await;
    };
    if was_forwarded(req.headers()) {
        return next.run(req).await;
    }
    let Some(target) = d.forward_target(&name).await else {
        return next.run(req).await;
    };
    let req = if req.method() == axum::http::Method::POST && req.uri().path().ends_with("/engine") {
        match stage_swap(&d, req).await {
            Ok(req) => req,
            Err(e) => return e.into_response(),
        }
    } else {
        req
    };
    relay(req, &target).await
}

/// An `engine swap` names a file on this machine, which the owner may not have: the engine is
/// read here, checked, and staged in the cluster's record, and the request names its sha256.
async fn stage_swap(d: &Daemon, req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
    let mut swap: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))?;
    if let (Some(engine), None) = (swap["engine"].as_str(), swap.get("engine_sha")) {
        let sha = d.stage_engine(engine).await?;
        swap["engine_sha"] = Value::String(sha);
    }
    Ok(Request::from_parts(parts, Body::from(swap.to_string())))
}

/// Whether a node forwarded this request (it is then never forwarded again).
pub(super) fn was_forwarded(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(FORWARDED)
}

/// Passes a POST of `body` to `path` on to the target node, and its answer back.
pub(super) async fn relay_json(
    target: &crate::daemon::ForwardTarget,
    path: &str,
    body: &Value,
) -> Response {
    let req = axum::http::Request::builder()
        .method(axum::http::Method::POST)
        .uri(path)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a request of a path and a body");
    relay(req, target).await
}

/// Passes a request on to the target node, and its answer (or what went wrong) back.
async fn relay(req: Request, target: &crate::daemon::ForwardTarget) -> Response {
    match tokio::time::timeout(FORWARD_TIMEOUT, proxy(req, target)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => ApiError(
            StatusCode::BAD_GATEWAY,
            format!(
                "forwarding to node '{}' at {}: {e:#}",
                target.node, target.addr
            ),
        )
        .into_response(),
        Err(_) => ApiError(
            StatusCode::GATEWAY_TIMEOUT,
            format!("node '{}' did not answer in time", target.node),
        )
        .into_response(),
    }
}

/// The domain a request is for: `/v1/domains/NAME[/...]`, or `/v1/events?domain=NAME` (a
/// domain's log is its owner's).
fn domain_of(uri: &axum::http::Uri) -> Option<String> {
    #[derive(Deserialize)]
    struct Filter {
        domain: Option<String>,
    }
    let name = match uri.path() {
        "/v1/events" => Query::<Filter>::try_from_uri(uri).ok()?.0.domain?,
        path => path
            .strip_prefix("/v1/domains/")?
            .split('/')
            .next()?
            .to_string(),
    };
    (!name.is_empty()).then_some(name)
}

async fn proxy(req: Request, target: &crate::daemon::ForwardTarget) -> Result<Response> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY).await?;
    let stream = tokio::net::TcpStream::connect(&target.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = axum::http::Request::builder()
        .method(parts.method)
        .uri(path)
        .header("host", target.addr.as_str())
        .header(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {}", target.token),
        )
        .header(FORWARDED, target.me.as_str());
    if let Some(t) = parts.headers.get(axum::http::header::CONTENT_TYPE) {
        out = out.header(axum::http::header::CONTENT_TYPE, t);
    }
    let answer = sender.send_request(out.body(Full::new(body))?).await?;
    let (parts, body) = answer.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_ANSWER);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
        .to_bytes();
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
