//! One decide cycle: read the store, ask the engine (or, in quarantine, the fallback), check
//! the decision, record it, and carry it out.

use super::drain;
use super::explain::{self, Answer, Done, Explained, Seen};
use super::faults::{Fault, FaultKind};
use super::guard::{staying, Held, HoldReason};
use super::{short_id, Controller};
use crate::contract::{decision, engine_status_name, snapshot};
use crate::engine::bindings::{Decision, EngineStatus, Launch};
use crate::model::{is_unhealthy, now, Fallback, InstanceState};
use crate::sensors::{Reading, Readings};
use crate::store::{DecideView, InstanceRecord, NewInstance};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

impl Controller {
    /// The domain as the store has it, for a decide (or a swap's canary). The store is read
    /// only when the domain changed there since the last read; until then the decides share
    /// that read.
    pub(super) fn read(&mut self) -> anyhow::Result<Arc<DecideView>> {
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        if let Some(c) = self.cached.as_ref().filter(|c| c.generation == generation) {
            return Ok(c.clone());
        }
        let read = Arc::new(self.services.store.decide_view(&self.spec.name)?);
        self.follow_deployable(&read);
        self.cached = Some(read.clone());
        Ok(read)
    }

    /// The latest reading of each of the domain's sensors at `now`, and which are news since
    /// the last carried-out decide.
    pub(super) fn readings(&self, now: f64) -> Readings {
        self.services
            .sensors
            .readings(&self.spec.name, now, self.sensor_seen)
    }

    /// The domain as the store has it, once the drains that are over were ended and the
    /// refresh under way took its step.
    fn read_tended(&mut self, now: f64) -> anyhow::Result<Arc<DecideView>> {
        let mut read = self.read()?;
        if read.draining {
            let ended = self.end_drains(&read.live, now);
            if self.changed_anything(ended, "ending drains") {
                read = self.read()?;
            }
        }
        if read.refresh.is_some() {
            let stepped = self.refresh_step(&read);
            if self.changed_anything(stepped, "refreshing") {
                read = self.read()?;
            }
        }
        self.next_drain_end = read
            .draining
            .then(|| drain::next_drain_end(&read.live))
            .flatten();
        Ok(read)
    }

    /// Whether a step changed anything; a failed one is logged and may have.
    fn changed_anything(&self, step: anyhow::Result<bool>, what: &str) -> bool {
        step.unwrap_or_else(|e| {
            tracing::error!(domain = %self.spec.name, "{what}: {e:#}");
            true
        })
    }

    /// One decide cycle, counted and timed. Returns how long to wait before the next one.
    pub(super) fn decide(&mut self) -> Duration {
        let began = std::time::Instant::now();
        let mut next = self.decide_once();
        if let Some(end) = self.next_drain_end {
            next = next.min(Duration::from_secs_f64((end - now()).clamp(0.01, 86_400.0)));
        }
        self.metrics.decides.inc();
        self.metrics
            .decide_seconds
            .observe(began.elapsed().as_secs_f64());
        next
    }

    fn decide_once(&mut self) -> Duration {
        let pulse = self.pulse();
        if self.stopping() {
            return pulse;
        }
        let now = now();
        let read = match self.read_tended(now) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(domain = %self.spec.name, "reading the store: {e:#}");
                return pulse;
            }
        };
        let readings = self.readings(now);
        self.update_backoff(&read.records, read.last_seq);
        self.recent_failures = read
            .records
            .iter()
            .filter(|r| r.state == InstanceState::Failed && r.changed_seq > read.last_seq)
            .count();
        // Whether any instance changed since the last decide: if not, and the decision changes
        // nothing, there is nothing to write.
        let changed = read.records.iter().any(|r| r.changed_seq > read.last_seq);
        let (live, sensors, seen_seq) = (&read.live, &readings.sensors, read.seen_seq);
        let backoff_ms = self.backoff.current().as_millis() as u64;
        let seen = Seen::of(&read, sensors, self.spec.max_instances, backoff_ms);
        if self.quarantined {
            let decision = self.fallback(live);
            let answer = Some(Answer::of(&decision));
            match self.carry_out(&decision, live, sensors, seen_seq, changed, true) {
                Ok(done) => {
                    self.sensor_seen = readings.seen;
                    self.explain("fallback", seen, answer, None, Some(done));
                }
                Err(e) => {
                    tracing::error!(domain = %self.spec.name, "carrying out the fallback: {e:#}");
                    let why = format!("carrying it out failed: {e:#}");
                    self.explain("fallback", seen, answer, Some(why), None);
                }
            }
            return pulse;
        }
        // Taken, not copied: after a decision that is not carried out, the instance is told the
        // whole domain again (its memo may differ from the kept one).
        let synced = self.instance.as_mut().and_then(|i| i.synced.take());
        let (snap, told) = snapshot::build(&read, sensors, synced, now);
        let seed: u64 = rand::random();
        let began = std::time::Instant::now();
        let decided = self.with_engine(|e| e.decide(&snap, seed));
        let micros = began.elapsed().as_secs_f64() * 1e6;
        let decision = match decided {
            Ok(d) => d,
            Err(fault) => {
                self.explain("engine", seen, None, Some(explain::fault(&fault)), None);
                self.fault(fault);
                return pulse;
            }
        };
        let answer = Some(Answer::of(&decision));
        let max_bytes = self.spec.limits.max_decision_bytes;
        if let Err(e) = decision::check(&decision, live, self.spec.max_instances, max_bytes) {
            let fault = Fault::new(FaultKind::InvalidDecision, e.to_string());
            self.explain("engine", seen, answer, Some(explain::fault(&fault)), None);
            self.fault(fault);
            return pulse;
        }
        match self.carry_out(&decision, live, sensors, seen_seq, changed, false) {
            Ok(done) => {
                self.explain("engine", seen, answer, None, Some(done));
                if !self.shadows.is_empty() {
                    let full = snapshot::build(&read, sensors, None, now).0;
                    let live = super::shadow::LiveDecide {
                        decision: decision.clone(),
                        micros,
                    };
                    self.services.shadows.hand(&self.shadows, &full, live);
                }
            }
            Err(e) => {
                tracing::error!(domain = %self.spec.name, "carrying out a decision: {e:#}");
                self.event("provisioning-error", json!({"error": format!("{e:#}")}));
                let why = format!("carrying it out failed: {e:#}");
                self.explain("engine", seen, answer, Some(why), None);
                return pulse;
            }
        }
        // Only now are the engine's tables as the daemon has them; unless something was held
        // back, which the engine counts as done: it is told the whole domain again.
        let held = !self.last_held.is_empty();
        if let Some(instance) = self.instance.as_mut() {
            let stretch_full = self.recording.record(snap, &decision, seed);
            instance.synced = (!stretch_full && !held).then_some(told);
        }
        self.sensor_seen = readings.seen;
        self.no_fault();
        let next = decision
            .next_decide_ms
            .map(|ms| Duration::from_millis(u64::from(ms.max(10))))
            .unwrap_or(pulse);
        match self.guard.retry_at(&self.spec.budget).filter(|_| held) {
            Some(at) => next.min(Duration::from_secs_f64((at - now).clamp(0.01, 86_400.0))),
            None => next,
        }
    }

    /// Keeps the explanation of a decide for `epu explain`.
    fn explain(
        &self,
        by: &'static str,
        seen: Seen,
        answer: Option<Answer>,
        fault: Option<String>,
        done: Option<Done>,
    ) {
        let e = Explained {
            time: now(),
            first_time: 0.0,
            repeats: 0,
            by,
            seen,
            answer,
            fault,
            done,
        };
        explain::keep(&self.explained, e);
    }

    /// Reports what the guard held back: in the status, and as an event for each destroy or
    /// launch count newly held (not again while it stays held).
    fn report_held(&mut self, held: Held) {
        for (id, reason) in &held.destroys {
            if !self.last_held.destroys.contains(&(id.clone(), *reason)) {
                self.event("destroy-held", json!({"instance": id, "reason": reason}));
            }
        }
        if held.launches > 0 && held.launches != self.last_held.launches {
            self.event(
                "launch-held",
                json!({"count": held.launches, "reason": HoldReason::Budget}),
            );
        }
        self.status.lock().unwrap().held = (!held.is_empty()).then(|| held.clone());
        self.last_held = held;
    }

    /// What the domain does while its engine is quarantined: `hold` does nothing; `preserve`
    /// destroys unhealthy instances and launches to hold the last healthy count.
    fn fallback(&self, live: &[InstanceRecord]) -> Decision {
        let mut decision = Decision {
            launches: vec![],
            destroy: vec![],
            next_decide_ms: None,
            memo: None,
            status: EngineStatus::Unknown,
        };
        let (Fallback::Preserve, Some(target)) = (self.spec.limits.fallback, self.preserve_target)
        else {
            return decision;
        };
        let valid: Vec<_> = live
            .iter()
            .filter(|r| r.state < InstanceState::Terminating && !r.draining() && !r.surge)
            .collect();
        decision.destroy = valid
            .iter()
            .filter(|r| is_unhealthy(r.state, r.health))
            .map(|r| r.handle)
            .collect();
        let healthy = (valid.len() - decision.destroy.len()) as u32;
        if healthy < target {
            decision.launches.push(Launch {
                count: target - healthy,
                vars: vec![],
            });
        }
        decision
    }

    /// Records a checked decision (launches before any spawn), with the sensor readings it was
    /// made on, then destroys and launches; returns what was done. `changed` says whether the
    /// decide saw instance changes; a decide that saw none and changes nothing writes nothing.
    fn carry_out(
        &mut self,
        d: &Decision,
        live: &[InstanceRecord],
        sensors: &[Reading],
        seen_seq: i64,
        changed: bool,
        by_fallback: bool,
    ) -> anyhow::Result<Done> {
        if self.stopping() {
            return Ok(Done::default());
        }
        let unasked;
        let asked = d.destroy.len();
        let d = match drain::without_draining(d, live) {
            Some(d) => {
                unasked = d;
                &unasked
            }
            None => d,
        };
        let already_leaving = asked - d.destroy.len();
        // The guard is skipped (no copy of the decision) when it has nothing to hold back.
        let protected = |h: &u64| live.iter().any(|r| r.handle == *h && r.protected);
        let mut guarded;
        let d = if self.spec.budget.is_empty() && !d.destroy.iter().any(protected) {
            if !self.last_held.is_empty() {
                self.report_held(Held::default());
            }
            d
        } else {
            let held;
            (guarded, held) = self.guard.apply(&self.spec.budget, live, d, now());
            self.report_held(held);
            &guarded
        };
        // Draining instances come back in place of launches.
        let mut taken_back = Vec::new();
        let d = if !self.spec.dry_run && !d.launches.is_empty() && live.iter().any(|r| r.draining())
        {
            guarded = d.clone();
            taken_back = self.take_back(&mut guarded, live)?;
            &guarded
        } else {
            d
        };
        let new: Vec<NewInstance> = d
            .launches
            .iter()
            .flat_map(|l| {
                let launch_id = format!("l-{}", short_id());
                (0..l.count).map(move |_| NewInstance {
                    id: format!("i-{}", short_id()),
                    launch_id: launch_id.clone(),
                    vars: l.vars.clone(),
                    surge: false,
                })
            })
            .collect();
        let destroyed: Vec<&InstanceRecord> = d
            .destroy
            .iter()
            .filter_map(|h| live.iter().find(|i| i.handle == *h))
            .collect();
        let done = Done {
            launched: new.len(),
            taken_back: taken_back.len(),
            held: self.last_held.clone(),
            already_leaving,
            dry_run: self.spec.dry_run && !by_fallback,
            ..Done::default()
        }
        .destroyed(destroyed.iter().map(|i| &i.id));
        if self.spec.dry_run && !by_fallback {
            self.record_dry_run(d, live, &new, &destroyed, seen_seq, changed)?;
            return Ok(done);
        }
        let status_changed = !by_fallback && self.last_status != Some(d.status);
        let acted = !new.is_empty() || !d.destroy.is_empty() || !taken_back.is_empty();
        let target = staying(live, d) + taken_back.len() + new.len();
        let detail = (acted || status_changed).then(|| {
            let mut detail = json!({
                "launch": new.iter().map(|n| &n.id).collect::<Vec<_>>(),
                "destroy": destroyed.iter().map(|i| &i.id).collect::<Vec<_>>(),
                "status": engine_status_name(d.status),
                "by": if by_fallback { "fallback" } else { "engine" },
                "target": target,
            });
            if !taken_back.is_empty() {
                detail["take_back"] = json!(taken_back);
            }
            if !sensors.is_empty() {
                detail["sensors"] = sensors
                    .iter()
                    .map(|r| &r.reading)
                    .map(|r| json!({"name": r.name, "value": r.value, "time": r.time, "stale": r.stale}))
                    .collect();
            }
            detail
        });
        let store = self.services.store.clone();
        let writes = changed || !new.is_empty() || d.memo.is_some() || detail.is_some();
        if writes {
            store.record_decision(
                &self.spec.name,
                seen_seq,
                d.memo.as_deref(),
                &new,
                detail.as_ref(),
            )?;
            if detail.is_some() && new.is_empty() && d.destroy.is_empty() {
                self.count_engine_events(1);
            }
        }
        if !by_fallback {
            self.last_target = Some(target as u32);
            self.status.lock().unwrap().desired = self.last_target;
            self.last_status = Some(d.status);
            let mut st = self.status.lock().unwrap();
            st.engine_status = Some(engine_status_name(d.status).into());
            st.decides += 1;
            st.last_decide = Some(now());
        }

        let m = &self.metrics;
        m.launches.inc_by(new.len() as u64);
        m.destroys.inc_by(destroyed.len() as u64);
        // A launch replaces an instance that failed since the last decide or is destroyed
        // now for being unhealthy.
        let lost = self.recent_failures
            + destroyed
                .iter()
                .filter(|r| is_unhealthy(r.state, r.health))
                .count();
        m.replacements.inc_by(lost.min(new.len()) as u64);
        let prov = &self.services.provisioner;
        let t = now();
        for inst in destroyed {
            self.destroy_or_drain(inst, t)?;
        }
        for n in &new {
            if let Some(inst) = store.instance(&n.id)? {
                prov.launch(&inst, &self.spec)?;
            }
        }
        Ok(done)
    }

    /// A dry-run domain's decision: recorded (an event when it differs from the last one, and
    /// metrics), with nothing launched or destroyed.
    fn record_dry_run(
        &mut self,
        d: &Decision,
        live: &[InstanceRecord],
        new: &[NewInstance],
        destroyed: &[&InstanceRecord],
        seen_seq: i64,
        changed: bool,
    ) -> anyhow::Result<()> {
        let ids: Vec<String> = destroyed.iter().map(|i| i.id.clone()).collect();
        let now = (new.len(), ids.clone());
        let differs =
            self.last_dry_run.as_ref() != Some(&now) || self.last_status != Some(d.status);
        let detail = differs.then(|| {
            json!({
                "dry_run": true,
                "would_launch": new.len(),
                "would_destroy": ids,
                "status": engine_status_name(d.status),
                "by": "engine",
            })
        });
        if changed || d.memo.is_some() || detail.is_some() {
            self.services.store.record_decision(
                &self.spec.name,
                seen_seq,
                d.memo.as_deref(),
                &[],
                detail.as_ref(),
            )?;
            if detail.is_some() {
                self.count_engine_events(1);
            }
        }
        if differs {
            self.metrics.dry_run_launches.inc_by(new.len() as u64);
            self.metrics.dry_run_destroys.inc_by(destroyed.len() as u64);
        }
        self.last_target = Some((staying(live, d) + new.len()) as u32);
        self.last_status = Some(d.status);
        self.last_dry_run = Some(now);
        let mut st = self.status.lock().unwrap();
        st.desired = self.last_target;
        st.engine_status = Some(engine_status_name(d.status).into());
        st.decides += 1;
        st.last_decide = Some(crate::model::now());
        Ok(())
    }

    fn update_backoff(&mut self, records: &[InstanceRecord], last_seq: i64) {
        if let Some(failures) = self.backoff.observe(records, last_seq, self.pulse()) {
            let ms = self.backoff.current().as_millis() as u64;
            self.event(
                "crash-loop-backoff",
                json!({"fast_failures": failures, "backoff_ms": ms}),
            );
        }
        let backoff_ms = self.backoff.current().as_millis() as u64;
        let mut st = self.status.lock().unwrap();
        st.backoff_ms = backoff_ms;
        if backoff_ms == 0 {
            st.last_failure = None;
        } else if let Some(why) = records
            .iter()
            .filter(|r| r.state == InstanceState::Failed && r.changed_seq > last_seq)
            .max_by_key(|r| r.changed_seq)
            .and_then(|r| r.error.clone())
        {
            st.last_failure = Some(why);
        }
    }
}
