//! Runs: booting a launch plan level by level, terminating it (workers first, then the
//! services in reverse), checking it, and cleaning up what no live run owns.

pub mod service;

use crate::daemon::{Daemon, OpError};
use crate::model::InstanceState;
use crate::plan::{self, template, Plan, ServiceSpec};
use crate::provisioner::process::os as process;
use crate::store::{RunState, ServiceRecord, Store};
use anyhow::Result;
use serde_json::{json, Value};
use service::ServiceContext;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn unknown_run(name: &str) -> OpError {
    OpError::NotFound(format!("unknown run '{name}'"))
}

/// After a restart: a run that was booting when the daemon stopped is marked failed (its
/// services are left as they are; `epu terminate RUN` or a new boot stops them). A run that
/// was terminating stays so: the names returned are finished by the daemon.
pub fn recover(store: &Store) -> Result<Vec<String>> {
    let mut terminating = Vec::new();
    for run in store.runs()? {
        if run.state == RunState::Terminating {
            // Its terminate goes on at start, and nothing of it launches meanwhile.
            terminating.push(run.name);
        } else if run.state == RunState::Booting {
            let why = format!(
                "the daemon stopped while the run was {}",
                run.state.as_str()
            );
            store.set_run_state(
                &run.name,
                RunState::Failed,
                Some(&why),
                "run-failed",
                json!({"error": why}),
            )?;
        }
    }
    Ok(terminating)
}

impl Daemon {
    fn service_context(&self, run: &str, spec: ServiceSpec) -> ServiceContext {
        ServiceContext {
            state_dir: self.state_dir.clone(),
            run: run.to_string(),
            spec,
        }
    }

    /// Boots the plan at `plan_path` as run `name` (default: the plan's name): its levels in
    /// order, each ready before the next starts, then its domains. If anything fails, what
    /// this boot started is stopped again in reverse and the run is recorded as failed.
    /// Booting a run that is already booted adds only the domains it lacks.
    pub async fn boot_run(
        self: &Arc<Self>,
        plan_path: &Path,
        name: Option<&str>,
    ) -> Result<Value, OpError> {
        if self.cluster.is_some() {
            return Err(OpError::Invalid(
                "a node of a cluster does not boot runs yet: boot the plan on a daemon outside \
                 the cluster, or add its domains with `epu domain add`"
                    .into(),
            ));
        }
        let plan = plan::load(plan_path).map_err(|e| OpError::Invalid(format!("{e:#}")))?;
        let run = name.unwrap_or(&plan.name).to_string();
        plan::check_name(&run).map_err(|e| OpError::Invalid(e.to_string()))?;
        let plan = plan.with_run(&run);
        let _ops = self.run_ops.lock().await;
        let store = &self.services.store;
        match store.run(&run)? {
            Some(r) if r.state == RunState::Booted => {
                let added = self.add_run_domains(&run, &plan).await?;
                let mut status = self.run_status(&run, false).await?;
                status["already_booted"] = true.into();
                status["added_domains"] = json!(added);
                return Ok(status);
            }
            Some(r) if r.state.is_live() || r.state == RunState::Terminating => {
                return Err(OpError::Conflict(format!(
                    "run '{run}' is {}",
                    r.state.as_str()
                )))
            }
            // A failed or terminated run of that name: stop what it left, then boot afresh.
            Some(_) => {
                self.stop_run_parts(&run).await?;
            }
            None => {}
        }
        let existing: Vec<_> = store
            .domains()?
            .into_iter()
            .map(|d| (d.spec.name, d.spec.run))
            .collect();
        plan.domains_to_add(&run, &existing)
            .map_err(|e| OpError::Conflict(e.to_string()))?;
        // Each engine whose config is known now is tried before anything starts.
        for (i, d) in plan.domains.iter().enumerate() {
            if plan.engine_known_before_boot(i) && !existing.iter().any(|(n, _)| *n == d.name) {
                self.try_plan_domain(&plan, i).await?;
            }
        }
        let domains: Vec<String> = plan.domains.iter().map(|d| d.name.clone()).collect();
        store.begin_run(
            &run,
            &plan.file.display().to_string(),
            &plan.levels,
            &domains,
        )?;
        if let Err(why) = self.boot_levels(&run, &plan).await {
            return Err(self.fail_boot(&run, why).await);
        }
        if let Err(e) = self.add_run_domains(&run, &plan).await {
            return Err(self.fail_boot(&run, format!("{e:#}")).await);
        }
        store.set_run_state(&run, RunState::Booted, None, "run-booted", json!({}))?;
        self.run_status(&run, false).await
    }

    /// Boots every level in order; stops at the first that fails, with why.
    async fn boot_levels(self: &Arc<Self>, run: &str, plan: &Plan) -> Result<(), String> {
        let store = &self.services.store;
        for (i, services) in plan.levels.iter().enumerate() {
            let level = i as u32 + 1;
            let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
            store
                .set_level_state(
                    run,
                    level,
                    "booting",
                    "level-booting",
                    json!({"services": names}),
                )
                .map_err(|e| format!("{e:#}"))?;
            let attrs = store.run_attrs(run).map_err(|e| format!("{e:#}"))?;
            let mut tasks = tokio::task::JoinSet::new();
            for spec in services {
                let me = self.clone();
                let run = run.to_string();
                let filled = fill_service(spec, &attrs);
                tasks.spawn(async move {
                    let name = filled.as_ref().map_or(String::new(), |s| s.name.clone());
                    match filled {
                        Ok(spec) => me.boot_service(&run, spec).await,
                        Err(e) => Err(format!("service '{name}': {e:#}")),
                    }
                });
            }
            let mut failures = Vec::new();
            while let Some(done) = tasks.join_next().await {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => failures.push(why),
                    Err(e) => failures.push(format!("a service's boot task failed: {e}")),
                }
            }
            if !failures.is_empty() {
                let why = format!("level {level} failed: {}", failures.join("\n"));
                let _ = store.set_level_state(
                    run,
                    level,
                    "failed",
                    "level-failed",
                    json!({"errors": failures}),
                );
                return Err(why);
            }
            store
                .set_level_state(run, level, "ready", "level-ready", json!({}))
                .map_err(|e| format!("{e:#}"))?;
        }
        Ok(())
    }

    /// Starts one service and waits until it is ready; records every step.
    async fn boot_service(self: &Arc<Self>, run: &str, spec: ServiceSpec) -> Result<(), String> {
        let store = &self.services.store;
        let name = spec.name.clone();
        let ctx = self.service_context(run, spec);
        let began = Instant::now();
        let fail = |why: String| {
            let _ = store.set_service_state(
                run,
                &name,
                "failed",
                None,
                "service-failed",
                json!({"error": why}),
            );
            format!("service '{name}': {why}")
        };
        let spawned = match ctx.start() {
            Ok(s) => s,
            Err(e) => return Err(fail(format!("{e:#}"))),
        };
        let process = Some((spawned.pid, spawned.start));
        let detail = json!({"pid": spawned.pid, "command": ctx.spec.start});
        store
            .set_service_state(
                run,
                &name,
                "starting",
                Some((&ctx.spec, process)),
                "service-starting",
                detail,
            )
            .map_err(|e| format!("{e:#}"))?;
        let mut child = spawned.child;
        let attrs = match ctx.await_ready(&mut child).await {
            Ok(a) => a,
            Err(why) => return Err(fail(why)),
        };
        store
            .save_attrs(run, &name, &attrs)
            .map_err(|e| format!("{e:#}"))?;
        let detail = json!({"attrs": attrs, "seconds": began.elapsed().as_secs_f64()});
        store
            .set_service_state(run, &name, "ready", None, "service-ready", detail)
            .map_err(|e| format!("{e:#}"))?;
        // Reap the start program when it ends, and say so.
        let me = self.clone();
        let run = run.to_string();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let detail = json!({"status": status.to_string(), "success": status.success()});
                let _ = me
                    .services
                    .store
                    .event_of_run(&run, Some(&name), "service-exited", detail);
            }
        });
        Ok(())
    }

    /// Records a failed boot: stops what it started, in reverse, and removes its domains.
    async fn fail_boot(self: &Arc<Self>, run: &str, why: String) -> OpError {
        if let Err(e) = self.stop_run_parts(run).await {
            tracing::error!(run, "stopping a failed boot: {e:#}");
        }
        let store = &self.services.store;
        if let Err(e) = store.set_run_state(
            run,
            RunState::Failed,
            Some(&why),
            "run-failed",
            json!({"error": why}),
        ) {
            tracing::error!(run, "recording a failed boot: {e:#}");
        }
        OpError::Invalid(format!("run '{run}' failed to boot: {why}"))
    }

    /// Creates the plan's domains that do not exist yet, with their references filled;
    /// returns their names. On a refusal the ones added here are removed again.
    async fn add_run_domains(&self, run: &str, plan: &Plan) -> Result<Vec<String>, OpError> {
        let store = &self.services.store;
        let existing: Vec<_> = store
            .domains()?
            .into_iter()
            .map(|d| (d.spec.name, d.spec.run))
            .collect();
        let todo = plan
            .domains_to_add(run, &existing)
            .map_err(|e| OpError::Conflict(e.to_string()))?;
        let attrs = store.run_attrs(run)?;
        let mut added: Vec<String> = Vec::new();
        for spec in todo {
            let result = match fill_domain(spec, &attrs) {
                Ok(spec) => self.add_domain(spec).await,
                Err(e) => Err(OpError::Invalid(format!("{e:#}"))),
            };
            if let Err(e) = result {
                for name in added.iter().rev() {
                    let _ = self.remove_domain(name).await;
                }
                return Err(OpError::Invalid(format!("domain '{}': {e}", spec.name)));
            }
            added.push(spec.name.clone());
        }
        Ok(added)
    }

    /// Terminates a run: destroys every worker of its domains and waits for them to go, then
    /// stops its services level by level in reverse, and records the run as terminated.
    pub async fn terminate_run(&self, run: &str) -> Result<Value, OpError> {
        let _ops = self.run_ops.lock().await;
        self.terminate_run_locked(run).await
    }

    pub(crate) async fn terminate_run_locked(&self, run: &str) -> Result<Value, OpError> {
        let store = &self.services.store;
        let record = store.run(run)?.ok_or_else(|| unknown_run(run))?;
        if record.state == RunState::Terminated {
            return Ok(json!({"run": run, "state": "terminated", "already": true}));
        }
        store.set_run_state(
            run,
            RunState::Terminating,
            None,
            "run-terminating",
            json!({}),
        )?;
        let began = Instant::now();
        let (domains, services) = self.stop_run_parts(run).await?;
        let detail = json!({"domains": domains, "services": services, "seconds": began.elapsed().as_secs_f64()});
        store.set_run_state(run, RunState::Terminated, None, "run-terminated", detail)?;
        Ok(json!({"run": run, "state": "terminated", "domains": domains, "services": services}))
    }

    /// Removes a run's domains that still exist (destroying their workers), then stops its
    /// services that may be running, level by level in reverse. Returns what it removed
    /// and stopped.
    async fn stop_run_parts(&self, run: &str) -> Result<(Vec<String>, Vec<String>), OpError> {
        let store = &self.services.store;
        let mut removed = Vec::new();
        for domain in store.run_domains(run)? {
            let owned = store
                .domain(&domain)?
                .is_some_and(|d| d.spec.run.as_deref() == Some(run));
            if owned {
                self.remove_domain(&domain).await?;
                removed.push(domain);
            }
        }
        let services = store.run_services(run)?;
        let mut stopped = Vec::new();
        let levels: std::collections::BTreeSet<u32> = services.iter().map(|s| s.level).collect();
        for level in levels.into_iter().rev() {
            let of_level: Vec<&ServiceRecord> = services
                .iter()
                .filter(|s| s.level == level && s.state != "terminated")
                .collect();
            let mut tasks = tokio::task::JoinSet::new();
            for s in &of_level {
                let ctx = self.service_context(run, s.spec.clone());
                if s.state == "pending" {
                    // Never recorded as started, but an interrupted boot may have spawned it.
                    ctx.sweep().await;
                    continue;
                }
                let process = s.pid.zip(s.pid_start);
                let name = s.name.clone();
                store.set_service_state(
                    run,
                    &name,
                    "terminating",
                    None,
                    "service-terminating",
                    json!({}),
                )?;
                tasks.spawn(async move { (name, ctx.stop(process).await) });
            }
            while let Some(done) = tasks.join_next().await {
                let (name, output) = done.map_err(|e| OpError::Internal(e.into()))?;
                store.set_service_state(
                    run,
                    &name,
                    "terminated",
                    None,
                    "service-terminated",
                    json!({"output": output}),
                )?;
                stopped.push(name);
            }
            if of_level.iter().any(|s| s.state != "pending") {
                store.set_level_state(run, level, "terminated", "level-terminated", json!({}))?;
            }
        }
        Ok((removed, stopped))
    }

    /// A run with its levels' services (alive or not, and with `check`, whether their
    /// readiness program passes now) and its domains with their instances.
    pub async fn run_status(&self, run: &str, check: bool) -> Result<Value, OpError> {
        let store = &self.services.store;
        let record = store.run(run)?.ok_or_else(|| unknown_run(run))?;
        let mut services = Vec::new();
        for s in store.run_services(run)? {
            let alive = s
                .pid
                .zip(s.pid_start)
                .is_some_and(|(pid, start)| process::is_alive(pid, start));
            let mut v = json!({
                "name": s.name, "level": s.level, "state": s.state, "pid": s.pid,
                "alive": alive, "attrs": s.attrs,
            });
            if check && matches!(s.state.as_str(), "ready" | "starting") {
                let ctx = self.service_context(run, s.spec.clone());
                v["ready"] = match ctx.check_ready().await {
                    Ok(out) => json!({"ok": true, "output": out}),
                    Err(why) => json!({"ok": false, "output": why}),
                };
            }
            services.push(v);
        }
        let mut domains = Vec::new();
        for name in store.run_domains(run)? {
            if store.domain(&name)?.is_some() {
                domains.extend(self.status(Some(&name)).await?);
            }
        }
        Ok(json!({
            "run": record,
            "services": services,
            "domains": domains,
        }))
    }

    /// Destroys what no live run owns: domains of runs that are gone (with their workers),
    /// services of runs that are not live, and processes from this state dir that the store
    /// does not know (or knows as gone). Returns what it did.
    pub async fn clean(&self) -> Result<Value, OpError> {
        let _ops = self.run_ops.lock().await;
        let store = &self.services.store;
        let live_runs: std::collections::HashSet<String> = store
            .runs()?
            .into_iter()
            .filter(|r| r.state.is_live())
            .map(|r| r.name)
            .collect();
        let mut removed = Vec::new();
        for d in store.domains()? {
            if let Some(run) = &d.spec.run {
                if !live_runs.contains(run) {
                    self.remove_domain(&d.spec.name).await?;
                    removed.push(d.spec.name);
                }
            }
        }
        let mut stopped = Vec::new();
        for r in store.runs()?.into_iter().filter(|r| !r.state.is_live()) {
            let services = store.run_services(&r.name)?;
            let leftover = services.iter().any(|s| {
                s.pid
                    .zip(s.pid_start)
                    .is_some_and(|(pid, start)| process::is_alive(pid, start))
            });
            if leftover {
                let (_, s) = self.stop_run_parts(&r.name).await?;
                stopped.extend(s.into_iter().map(|s| format!("{}/{s}", r.name)));
            }
        }
        let mut killed = Vec::new();
        let known: std::collections::HashSet<String> = store
            .live_instances(None)?
            .into_iter()
            .filter(|i| i.state < InstanceState::Terminating)
            .map(|i| i.id)
            .collect();
        // Every process a worker started, not only its leader: children outlive leaders.
        for (pid, _, id) in process::scan_worker_processes(&self.state_dir) {
            if !known.contains(&id) {
                process::kill(pid);
                killed.push(json!({"pid": pid, "worker": id}));
            }
        }
        for (pid, _, id) in process::scan_services(&self.state_dir) {
            let run = id.split('/').next().unwrap_or_default();
            if !live_runs.contains(run) {
                process::kill(pid);
                killed.push(json!({"pid": pid, "service": id}));
            }
        }
        for k in &killed {
            store.event(None, k["worker"].as_str(), "stray-killed", k.clone())?;
        }
        Ok(json!({"removed_domains": removed, "stopped_services": stopped, "killed": killed}))
    }
}

/// A service's spec with the references to earlier levels filled.
fn fill_service(spec: &ServiceSpec, attrs: &template::Attrs) -> Result<ServiceSpec> {
    let filled = template::fill(&serde_json::to_value(spec)?, attrs, false)?;
    Ok(serde_json::from_value(filled)?)
}

/// A domain's spec with its references filled (typed in its engine config) and its sensors
/// checked.
fn fill_domain(
    spec: &crate::model::DomainSpec,
    attrs: &template::Attrs,
) -> Result<crate::model::DomainSpec> {
    let mut value = serde_json::to_value(spec)?;
    let config = template::fill(&value["config"], attrs, true)?;
    value = template::fill(&value, attrs, false)?;
    value["config"] = config;
    let filled: crate::model::DomainSpec = serde_json::from_value(value)?;
    crate::model::sensor::check_all(&filled.sensors)?;
    Ok(filled)
}
