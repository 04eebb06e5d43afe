//! `epu engine check`: loads an engine, checks its world and contract version, then runs it
//! through a built-in scenario on a simulated domain, as the daemon would: an empty pool, a
//! growing pool, failing instances, a shrinking pool, a full snapshot again (as after a
//! restart), a reconfigure, steady decides, and dying. Every snapshot is built by the daemon's
//! own snapshot code, and every decision is checked by the daemon's own rules. An engine that
//! describes itself also has its schema held against its `initialize` ([`schema`]).

pub mod schema;

use crate::contract::{decision, snapshot, Synced};
use crate::engine::bindings::Decision;
use crate::engine::schema::Description;
use crate::engine::{CallLimits, EngineError, EngineHost, EngineInstance, TrapKind};
use crate::model::{EngineLimits, Health, InstanceState};
use crate::store::{DecideView, InstanceRecord};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What to check an engine with.
pub struct CheckOptions {
    /// The config, as JSON text.
    pub config: String,
    pub max_instances: u32,
    pub limits: EngineLimits,
    /// Sensor readings (name, value) that arrive anew before every decide.
    pub readings: Vec<(String, f64)>,
}

/// One step of the scenario.
#[derive(Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What the engine cost.
#[derive(Debug, Default, Serialize)]
pub struct Metrics {
    pub compile_ms: f64,
    pub instantiate_ms: f64,
    pub decides: usize,
    pub decide_us_p50: f64,
    pub decide_us_p99: f64,
    /// Fuel (about one unit per wasm instruction) burnt by a decide, p50.
    pub fuel_per_decide: Option<u64>,
    pub peak_memory_bytes: usize,
    pub memory_limit_bytes: usize,
}

/// The outcome of a check.
#[derive(Debug, Serialize)]
pub struct Report {
    pub contract: &'static str,
    /// What the engine says it is; none for an engine of an earlier contract.
    pub description: Option<Description>,
    /// How its schema and its initialize agree.
    pub schema: Option<schema::Agreement>,
    /// The steps after the scenario, `describe` and `schema`: apart from `steps`, whose
    /// list is the scenario's.
    pub describe_steps: Vec<Step>,
    pub steps: Vec<Step>,
    pub metrics: Metrics,
    /// The step that failed and why, if one did.
    pub failure: Option<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    fn pass(&mut self, step: &'static str, detail: String) {
        self.steps.push(Step {
            step,
            ok: true,
            detail,
        });
    }

    fn fail(&mut self, step: &'static str, why: String) {
        self.failure = Some(format!("{step}: {why}"));
        self.steps.push(Step {
            step,
            ok: false,
            detail: why,
        });
    }
}

/// Checks the component `bytes`. `state_dir` keeps the component and its compiled code once
/// it passes, so that checking it again does not compile it again; a failing one leaves
/// nothing there.
pub fn check(
    bytes: &[u8],
    state_dir: &std::path::Path,
    options: &CheckOptions,
) -> anyhow::Result<Report> {
    let host = EngineHost::metered(state_dir)?;
    let limits = CallLimits::from(&options.limits);
    let mut report = Report {
        contract: crate::engine::CONTRACT_VERSION,
        description: None,
        schema: None,
        describe_steps: Vec::new(),
        steps: Vec::new(),
        metrics: Metrics {
            memory_limit_bytes: limits.memory_bytes,
            ..Metrics::default()
        },
        failure: None,
    };
    let t = Instant::now();
    let loaded = match host.prepare(bytes) {
        Ok(l) => l,
        Err(e) => {
            report.fail("load", format!("{e:#}"));
            return Ok(report);
        }
    };
    report.metrics.compile_ms = ms(t.elapsed());
    let through = match loaded.contract.as_str() {
        crate::engine::CONTRACT_VERSION => "",
        "0.4.0" => " (run through its adapter: it cannot describe itself)",
        _ => {
            " (run through its adapter: it cannot describe itself, nor see which instances are \
             protected or draining)"
        }
    };
    report.pass(
        "load",
        format!("implements epu:engine@{}{through}", loaded.contract),
    );

    let t = Instant::now();
    let mut inst = match host.instantiate(&loaded, &options.config, limits) {
        Ok(i) => i,
        Err(e) => {
            report.fail("initialize", explain(&e, &options.limits));
            return Ok(report);
        }
    };
    report.metrics.instantiate_ms = ms(t.elapsed());
    report.pass("initialize", format!("accepted {}", options.config));

    let mut sim = Sim::new(options);
    let limits = &options.limits;
    if let Err((step, e)) = scenario(&mut sim, &mut inst, &options.config, &mut report) {
        let why = match e {
            Broken::Call(e) => explain(&e, limits),
            Broken::Refused(why) => why,
        };
        report.fail(step, why);
    }
    report.metrics.peak_memory_bytes = inst.peak_memory();
    sim.fill(&mut report.metrics);
    if report.ok() && report.metrics.peak_memory_bytes > report.metrics.memory_limit_bytes {
        let why = format!(
            "held {} bytes at its peak, over its memory cap of {} MiB",
            report.metrics.peak_memory_bytes, options.limits.memory_mib
        );
        report.fail("memory", why);
    }
    if report.ok() {
        inst.dying();
        report.pass("dying", "called".into());
        schema::steps(&host, &loaded, options, &mut report);
    }
    if report.ok() {
        host.keep(&loaded)?;
    }
    Ok(report)
}

/// How an engine broke the contract.
enum Broken {
    /// A call trapped, timed out, ran out of memory, or returned an error.
    Call(EngineError),
    /// The daemon would refuse what it returned.
    Refused(String),
}

type StepResult = Result<(), (&'static str, Broken)>;

/// An engine call's failure in one line.
fn explain(e: &EngineError, limits: &EngineLimits) -> String {
    match e {
        EngineError::Rejected(msg) => format!("the engine returned an error: {msg}"),
        EngineError::Schema(_) => e.to_string(),
        EngineError::Trap(TrapKind::Timeout, msg) => {
            let why = msg.lines().next().unwrap_or_default();
            format!(
                "ran past its time budget of {} ms of CPU time (wall-clock backstop {} ms): {why}",
                limits.timeout_ms, limits.wall_timeout_ms
            )
        }
        EngineError::Trap(TrapKind::Memory, _) => {
            format!(
                "went over its memory cap of {} MiB (memories and tables together)",
                limits.memory_mib
            )
        }
        EngineError::Trap(TrapKind::Trap, msg) => {
            let cause = msg.lines().rev().find(|l| !l.trim().is_empty());
            format!("trapped: {}", cause.unwrap_or("no reason given").trim())
        }
    }
}

/// The scenario after initialize; stops at the first step that fails.
fn scenario(
    sim: &mut Sim,
    inst: &mut EngineInstance,
    config: &str,
    report: &mut Report,
) -> StepResult {
    let at = |step| move |why| (step, why);

    let d = sim.decide(inst).map_err(at("empty pool"))?;
    report.pass("empty pool", describe(&d));

    let step = "growing pool";
    let mut rounds = 0;
    loop {
        rounds += 1;
        sim.progress();
        let d = sim.decide(inst).map_err(at(step))?;
        if (d.launches.is_empty() && d.destroy.is_empty() && sim.settled()) || rounds == 8 {
            break;
        }
    }
    report.pass(step, format!("{} after {rounds} decides", sim.census()));

    let step = "failing instances";
    let running: Vec<u64> = sim.handles(|r| r.state == InstanceState::Running);
    if let Some(&first) = running.first() {
        sim.change(first, |r| r.state = InstanceState::Failed);
    }
    if let Some(&second) = running.get(1) {
        sim.change(second, |r| r.health = Health::Missing);
    }
    let failed = match running.len() {
        0 => "no instance to fail".to_string(),
        1 => "1 failed".to_string(),
        _ => "1 failed and 1 missing".to_string(),
    };
    for _ in 0..3 {
        sim.decide(inst).map_err(at(step))?;
        sim.progress();
    }
    report.pass(step, format!("{failed}, then {}", sim.census()));

    let step = "shrinking pool";
    let live = sim.handles(|r| r.state < InstanceState::Terminating);
    for h in live.iter().step_by(2) {
        sim.change(*h, |r| r.state = InstanceState::Terminated);
    }
    for _ in 0..3 {
        sim.decide(inst).map_err(at(step))?;
        sim.progress();
    }
    report.pass(
        step,
        format!(
            "{} went away, then {}",
            live.len().div_ceil(2),
            sim.census()
        ),
    );

    let step = "full snapshot again";
    sim.synced = None;
    let d = sim.decide(inst).map_err(at(step))?;
    report.pass(step, describe(&d));

    let step = "reconfigure";
    inst.reconfigure(config)
        .map_err(|e| (step, Broken::Call(e)))?;
    sim.decide(inst).map_err(at(step))?;
    report.pass(step, "accepted the same config again".into());

    let step = "steady decides";
    for _ in 0..200 {
        sim.progress();
        sim.decide(inst).map_err(at(step))?;
    }
    report.pass(step, format!("200 more, then {}", sim.census()));
    Ok(())
}

fn describe(d: &Decision) -> String {
    let launches: u32 = d.launches.iter().map(|l| l.count).sum();
    format!("launches {launches}, destroys {}", d.destroy.len())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A domain as the daemon would keep it, without workers: instances move through their states
/// when told to, and decisions are checked and carried out on the records.
struct Sim {
    /// The live instances plus those that ended since the last decide.
    records: Vec<InstanceRecord>,
    /// The newest event number, and the one the last carried-out decide saw.
    seq: i64,
    last_seq: i64,
    memo: Vec<u8>,
    next_handle: u64,
    now: f64,
    synced: Option<Synced>,
    max_instances: u32,
    max_bytes: u32,
    times: Vec<Duration>,
    fuel: Vec<u64>,
    /// The readings every decide gets, as just arrived.
    readings: Vec<(String, f64)>,
}

impl Sim {
    fn readings(&self) -> Vec<crate::sensors::Reading> {
        self.readings
            .iter()
            .map(|(name, value)| crate::sensors::Reading {
                reading: crate::engine::bindings::SensorReading {
                    name: name.clone(),
                    value: *value,
                    time: self.now,
                    stale: false,
                },
                fresh: true,
            })
            .collect()
    }

    fn new(options: &CheckOptions) -> Sim {
        Sim {
            records: Vec::new(),
            seq: 0,
            last_seq: 0,
            memo: Vec::new(),
            next_handle: 1,
            now: 1_000_000.0,
            synced: None,
            max_instances: options.max_instances,
            max_bytes: options.limits.max_decision_bytes,
            times: Vec::new(),
            fuel: Vec::new(),
            readings: options.readings.clone(),
        }
    }

    /// Changes an instance as one event.
    fn change(&mut self, handle: u64, f: impl FnOnce(&mut InstanceRecord)) {
        self.seq += 1;
        let (seq, now) = (self.seq, self.now);
        if let Some(r) = self.records.iter_mut().find(|r| r.handle == handle) {
            let (state, health) = (r.state, r.health);
            f(r);
            r.changed_seq = seq;
            if r.state != state {
                r.state_time = now;
            }
            if r.health != health {
                r.health_time = now;
            }
        }
    }

    fn handles(&self, keep: impl Fn(&InstanceRecord) -> bool) -> Vec<u64> {
        self.records
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.handle)
            .collect()
    }

    /// Moves every instance one state on: a launch comes up, a destroy completes.
    fn progress(&mut self) {
        use InstanceState::*;
        for h in self.handles(|r| !r.state.is_final()) {
            self.change(h, |r| {
                r.state = match r.state {
                    Requesting | Requested | ErrorRetrying => Pending,
                    Pending => Started,
                    Started => Running,
                    Terminating => Terminated,
                    other => other,
                };
                if r.state == Running {
                    r.health = Health::Ok;
                }
            });
        }
    }

    /// True when no instance is on its way up or down.
    fn settled(&self) -> bool {
        self.records
            .iter()
            .all(|r| matches!(r.state, InstanceState::Running) || r.state.is_final())
    }

    fn census(&self) -> String {
        let running = self.handles(|r| r.state == InstanceState::Running).len();
        let other = self.handles(|r| !r.state.is_final()).len() - running;
        format!("{running} running, {other} on the way")
    }

    /// One decide, checked and carried out. The error says what broke the contract.
    fn decide(&mut self, inst: &mut EngineInstance) -> Result<Decision, Broken> {
        self.now += 1.0;
        let view = DecideView::new(
            self.records.clone(),
            self.last_seq,
            self.seq,
            self.memo.clone(),
        );
        let (snap, told) = snapshot::build(&view, &self.readings(), self.synced.take(), self.now);
        let fuel = inst.fuel();
        let t = Instant::now();
        let d = inst.decide(&snap, self.now as u64).map_err(Broken::Call)?;
        self.times.push(t.elapsed());
        if let (Some(before), Some(after)) = (fuel, inst.fuel()) {
            self.fuel.push(after - before);
        }
        let live: Vec<InstanceRecord> = self
            .records
            .iter()
            .filter(|r| !r.state.is_final())
            .cloned()
            .collect();
        decision::check(&d, &live, self.max_instances, self.max_bytes)
            .map_err(|e| Broken::Refused(format!("the daemon would refuse its decision: {e}")))?;
        self.carry_out(&d);
        self.synced = Some(told);
        Ok(d)
    }

    fn carry_out(&mut self, d: &Decision) {
        if let Some(memo) = &d.memo {
            self.memo = memo.clone();
        }
        self.records.retain(|r| !r.state.is_final());
        self.last_seq = self.seq;
        for &h in &d.destroy {
            self.change(h, |r| r.state = InstanceState::Terminating);
        }
        for _ in 0..d.launches.iter().map(|l| l.count).sum::<u32>() {
            self.seq += 1;
            self.records
                .push(new_record(self.next_handle, self.seq, self.now));
            self.next_handle += 1;
        }
    }

    fn fill(&mut self, m: &mut Metrics) {
        self.times.sort();
        self.fuel.sort();
        let pick = |n: usize, p: f64| ((n.max(1) - 1) as f64 * p) as usize;
        m.decides = self.times.len();
        if !self.times.is_empty() {
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            m.decide_us_p50 = us(self.times[pick(self.times.len(), 0.5)]);
            m.decide_us_p99 = us(self.times[pick(self.times.len(), 0.99)]);
        }
        m.fuel_per_decide = self.fuel.get(pick(self.fuel.len(), 0.5)).copied();
    }
}

fn new_record(handle: u64, seq: i64, now: f64) -> InstanceRecord {
    InstanceRecord {
        id: format!("i-check-{handle}"),
        domain: "check".into(),
        launch_id: format!("l-check-{handle}"),
        state: InstanceState::Requesting,
        state_time: now,
        health: Health::Unknown,
        health_time: now,
        last_heartbeat: None,
        vars: vec![],
        pid: None,
        pid_start: None,
        error: None,
        changed_seq: seq,
        created: now,
        handle,
        cloud_id: None,
        protected: false,
        drain_until: None,
        drained: false,
        version: 1,
        surge: false,
    }
}
