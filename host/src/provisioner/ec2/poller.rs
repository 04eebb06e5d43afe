//! The poller of an `ec2` domain: it maps the cloud's listing to instance states, relaunches
//! launches a crash interrupted, fails instances gone missing, and reaps strays.

use super::cloud::{self, CloudInstance, TAG_DOMAIN, TAG_INSTANCE};
use super::Ec2Driver;
use crate::model::{now, DomainSpec, Ec2Deployable, InstanceState};
use crate::store::{InstanceRecord, StateUpdate};
use aws_sdk_ec2::types::InstanceStateName;
use aws_sdk_ec2::Client;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

impl Ec2Driver {
    /// Starts watching an `ec2` domain (its poller and reaper).
    pub(super) fn watch_domain(self: &Arc<Self>, spec: &DomainSpec, dep: &Ec2Deployable) {
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
    pub(super) fn unwatch_domain(&self, domain: &str) {
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
                    self.start_launch(inst, spec, dep);
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
