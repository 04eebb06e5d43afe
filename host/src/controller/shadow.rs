//! Shadow engines: candidates that decide beside a domain's live engine, on a full snapshot of
//! what it saw, each in its own sandbox with the domain's limits and its own memo. Their
//! decisions are compared with the live engine's and never carried out.
//!
//! They run on the shadow thread, apart from the decide threads: a controller hands each
//! shadow a job after its own decide and goes on. A shadow still busy with its last job misses
//! the next one (counted as skipped), so a shadow that traps or spins costs the live domain
//! nothing but the snapshot it is handed. What a shadow learns is written to the store at most
//! once a second.

use crate::contract::engine_status_name;
use crate::engine::bindings::{Decision, InstanceState, Snapshot};
use crate::engine::{CallLimits, EngineHost, EngineInstance, LoadedEngine};
use crate::model::shadow::{ShadowPoint, ShadowRecord, ShadowStats};
use crate::store::{ShadowFlush, Store};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a shadow's stats, points and pairs are written at most.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The jobs waiting for the shadow thread, across every domain.
const QUEUE: usize = 256;

/// One shadow of a domain, shared between its controller and the shadow thread.
pub struct Shadow {
    pub id: i64,
    loaded: Arc<LoadedEngine>,
    config: String,
    limits: CallLimits,
    max_instances: u32,
    /// Set while a job of this shadow waits or runs.
    busy: AtomicBool,
    state: Mutex<State>,
}

struct State {
    instance: Option<EngineInstance>,
    memo: Vec<u8>,
    stats: ShadowStats,
    /// The counts both engines would keep, as last recorded.
    last_point: Option<(u32, u32)>,
    points: Vec<ShadowPoint>,
    pairs: Vec<(f64, Value, Value)>,
    flushed: Instant,
}

/// The live engine's decide, as a shadow's is compared with it.
pub struct LiveDecide {
    pub decision: Decision,
    pub micros: f64,
}

struct Job {
    shadow: Arc<Shadow>,
    snap: Snapshot,
    live: Arc<LiveDecide>,
}

impl Shadow {
    /// A shadow as stored, with its loaded engine, under the domain's limits.
    pub fn new(
        record: ShadowRecord,
        loaded: Arc<LoadedEngine>,
        limits: CallLimits,
        max_instances: u32,
    ) -> Shadow {
        Shadow {
            id: record.id,
            loaded,
            config: Value::Object(record.config).to_string(),
            limits,
            max_instances,
            busy: AtomicBool::new(false),
            state: Mutex::new(State {
                instance: None,
                memo: record.memo,
                stats: record.stats,
                last_point: None,
                points: Vec::new(),
                pairs: Vec::new(),
                flushed: Instant::now(),
            }),
        }
    }
}

/// The shadow thread's door.
#[derive(Clone)]
pub struct ShadowRunner {
    tx: SyncSender<Job>,
}

impl ShadowRunner {
    /// Starts the shadow thread.
    pub fn start(engines: Arc<EngineHost>, store: Arc<Store>) -> ShadowRunner {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("epu-shadows".into())
            .spawn(move || {
                for job in rx {
                    run(&engines, &store, &job);
                    job.shadow.busy.store(false, Ordering::Release);
                }
            })
            .expect("spawning the shadow thread");
        ShadowRunner { tx }
    }

    /// Hands each shadow the snapshot `full` (a full one) and the live engine's decide; a
    /// shadow still busy, or a full queue, makes it a skipped decide.
    pub fn hand(&self, shadows: &[Arc<Shadow>], full: &Snapshot, live: LiveDecide) {
        let live = Arc::new(live);
        for s in shadows {
            if s.busy.swap(true, Ordering::AcqRel) {
                s.state.lock().unwrap().stats.skipped += 1;
                continue;
            }
            let job = Job {
                shadow: s.clone(),
                snap: full.clone(),
                live: live.clone(),
            };
            if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) =
                self.tx.try_send(job)
            {
                job.shadow.busy.store(false, Ordering::Release);
                job.shadow.state.lock().unwrap().stats.skipped += 1;
            }
        }
    }
}

/// One job: the shadow decides on the snapshot with its own memo, and its decision is
/// compared with the live one's.
fn run(engines: &EngineHost, store: &Store, job: &Job) {
    let s = &job.shadow;
    let mut st = s.state.lock().unwrap();
    let mut snap = job.snap.clone();
    snap.memo = (!st.memo.is_empty()).then(|| st.memo.clone());
    let began = Instant::now();
    let decided = match st.instance.take() {
        Some(i) => Ok(i),
        None => engines.instantiate(&s.loaded, &s.config, s.limits),
    }
    .map(|mut i| {
        let d = i.decide(&snap, rand::random());
        (i, d)
    });
    let micros = began.elapsed().as_secs_f64() * 1e6;
    let outcome = match decided {
        Ok((i, Ok(d))) => {
            st.instance = Some(i);
            check(&d, &snap, s.max_instances).map(|()| d)
        }
        // The instance is kept after an error it returned, and made anew after a trap.
        Ok((i, Err(e))) => {
            if matches!(e, crate::engine::EngineError::Rejected(_)) {
                st.instance = Some(i);
            }
            Err(e.to_string())
        }
        Err(e) => Err(format!("initialize: {e}")),
    };
    let now = snap.now;
    match outcome {
        Ok(d) => compare(&mut st, &job.live, &d, &snap, micros, now),
        Err(why) => {
            st.stats.faults += 1;
            st.stats.last_fault = Some(why.chars().take(1024).collect());
        }
    }
    if st.flushed.elapsed() >= FLUSH_EVERY {
        flush(store, s.id, &mut st);
    }
}

/// The instance count a decision keeps: those in service it does not destroy, plus launches.
fn target(snap: &Snapshot, d: &Decision) -> u32 {
    let staying = snap
        .instances
        .iter()
        .filter(|i| !i.draining && !leaving(i.state))
        .filter(|i| !d.destroy.contains(&i.handle))
        .count() as u32;
    staying + d.launches.iter().map(|l| l.count).sum::<u32>()
}

/// Whether an instance of that state is stopping or gone.
fn leaving(s: InstanceState) -> bool {
    use InstanceState::*;
    matches!(s, Terminating | Terminated | Failed | Rejected)
}

/// What the daemon would refuse of a shadow's decision: more than `max_instances`, or a
/// destroy of an instance the domain does not have.
fn check(d: &Decision, snap: &Snapshot, max_instances: u32) -> Result<(), String> {
    if let Some(h) = d
        .destroy
        .iter()
        .find(|h| !snap.instances.iter().any(|i| i.handle == **h))
    {
        return Err(format!(
            "invalid decision: destroys handle {h}, not an instance of the domain"
        ));
    }
    let t = target(snap, d);
    if t > max_instances {
        return Err(format!(
            "invalid decision: {t} instances, over max_instances = {max_instances}"
        ));
    }
    Ok(())
}

fn compare(
    st: &mut State,
    live: &LiveDecide,
    d: &Decision,
    snap: &Snapshot,
    micros: f64,
    now: f64,
) {
    let l = &live.decision;
    st.memo = d
        .memo
        .clone()
        .unwrap_or_else(|| std::mem::take(&mut st.memo));
    let stats = &mut st.stats;
    stats.decides += 1;
    stats.live_us += live.micros;
    stats.shadow_us += micros;
    let (lt, st_) = (target(snap, l), target(snap, d));
    let mut live_destroys = l.destroy.clone();
    let mut shadow_destroys = d.destroy.clone();
    live_destroys.sort_unstable();
    shadow_destroys.sort_unstable();
    let differs = lt != st_ || live_destroys != shadow_destroys || l.status != d.status;
    if differs {
        stats.differed += 1;
        match lt.cmp(&st_) {
            std::cmp::Ordering::Less => stats.more += 1,
            std::cmp::Ordering::Greater => stats.fewer += 1,
            _ if live_destroys != shadow_destroys => stats.other_victims += 1,
            _ => stats.other_status += 1,
        }
        st.pairs.push((now, summary(l, lt), summary(d, st_)));
    }
    if st.last_point != Some((lt, st_)) {
        st.last_point = Some((lt, st_));
        st.points.push((now, lt, st_));
    }
}

/// A decision as a pair shows it.
fn summary(d: &Decision, target: u32) -> Value {
    json!({
        "launch": d.launches.iter().map(|l| l.count).sum::<u32>(),
        "destroy": d.destroy,
        "status": engine_status_name(d.status),
        "target": target,
    })
}

fn flush(store: &Store, id: i64, st: &mut State) {
    let f = ShadowFlush {
        stats: &st.stats,
        memo: &st.memo,
        points: &st.points,
        pairs: &st.pairs,
    };
    match store.flush_shadow(id, &f) {
        Ok(()) => {
            st.points.clear();
            st.pairs.clear();
        }
        Err(e) => tracing::warn!(shadow = id, "writing a shadow's results: {e:#}"),
    }
    st.flushed = Instant::now();
}
