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

use crate::model::{now, DomainSpec, Ec2Deployable, InstanceState};
use crate::store::{InstanceRecord, StateUpdate, Store};
use crate::tokens::Tokens;
use crate::wakeups::Wakeups;
use aws_sdk_ec2::types::InstanceStateName;
use aws_sdk_ec2::Client;
use cloud::{CloudError, CloudInstance, LaunchRequest, TAG_DOMAIN, TAG_INSTANCE};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    pub fn new(
        store: Arc<Store>,
        wakeups: Arc<Wakeups>,
        tokens: Arc<Tokens>,
        heartbeat_url: Option<String>,
    ) -> Ec2Driver {
        Ec2Driver {
            store,
            wakeups,
            tokens,
            heartbeat_url,
            clients: Default::default(),
            in_flight: Default::default(),
            watchers: Default::default(),
        }
    }

    /// Checks that the driver can serve a deployable: it needs credentials, and its workers
    /// need somewhere to send heartbeats.
    pub async fn check(&self, dep: &Ec2Deployable) -> Result<(), String> {
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
    pub fn launch(self: &Arc<Self>, inst: &InstanceRecord, spec: &DomainSpec, dep: &Ec2Deployable) {
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
    pub fn destroy(self: &Arc<Self>, inst: &InstanceRecord, dep: &Ec2Deployable) {
        self.advance(inst, InstanceState::Terminating, StateUpdate::default());
        self.terminate(inst.clone(), dep.clone());
    }

    /// Terminates an instance again (a zombie: it still reports after its end).
    pub fn terminate_again(self: &Arc<Self>, inst: &InstanceRecord, dep: &Ec2Deployable) {
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

    /// Starts watching an `ec2` domain (its poller and reaper).
    pub fn attach(self: &Arc<Self>, spec: &DomainSpec, dep: &Ec2Deployable) {
        let me = self.clone();
        let (spec, dep) = (spec.clone(), dep.clone());
        let name = spec.name.clone();
        let task = tokio::spawn(async move { me.watch(spec, dep).await });
        if let Some(old) = self
            .watchers
            .lock()
            .unwrap()
            .insert(name, task.abort_handle())
        {
            old.abort();
        }
    }

    /// Stops watching a domain.
    pub fn detach(&self, domain: &str) {
        if let Some(task) = self.watchers.lock().unwrap().remove(domain) {
            task.abort();
        }
    }

    async fn watch(self: Arc<Self>, spec: DomainSpec, dep: Ec2Deployable) {
        let mut strays: HashMap<String, f64> = HashMap::new();
        let mut failing = false;
        loop {
            match self.poll(&spec, &dep, &mut strays).await {
                Ok(()) if failing => {
                    failing = false;
                    self.event(&spec.name, None, "cloud-recovered", json!({}));
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing {
                        self.event(
                            &spec.name,
                            None,
                            "cloud-error",
                            json!({"op": "poll", "error": format!("{e:#}")}),
                        );
                    }
                    failing = true;
                }
            }
            tokio::time::sleep(Duration::from_millis(dep.poll_ms)).await;
        }
    }

    /// One poll: follows the cloud's states, relaunches launches a crash interrupted, fails
    /// instances gone missing, and reaps strays.
    async fn poll(
        self: &Arc<Self>,
        spec: &DomainSpec,
        dep: &Ec2Deployable,
        strays: &mut HashMap<String, f64>,
    ) -> anyhow::Result<()> {
        let client = self.client(dep).await;
        let listed = cloud::describe_tagged(&client, TAG_DOMAIN, &spec.name).await?;
        let live = self.store.live_instances(Some(&spec.name))?;
        // Each launch's cloud instance: the one recorded, if the cloud doubled it.
        let recorded: HashMap<&str, Option<&String>> = live
            .iter()
            .map(|i| (i.id.as_str(), i.cloud_id.as_ref()))
            .collect();
        let mut by_instance: HashMap<&str, &CloudInstance> = HashMap::new();
        for c in &listed {
            let Some(owner) = c.tags.get(TAG_INSTANCE) else {
                continue;
            };
            match recorded.get(owner.as_str()) {
                Some(Some(id)) if **id != c.id => {}
                _ => {
                    by_instance.entry(owner.as_str()).or_insert(c);
                }
            }
        }
        let t = now();
        for inst in &live {
            match by_instance.get(inst.id.as_str()) {
                Some(c) => self.follow(inst, c, dep),
                None if inst.cloud_id.is_some() && t - inst.created > dep.missing_after_s => {
                    let why = format!(
                        "the cloud has not listed it for {:.0} s since its launch",
                        t - inst.created
                    );
                    self.advance(inst, InstanceState::Failed, StateUpdate::error(why));
                }
                None if inst.cloud_id.is_none() && inst.state == InstanceState::Requesting => {
                    // A launch that a crash or a failed call interrupted.
                    self.launch(inst, spec, dep);
                }
                None => {}
            }
        }
        self.drop_duplicates(&client, &spec.name, &live, &listed)
            .await;
        let in_flight = self.in_flight.lock().unwrap().clone();
        let owned: HashSet<&str> = live.iter().map(|i| i.id.as_str()).collect();
        let mut seen = HashSet::new();
        for c in &listed {
            let owner = c.tags.get(TAG_INSTANCE).map(String::as_str);
            if cloud::is_ending(&c.state)
                || owner.is_some_and(|o| owned.contains(o) || in_flight.contains(o))
            {
                continue;
            }
            seen.insert(c.id.clone());
            let first = *strays.entry(c.id.clone()).or_insert(t);
            if t - first >= dep.reap_after_s {
                match cloud::terminate(&client, &c.id).await {
                    Ok(()) => {
                        let detail = json!({"cloud_id": c.id, "tagged_instance": owner});
                        self.event(&spec.name, owner, "stray-reaped", detail);
                        seen.remove(&c.id);
                    }
                    Err(e) => tracing::warn!(domain = spec.name, "reaping {}: {e}", c.id),
                }
            }
        }
        strays.retain(|id, _| seen.contains(id));
        Ok(())
    }

    /// Terminates the extra cloud instances of a launch that a cloud without client-token
    /// idempotency carried out twice (a call that timed out reached it after the retry's look
    /// by tag). The instance the store recorded, or else the first, is kept.
    async fn drop_duplicates(
        &self,
        client: &Client,
        domain: &str,
        live: &[InstanceRecord],
        listed: &[CloudInstance],
    ) {
        let mut by_owner: HashMap<&str, Vec<&CloudInstance>> = HashMap::new();
        for c in listed.iter().filter(|c| !cloud::is_ending(&c.state)) {
            if let Some(owner) = c.tags.get(TAG_INSTANCE) {
                by_owner.entry(owner).or_default().push(c);
            }
        }
        for (owner, mut copies) in by_owner.into_iter().filter(|(_, c)| c.len() > 1) {
            let recorded = live
                .iter()
                .find(|i| i.id == owner)
                .and_then(|i| i.cloud_id.clone());
            copies.sort_by_key(|c| (Some(&c.id) != recorded.as_ref(), c.id.clone()));
            for extra in &copies[1..] {
                match cloud::terminate(client, &extra.id).await {
                    Ok(()) => {
                        let detail = json!({"kept": copies[0].id, "terminated": extra.id});
                        self.event(domain, Some(owner), "duplicate-terminated", detail);
                    }
                    Err(e) => tracing::warn!(domain, "terminating duplicate {}: {e}", extra.id),
                }
            }
        }
    }

    /// Moves an instance to the state the cloud reports.
    fn follow(self: &Arc<Self>, inst: &InstanceRecord, c: &CloudInstance, dep: &Ec2Deployable) {
        if inst.cloud_id.is_none() {
            let _ = self.store.set_cloud_id(&inst.id, &c.id);
        }
        let none = StateUpdate::default;
        match c.state {
            InstanceStateName::Pending => self.advance(inst, InstanceState::Pending, none()),
            InstanceStateName::Running => {
                if inst.state == InstanceState::Terminating {
                    // A destroy whose calls failed: try again.
                    let mut again = inst.clone();
                    again.cloud_id = Some(c.id.clone());
                    self.terminate(again, dep.clone());
                } else {
                    self.advance(inst, InstanceState::Started, none());
                }
            }
            InstanceStateName::ShuttingDown | InstanceStateName::Stopping => {
                self.advance(inst, InstanceState::Terminating, none())
            }
            InstanceStateName::Terminated | InstanceStateName::Stopped => {
                let update = if inst.state >= InstanceState::Terminating {
                    none()
                } else {
                    StateUpdate::error(format!("{} in the cloud, not by epu", c.state.as_str()))
                };
                self.advance(inst, InstanceState::Terminated, update)
            }
            _ => {}
        }
    }
}
