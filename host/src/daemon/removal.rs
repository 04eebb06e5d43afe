//! Removals: of a domain (held or not), of everything at `epu terminate`, and the finishing
//! of those a crash cut short. Each is recorded before it starts, so a restart launches
//! nothing for what was being removed and finishes the removal.

use super::{unknown_domain, Daemon, OpError};
use crate::model::{DomainSpec, InstanceState};
use anyhow::Result;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The store flag of a daemon whose terminate is under way.
pub(super) const TERMINATING: &str = "terminating";

/// How long a terminate waits for the state dir's last processes to die once killed.
const REAP_WAIT: Duration = Duration::from_secs(10);

impl Daemon {
    /// Finishes what a crash cut short: a terminate of the whole daemon, the terminates of
    /// runs, and the removals of domains. Each goes on from where it was, launching nothing.
    pub(super) async fn finish_removals(
        self: Arc<Self>,
        terminating: bool,
        runs: Vec<String>,
        domains: Vec<String>,
    ) {
        let result = async {
            if terminating {
                tracing::info!("finishing the terminate a restart interrupted");
                return self.terminate().await;
            }
            for run in &runs {
                tracing::info!("finishing the terminate of run '{run}'");
                self.terminate_run(run).await?;
            }
            for name in &domains {
                if self.services.store.domain(name)?.is_some() {
                    tracing::info!("finishing the removal of domain '{name}'");
                    self.remove_domain(name).await?;
                }
            }
            Ok(())
        };
        if let Err(e) = result.await {
            tracing::error!("finishing an interrupted terminate or removal: {e:#}");
            let detail = serde_json::json!({"error": format!("{e:#}")});
            let _ = self
                .services
                .store
                .event(None, None, "finish-failed", detail);
        }
    }

    /// Removes a domain: stops its controller, destroys its workers and waits for them to go.
    /// The removal is recorded first, so a crash in the middle is finished at the next start.
    pub async fn remove_domain(&self, name: &str) -> Result<(), OpError> {
        let Some(record) = self.services.store.domain(name)? else {
            if let Some(e) = self.elsewhere(name).await {
                return Err(e);
            }
            return self.remove_held(name).await;
        };
        self.removing.lock().await.insert(name.to_string());
        self.services.store.set_removing(name)?;
        let handle = self.controllers.lock().await.remove(name);
        if let Some(handle) = handle {
            handle.stop().await;
        }
        self.destroy_all(&record.spec).await?;
        self.services.provisioner.detach(name);
        self.services.store.delete_domain(name)?;
        self.removed_from_cluster(name).await
    }

    /// Removes a held domain (one whose stored spec is bad): its workers get SIGTERM, then
    /// SIGKILL after the default grace, and its record goes.
    async fn remove_held(&self, name: &str) -> Result<(), OpError> {
        let store = &self.services.store;
        if !store.held_domains()?.iter().any(|(n, _)| n == name) {
            return Err(unknown_domain(name));
        }
        store.set_removing(name)?;
        let live = store.live_instances(Some(name))?;
        let workers: Vec<(i32, u64)> = live.iter().filter_map(|i| i.pid.zip(i.pid_start)).collect();
        use crate::provisioner::process::os::{liveness, signal_worker, Liveness};
        use nix::sys::signal::Signal;
        for &(pid, start) in &workers {
            signal_worker(pid, start, Signal::SIGTERM);
        }
        let grace = Duration::from_secs_f64(crate::model::default_grace());
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline
            && workers
                .iter()
                .any(|&(p, s)| liveness(p, s) != Liveness::Gone)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for &(pid, start) in &workers {
            signal_worker(pid, start, Signal::SIGKILL);
        }
        store.delete_domain(name)?;
        Ok(())
    }

    /// Destroys every live instance of a domain and waits until none is left.
    async fn destroy_all(&self, spec: &DomainSpec) -> Result<()> {
        let store = &self.services.store;
        let domain = spec.name.as_str();
        for inst in store.live_instances(Some(domain))? {
            if inst.state < InstanceState::Terminating {
                self.services.provisioner.destroy(&inst, spec)?;
            }
        }
        let deadline = tokio::time::Instant::now() + self.services.provisioner.stop_within(spec);
        loop {
            let left = store.live_instances(Some(domain))?;
            if left.is_empty() {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} instance(s) of '{domain}' did not stop: {}",
                left.len(),
                left.iter()
                    .map(|i| i.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Terminates every run that is not terminated yet (workers, then services), removes
    /// every other domain (destroying its workers), then asks the daemon to stop.
    pub async fn terminate(&self) -> Result<(), OpError> {
        if self.cluster.is_some() {
            return Err(OpError::Invalid(
                "a node of a cluster does not terminate the cluster's domains: remove them with \
                 `epu domain remove`, or stop this node with SIGTERM (its domains move to the \
                 other nodes, and their workers run on)"
                    .into(),
            ));
        }
        let _ops = self.run_ops.lock().await;
        // Recorded first: a crash in the middle leaves the daemon terminating, and the next
        // start finishes the terminate instead of launching anything.
        self.services.store.set_flag(TERMINATING, true)?;
        for run in self.services.store.runs()? {
            if run.state != crate::store::RunState::Terminated {
                self.terminate_run_locked(&run.name).await?;
            }
        }
        let names: Vec<String> = self
            .services
            .store
            .domains()?
            .into_iter()
            .map(|d| d.spec.name)
            .collect();
        let held = self.services.store.held_domains()?;
        for name in names.into_iter().chain(held.into_iter().map(|(n, _)| n)) {
            self.remove_domain(&name).await?;
        }
        self.reap_everything().await?;
        self.services.store.set_flag(TERMINATING, false)?;
        self.services
            .store
            .event(None, None, "terminated", Value::Null)?;
        self.request_shutdown();
        Ok(())
    }

    /// Kills every process of the state dir that is left (a worker's or a service's child
    /// that outlived it), and succeeds only once none is.
    async fn reap_everything(&self) -> Result<(), OpError> {
        use crate::provisioner::process::os as process;
        let left = || {
            let mut pids: Vec<i32> = process::scan_worker_processes(&self.state_dir)
                .into_iter()
                .chain(process::scan_services(&self.state_dir))
                .map(|(pid, _, _)| pid)
                .collect();
            pids.sort_unstable();
            pids
        };
        let deadline = tokio::time::Instant::now() + REAP_WAIT;
        loop {
            let pids = left();
            if pids.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(OpError::Conflict(format!(
                    "{} process(es) of this state dir would not die: pids {pids:?}",
                    pids.len()
                )));
            }
            for &pid in &pids {
                process::kill(pid);
            }
            let detail = serde_json::json!({"pids": pids});
            self.services
                .store
                .event(None, None, "leftovers-killed", detail)?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
