//! The `ec2` driver: workers are instances on an EC2-compatible cloud.
//!
//! - A launch is recorded (`requesting`) before anything is asked of the cloud, as for every
//!   driver. `RunInstances` carries the instance id as client token and the tags
//!   `epu:domain`, `epu:instance` and `epu:run`. Before every try, and after a restart, the
//!   instance is first looked for by its tag, so a lost answer or a crash never launches it
//!   twice.
//! - One poller per domain maps `DescribeInstances` to instance states (pending → pending,
//!   running → started, shutting-down → terminating, terminated → terminated); the worker's
//!   first heartbeat makes it running. An instance the cloud has not listed for
//!   `missing_after_s` after its launch is failed.
//! - The poller also reaps: an instance tagged with the domain that no live instance of the
//!   store owns is terminated after `reap_after_s`.

pub mod cloud;
mod poller;

use super::{wrong_driver, Check, Driver, DriverContext};
use crate::model::{DomainSpec, Ec2Deployable, InstanceState};
use crate::store::{InstanceRecord, StateUpdate, Store};
use crate::tokens::Tokens;
use crate::wakeups::Wakeups;
use aws_sdk_ec2::Client;
use cloud::{CloudError, LaunchRequest, TAG_INSTANCE};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a cloud may take to report an instance terminated, beyond one poll.
const STOP_WITHIN: Duration = Duration::from_secs(300);

/// The deployable of a domain this driver was given.
fn deployable(spec: &DomainSpec) -> anyhow::Result<&Ec2Deployable> {
    spec.deployable
        .as_ec2()
        .ok_or_else(|| wrong_driver("ec2", spec))
}

impl Driver for Arc<Ec2Driver> {
    fn name(&self) -> &'static str {
        "ec2"
    }

    fn check<'a>(&'a self, spec: &'a DomainSpec) -> Check<'a> {
        Box::pin(async move {
            let dep = deployable(spec).map_err(|e| e.to_string())?;
            self.check_deployable(dep).await
        })
    }

    fn attach(&self, spec: &DomainSpec) {
        if let Ok(dep) = deployable(spec) {
            self.watch_domain(spec, dep);
        }
    }

    fn detach(&self, domain: &str) {
        self.unwatch_domain(domain);
    }

    fn launch(&self, inst: &InstanceRecord, spec: &DomainSpec) -> anyhow::Result<()> {
        self.start_launch(inst, spec, deployable(spec)?);
        Ok(())
    }

    fn destroy(&self, inst: &InstanceRecord, spec: &DomainSpec) -> anyhow::Result<()> {
        self.start_destroy(inst, deployable(spec)?);
        Ok(())
    }

    fn stop_within(&self, spec: &DomainSpec) -> Duration {
        let poll = deployable(spec).map(|e| e.poll_ms).unwrap_or_default();
        STOP_WITHIN + Duration::from_millis(poll)
    }

    /// Terminates the instance again: it still reports after its end.
    fn end_zombie(&self, inst: &InstanceRecord, spec: &DomainSpec) -> Option<serde_json::Value> {
        let dep = deployable(spec).ok()?;
        self.terminate(inst.clone(), dep.clone());
        Some(json!({"cloud_id": inst.cloud_id}))
    }
}

/// Launches, destroys and watches the instances of every `ec2` domain.
pub struct Ec2Driver {
    store: Arc<Store>,
    wakeups: Arc<Wakeups>,
    tokens: Arc<Tokens>,
    /// The heartbeat URL of the daemon's TCP listener, if it has one.
    heartbeat_url: Option<String>,
    clients: tokio::sync::Mutex<HashMap<(String, Option<String>), Client>>,
    /// Instances whose launch is under way.
    in_flight: Mutex<HashSet<String>>,
    /// The poller of each domain.
    watchers: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl Ec2Driver {
    /// Makes the driver; clients are made on first use, per region and endpoint.
    pub fn new(ctx: &DriverContext) -> Arc<Ec2Driver> {
        Arc::new(Ec2Driver {
            store: ctx.store.clone(),
            wakeups: ctx.wakeups.clone(),
            tokens: ctx.tokens.clone(),
            heartbeat_url: ctx.heartbeat_url.clone(),
            clients: Default::default(),
            in_flight: Default::default(),
            watchers: Default::default(),
        })
    }

    /// Checks that the driver can serve a deployable: it needs credentials, and its workers
    /// need somewhere to send heartbeats.
    async fn check_deployable(&self, dep: &Ec2Deployable) -> Result<(), String> {
        if dep.heartbeat_url.is_none() && self.heartbeat_url.is_none() {
            return Err(
                "an ec2 domain's workers send heartbeats over TCP: start the daemon \
                        with --listen ADDR (or EPU_LISTEN), or give the deployable a heartbeat_url"
                    .into(),
            );
        }
        if dep.max_attempts == 0 || dep.poll_ms == 0 {
            return Err("ec2: max_attempts and poll_ms must be above 0".into());
        }
        cloud::check_credentials(dep).await
    }

    async fn client(&self, dep: &Ec2Deployable) -> Client {
        let key = (dep.region.clone(), dep.endpoint_url.clone());
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return c.clone();
        }
        let c = cloud::client(dep).await;
        clients.insert(key, c.clone());
        c
    }

    fn event(&self, domain: &str, instance: Option<&str>, kind: &str, detail: serde_json::Value) {
        if let Err(e) = self.store.event(Some(domain), instance, kind, detail) {
            tracing::error!(domain, "recording a {kind} event: {e:#}");
        }
    }

    fn advance(&self, inst: &InstanceRecord, state: InstanceState, update: StateUpdate) {
        match self.store.advance(&inst.id, state, update) {
            Ok(Some(_)) => self.wakeups.wake(&inst.domain),
            Ok(None) => {}
            Err(e) => tracing::error!(instance = inst.id, "recording a state: {e:#}"),
        }
    }

    /// The user data of an instance: the deployable's template with its fields filled.
    fn user_data(&self, inst: &InstanceRecord, dep: &Ec2Deployable) -> String {
        let url = dep
            .heartbeat_url
            .clone()
            .or_else(|| self.heartbeat_url.clone())
            .unwrap_or_default();
        dep.user_data
            .replace("{{node_id}}", &inst.id)
            .replace("{{domain}}", &inst.domain)
            .replace("{{heartbeat_url}}", &url)
            .replace("{{token}}", &self.tokens.worker_token(&inst.id))
    }

    /// Starts launching a recorded instance, unless its launch is under way already.
    fn start_launch(
        self: &Arc<Self>,
        inst: &InstanceRecord,
        spec: &DomainSpec,
        dep: &Ec2Deployable,
    ) {
        if !self.in_flight.lock().unwrap().insert(inst.id.clone()) {
            return;
        }
        let me = self.clone();
        let (inst, dep, run) = (inst.clone(), dep.clone(), spec.run.clone());
        tokio::spawn(async move {
            let result = me.try_launch(&inst, &dep, run.as_deref()).await;
            match result {
                Ok(cloud_id) => me.launched(&inst, &dep, &cloud_id).await,
                Err(e) if e.retryable => {
                    // The poller tries again.
                    me.event(
                        &inst.domain,
                        Some(&inst.id),
                        "cloud-error",
                        json!({"op": e.op, "error": e.message}),
                    );
                }
                Err(e) => {
                    let why = format!("the cloud refused the launch: {e}");
                    me.advance(&inst, InstanceState::Failed, StateUpdate::error(why));
                }
            }
            me.in_flight.lock().unwrap().remove(&inst.id);
        });
    }

    /// Finds the instance by its tag or launches it, with bounded retries; its cloud id.
    async fn try_launch(
        &self,
        inst: &InstanceRecord,
        dep: &Ec2Deployable,
        run: Option<&str>,
    ) -> Result<String, CloudError> {
        let client = self.client(dep).await;
        let req = LaunchRequest {
            instance_id: &inst.id,
            domain: &inst.domain,
            run,
            user_data: self.user_data(inst, dep),
        };
        let mut last: Option<CloudError> = None;
        for attempt in 0..dep.max_attempts {
            if attempt > 0 {
                let mut wait = cloud::backoff(attempt);
                if last.as_ref().is_some_and(|e| e.timed_out) {
                    // The call that timed out may still reach the cloud: give it time to, so
                    // that the look by tag below sees what it did.
                    wait = wait.max(Duration::from_millis(2 * dep.call_timeout_ms));
                }
                tokio::time::sleep(wait).await;
            }
            match cloud::describe_tagged(&client, TAG_INSTANCE, &inst.id).await {
                Ok(found) => {
                    if let Some(c) = found.first() {
                        return Ok(c.id.clone());
                    }
                }
                Err(e) if e.retryable => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
            match cloud::run_instance(&client, dep, &req).await {
                Ok(id) => return Ok(id),
                Err(e) if e.retryable => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one try"))
    }

    /// Records a launched instance; if it was destroyed meanwhile, terminates it.
    async fn launched(
        self: &Arc<Self>,
        inst: &InstanceRecord,
        dep: &Ec2Deployable,
        cloud_id: &str,
    ) {
        if let Err(e) = self.store.set_cloud_id(&inst.id, cloud_id) {
            tracing::error!(instance = inst.id, "recording the cloud id: {e:#}");
        }
        self.advance(inst, InstanceState::Requested, StateUpdate::default());
        if let Ok(Some(now)) = self.store.instance(&inst.id) {
            if now.state >= InstanceState::Terminating {
                self.terminate(now, dep.clone());
            }
        }
    }

    /// Destroys an instance: `TerminateInstances`, retried; the poller records the end.
    fn start_destroy(self: &Arc<Self>, inst: &InstanceRecord, dep: &Ec2Deployable) {
        self.advance(inst, InstanceState::Terminating, StateUpdate::default());
        self.terminate(inst.clone(), dep.clone());
    }

    fn terminate(self: &Arc<Self>, inst: InstanceRecord, dep: Ec2Deployable) {
        let me = self.clone();
        tokio::spawn(async move {
            let client = me.client(&dep).await;
            let mut last = None;
            for attempt in 0..dep.max_attempts {
                if attempt > 0 {
                    tokio::time::sleep(cloud::backoff(attempt)).await;
                }
                let cloud_id = match &inst.cloud_id {
                    Some(c) => Some(c.clone()),
                    None => match cloud::describe_tagged(&client, TAG_INSTANCE, &inst.id).await {
                        Ok(found) => found.first().map(|c| c.id.clone()),
                        Err(e) => {
                            last = Some(e);
                            continue;
                        }
                    },
                };
                let Some(cloud_id) = cloud_id else {
                    if !me.in_flight.lock().unwrap().contains(&inst.id) {
                        // Never launched: nothing to stop.
                        me.advance(&inst, InstanceState::Terminated, StateUpdate::default());
                    }
                    return;
                };
                match cloud::terminate(&client, &cloud_id).await {
                    Ok(()) => return,
                    Err(e) if e.retryable => last = Some(e),
                    Err(e) => {
                        last = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = last {
                me.event(
                    &inst.domain,
                    Some(&inst.id),
                    "cloud-error",
                    json!({"op": e.op, "error": e.message}),
                );
            }
        });
    }
}
