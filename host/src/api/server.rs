//! The API's HTTP server, with every connection bounded: at most `max` at once per listener (one
//! more is closed as soon as it is accepted), headers within
//! [`HEADER_TIMEOUT`] (which is also how long a kept-alive connection may sit idle between
//! requests), bodies within [`BODY_TIMEOUT`](super::BODY_TIMEOUT). A slow or idle client thus
//! holds a slot for seconds, not forever, and cannot use up the daemon's fds.

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may wait for its next request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// How long open connections get to finish when the daemon stops.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` with at most `max` connections at once until `stop` resolves;
/// then lets open connections finish their requests for up to [`DRAIN`].
pub async fn serve<L>(mut listener: L, app: Router, max: usize, stop: impl Future<Output = ()>)
where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let slots = Arc::new(Semaphore::new(max.max(1)));
    let (closing, closed) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (io, addr) = tokio::select! {
            _ = &mut stop => break,
            conn = listener.accept() => conn,
        };
        // Over the cap, a connection is closed at once rather than left in the backlog.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(io);
            continue;
        };
        let app = app.clone();
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(addr.clone()));
                app.clone().oneshot(req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES.max(8192))
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = closed.wait_for(|c| *c) => conn.as_mut().graceful_shutdown(),
            }
            let _ = tokio::time::timeout(DRAIN, conn).await;
        });
    }
    closing.send_replace(true);
    // Every connection holds a slot: all slots back means all connections done.
    let all = u32::try_from(max.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), slots.acquire_many(all)).await;
}
