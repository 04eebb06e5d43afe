//! The CLI's HTTP client for the daemon's unix socket.

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(state_dir: &Path) -> Client {
        Client {
            socket: state_dir.join("epu.sock"),
        }
    }

    /// A client of the daemon whose API socket is `socket`.
    pub fn at_socket(socket: PathBuf) -> Client {
        Client { socket }
    }

    /// Whether the socket takes a connection.
    pub async fn reachable(&self) -> bool {
        tokio::net::UnixStream::connect(&self.socket).await.is_ok()
    }

    /// Whether a daemon answers on the socket.
    pub async fn is_up(&self) -> bool {
        self.get("/v1/status").await.is_ok()
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.call(Method::DELETE, path, None).await
    }

    /// One request. A non-2xx answer becomes an error carrying the daemon's message.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let dir = self.socket.parent().unwrap_or(Path::new("."));
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|_| {
                anyhow!(
                    "no epu daemon is running on {} (start one with `epu daemon` or `epu boot PLAN`)",
                    dir.display()
                )
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "epu")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let resp = sender
            .send_request(req)
            .await
            .context("talking to the daemon")?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_string()));
        if !status.is_success() {
            let msg = value
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| value.as_str().unwrap_or_default().to_string());
            bail!("{msg}");
        }
        Ok(value)
    }
}
