//! Clients of every etcd member, tried in turn: a request that a member cannot answer (it is
//! down, paused, or cut off from the quorum) goes to the next one, so that losing one member
//! of three changes nothing.
//!
//! One balanced client over all endpoints keeps sending to a member that accepts connections
//! but never answers (a paused process, a partition), so each member gets a client of its
//! own. Requests ask for a leader: a member that lost the quorum refuses at once instead of
//! waiting.

use super::membership::ClusterError;
use etcd_client::{Client, ConnectOptions};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A client per member, and the member that answered last.
#[derive(Clone)]
pub struct Pool {
    clients: Arc<Vec<Client>>,
    current: Arc<AtomicUsize>,
}

impl Pool {
    /// Clients of every endpoint; each request waits at most `timeout` for a member. Nothing
    /// is connected until the first request.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Pool, ClusterError> {
        let mut clients = Vec::new();
        for e in endpoints {
            let options = ConnectOptions::new()
                .with_connect_timeout(timeout)
                .with_timeout(timeout)
                .with_keep_alive(timeout, timeout)
                .with_require_leader(true);
            clients.push(Client::connect([e], Some(options)).await?);
        }
        if clients.is_empty() {
            return Err(ClusterError::Etcd(etcd_client::Error::InvalidArgs(
                "no etcd endpoint given".into(),
            )));
        }
        Ok(Pool {
            clients: Arc::new(clients),
            current: Arc::default(),
        })
    }

    /// The client of the member that answered last, and its index.
    pub fn client(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::Acquire) % self.clients.len();
        (i, self.clients[i].clone())
    }

    /// Moves on from member `i`, unless another request did already.
    pub fn failed(&self, i: usize) {
        let next = (i + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Runs a request on each member in turn until one answers.
    pub async fn run<T, F, Fut>(&self, request: F) -> Result<T, ClusterError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for _ in 0..self.clients.len() {
            let (i, client) = self.client();
            match request(client).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.failed(i);
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one member was tried").into())
    }
}
