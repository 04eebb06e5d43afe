//! Crash-restart torture. Each round runs a scaling storm (reconfigures up and down, killed
//! workers, a bursty pushed sensor) on two domains, `kill -9`s the daemon at a random moment,
//! sometimes kills workers while it is down, restarts it, and checks the invariants against the
//! OS (/proc) and the store:
//! - no live worker that the store does not know, or knows as ended;
//! - no instance launched twice: one live group leader per instance, one leader pid ever
//!   (each count worker leaves a child in its group, which must die with it);
//! - the store's states agree with the processes within one reconciliation;
//! - engine configs are exactly as last acknowledged, and the engine's memo (its count of
//!   launches) matches the launch records committed with it;
//! - the event log keeps every event committed before the crash and has no gap in its sequence.
//!
//! `EPU_TORTURE_ROUNDS` (default 20) and `EPU_TORTURE_SEED` (default: from the clock) pick the
//! run; a violation prints both, to replay it. `./dev.sh torture` runs the full 100 rounds.

use crate::kit;

use kit::seeded::{Rng, Run};
use kit::{is_alive, wait_for, Epu, EPU};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FAULTY: &str = env!("EPU_TEST_ENGINE_FAULTY");
/// The window the store has to catch up with the processes after a restart.
const RECONCILE: Duration = Duration::from_secs(5);
const COUNT_MAX: u64 = 8;
/// The count domain's workers ignore SIGTERM: each destroy needs its SIGKILL after this grace.
const GRACE: u64 = 1;

fn plan(dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        r#"name = "torture"

[[domain]]
name = "count"
engine = "{FAULTY}"
max_instances = {COUNT_MAX}
pulse_ms = 100
config = {{ mode = "count", n = 3 }}
process = {{ command = ["/bin/sh", "-c", "trap '' TERM; /bin/sleep 100000 & exec /bin/sleep 100000"], grace_seconds = {GRACE} }}
health = {{ boot_timeout = 100000, missing_timeout = 100000 }}

[[domain]]
name = "queue"
engine = "queuelen"
max_instances = 10
pulse_ms = 100
config = {{ queuelen_high_water = 20, queuelen_low_water = 2, min_instances = 1, max_instances = 4 }}
sensor = [{{ kind = "pushed", name = "queue-length" }}]
process = {{ command = ["/bin/sleep", "100000"], grace_seconds = 1 }}
health = {{ boot_timeout = 100000, missing_timeout = 100000 }}
"#
    );
    let path = dir.join("torture.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What a reconfigure the storm sent left to expect: a value per (domain, key); a value whose
/// request was cut off by the crash may or may not have been committed.
#[derive(Default)]
struct Expected {
    config: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Expected {
    fn sent(&mut self, domain: &str, key: &str, value: &str) {
        self.config
            .entry((domain.into(), key.into()))
            .or_default()
            .insert(value.into());
    }

    fn acknowledged(&mut self, domain: &str, key: &str, value: &str) {
        let set = self.config.entry((domain.into(), key.into())).or_default();
        set.clear();
        set.insert(value.into());
    }
}

/// Whether a process leads its process group.
fn is_leader(pid: i32) -> bool {
    nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).is_ok_and(|g| g.as_raw() == pid)
}

/// The live worker processes of the state dir, children included: instance id → pids.
fn worker_processes(state_dir: &str) -> HashMap<String, Vec<i32>> {
    kit::workers_by_instance(std::path::Path::new(state_dir))
}

struct Row {
    domain: String,
    state: String,
    state_time: f64,
    pid: Option<i32>,
}

/// One consistent read of the store.
struct StoreView {
    instances: BTreeMap<String, Row>,
    /// Per domain: the config in force, the memo, and its instance records.
    configs: BTreeMap<String, serde_json::Map<String, Value>>,
    memos: BTreeMap<String, String>,
    records: BTreeMap<String, u64>,
    /// Every event's seq, kind and time, in order.
    events: Vec<(i64, String, f64)>,
    /// Every pid a `state` or `adopted` event named, per instance.
    event_pids: BTreeMap<String, BTreeSet<i64>>,
    launches_recorded: BTreeMap<String, u32>,
}

fn read_store(db: &std::path::Path) -> StoreView {
    let mut c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let tx = c.transaction().unwrap();
    let mut view = StoreView {
        instances: BTreeMap::new(),
        configs: BTreeMap::new(),
        memos: BTreeMap::new(),
        records: BTreeMap::new(),
        events: Vec::new(),
        event_pids: BTreeMap::new(),
        launches_recorded: BTreeMap::new(),
    };
    let mut q = tx
        .prepare("SELECT id, domain, state, state_time, pid FROM instances")
        .unwrap();
    for r in q
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Row {
                    domain: r.get(1)?,
                    state: r.get(2)?,
                    state_time: r.get(3)?,
                    pid: r.get(4)?,
                },
            ))
        })
        .unwrap()
    {
        let (id, row) = r.unwrap();
        *view.records.entry(row.domain.clone()).or_default() += 1;
        view.instances.insert(id, row);
    }
    let mut q = tx
        .prepare(
            "SELECT d.name, CAST(d.memo AS BLOB), c.config FROM domains d \
             JOIN engine_configs c ON c.domain = d.name AND c.version = d.config_version",
        )
        .unwrap();
    for r in q
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<Vec<u8>>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .unwrap()
    {
        let (name, memo, config) = r.unwrap();
        // queuelen's memo is a little-endian f64, not text.
        let memo = String::from_utf8_lossy(&memo.unwrap_or_default()).into_owned();
        view.memos.insert(name.clone(), memo);
        view.configs
            .insert(name, serde_json::from_str(&config).unwrap());
    }
    let mut q = tx
        .prepare("SELECT seq, kind, instance, detail, time FROM events ORDER BY seq")
        .unwrap();
    let rows = q
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, f64>(4)?,
            ))
        })
        .unwrap();
    for r in rows {
        let (seq, kind, instance, detail, time) = r.unwrap();
        if let Some(id) = instance {
            if kind == "launch-recorded" {
                *view.launches_recorded.entry(id.clone()).or_default() += 1;
            }
            // The events that name the worker's own pid (others name what it left behind).
            if kind == "state" || kind == "adopted" {
                let detail: Value = serde_json::from_str(&detail).unwrap_or_default();
                if let Some(pid) = detail["pid"].as_i64() {
                    view.event_pids.entry(id).or_default().insert(pid);
                }
            }
        }
        view.events.push((seq, kind, time));
    }
    view
}

/// Live states: the process should be alive. Ended states: it must not be.
const RUNNING: &[&str] = &["started", "running", "running-failed"];
const ENDED: &[&str] = &["terminated", "failed", "rejected"];

/// Checks the invariants that hold at any moment the daemon is up (or down): what the store
/// says against the processes. Returns the violations and counts the checks made.
fn check_now(
    db: &std::path::Path,
    state_dir: &str,
    pids_ever: &mut BTreeMap<String, BTreeSet<i32>>,
    checks: &mut u64,
) -> Vec<String> {
    let procs = worker_processes(state_dir);
    let view = read_store(db);
    let mut bad = Vec::new();
    let mut check = |ok: bool, what: String| {
        *checks += 1;
        if !ok {
            bad.push(what);
        }
    };
    for (id, pids) in &procs {
        let known = view.instances.get(id);
        check(
            known.is_some_and(|r| !ENDED.contains(&r.state.as_str())),
            format!(
                "unknown worker: {id} (pids {pids:?}) is {}",
                known.map_or("not in the store", |r| r.state.as_str())
            ),
        );
        // A count worker leaves a child in its group: the leaders tell launches apart.
        let leaders: Vec<i32> = pids.iter().copied().filter(|&p| is_leader(p)).collect();
        check(
            leaders.len() <= 1,
            format!("double launch: {id} runs as {leaders:?}"),
        );
        let ever = pids_ever.entry(id.clone()).or_default();
        ever.extend(leaders);
        // No leader at all: the storm just killed it and the daemon has yet to see it (it
        // kills what the leader left once it does, which the check of ended instances sees).
        check(
            ever.len() <= 1,
            format!("double launch: {id} has run as {ever:?}"),
        );
    }
    for (id, row) in &view.instances {
        let live = procs.get(id).cloned().unwrap_or_default();
        if RUNNING.contains(&row.state.as_str()) {
            check(
                row.pid.is_some_and(|p| live.contains(&p)),
                format!(
                    "store disagrees: {id} of {} is {} with pid {:?}, live pids {live:?}",
                    row.domain, row.state, row.pid
                ),
            );
        }
        if row.state == "terminating" {
            let age = kit::unix_now() - row.state_time;
            check(
                age < (GRACE + 2) as f64,
                format!("store disagrees: {id} has been terminating for {age:.1} s, pids {live:?}"),
            );
        }
        if ENDED.contains(&row.state.as_str()) {
            check(
                live.is_empty(),
                format!(
                    "store disagrees: {id} is {} but runs as {live:?}",
                    row.state
                ),
            );
        }
    }
    for (id, pids) in &view.event_pids {
        check(
            pids.len() <= 1,
            format!("double launch: the events give {id} the pids {pids:?}"),
        );
    }
    for (id, n) in &view.launches_recorded {
        check(
            *n == 1,
            format!("double launch: {id} has {n} launch records"),
        );
    }
    let memo = view.memos.get("count").cloned().unwrap_or_default();
    let records = view.records.get("count").copied().unwrap_or(0);
    check(
        memo == format!("launched={records}") || (memo.is_empty() && records == 0),
        format!("memo '{memo}' but {records} launch records for 'count'"),
    );
    let first = view.events.first().map_or(1, |e| e.0);
    let contiguous = view
        .events
        .iter()
        .enumerate()
        .all(|(i, e)| e.0 == first + i as i64);
    check(
        first == 1 && contiguous,
        format!(
            "event seq has a gap: {} events from {first} to {:?}",
            view.events.len(),
            view.events.last()
        ),
    );
    bad
}

/// Sends one CLI command to the daemon; true if it was acknowledged.
fn cli(state_dir: &str, args: &[&str]) -> bool {
    Command::new(EPU)
        .env("EPU_STATE_DIR", state_dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One storm step: a reconfigure, a killed worker or a sensor burst.
fn storm_step(rng: &mut Rng, state_dir: &str, expected: &Mutex<Expected>) {
    match rng.range(0, 9) {
        0..=2 => {
            let n = rng.range(0, COUNT_MAX).to_string();
            expected.lock().unwrap().sent("count", "n", &n);
            if cli(state_dir, &["reconfigure", "count", &format!("n={n}")]) {
                expected.lock().unwrap().acknowledged("count", "n", &n);
            }
        }
        3 => {
            let max = rng.range(1, 6).to_string();
            expected
                .lock()
                .unwrap()
                .sent("queue", "max_instances", &max);
            if cli(
                state_dir,
                &["reconfigure", "queue", &format!("max_instances={max}")],
            ) {
                expected
                    .lock()
                    .unwrap()
                    .acknowledged("queue", "max_instances", &max);
            }
        }
        4..=5 => kill_a_worker(rng, state_dir),
        _ => {
            let depth = if rng.chance(30) {
                rng.range(40, 200)
            } else {
                rng.range(0, 5)
            };
            cli(
                state_dir,
                &[
                    "sensor",
                    "push",
                    "queue",
                    "queue-length",
                    &depth.to_string(),
                ],
            );
        }
    }
}

fn kill_a_worker(rng: &mut Rng, state_dir: &str) {
    let mut pids: Vec<i32> = worker_processes(state_dir)
        .into_values()
        .flatten()
        .collect();
    pids.sort();
    if !pids.is_empty() {
        let pid = pids[rng.range(0, pids.len() as u64 - 1) as usize];
        kit::signal(pid, kit::Signal::SIGKILL);
    }
}

fn start_daemon(epu: &Epu, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = epu
        .command()
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let up = wait_for(Duration::from_secs(20), || {
        epu.run(&["status"]).status.success()
    });
    assert!(up, "the daemon did not come up");
    child
}

/// Checks that configs are as acknowledged (settling any cut-off reconfigure to what the store
/// kept), and that the daemon serves the same configs as the store.
fn check_configs(
    epu: &Epu,
    db: &std::path::Path,
    expected: &mut Expected,
    checks: &mut u64,
) -> Vec<String> {
    let view = read_store(db);
    let mut bad = Vec::new();
    for ((domain, key), allowed) in &mut expected.config {
        *checks += 1;
        let have = view.configs[domain.as_str()][key.as_str()].to_string();
        if allowed.contains(&have) {
            allowed.clear();
            allowed.insert(have);
        } else {
            bad.push(format!(
                "config {domain}.{key} is {have}, last committed {allowed:?}"
            ));
        }
    }
    let status = epu.status();
    for d in status["domains"].as_array().unwrap() {
        *checks += 1;
        let name = d["name"].as_str().unwrap();
        if d["config"] != Value::Object(view.configs[name].clone()) {
            bad.push(format!(
                "the daemon serves {name}'s config {} but the store has {:?}",
                d["config"], view.configs[name]
            ));
        }
    }
    bad
}

/// Checks until the invariants hold or the reconciliation window passes; returns what still
/// failed at the end.
fn settle(
    db: &std::path::Path,
    state_dir: &str,
    pids_ever: &mut BTreeMap<String, BTreeSet<i32>>,
    checks: &mut u64,
) -> Vec<String> {
    let end = Instant::now() + RECONCILE;
    loop {
        let bad = check_now(db, state_dir, pids_ever, checks);
        if bad.is_empty() || Instant::now() > end {
            return bad;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether the count domain converges to its configured n, every one of them started or running
/// with its process alive.
fn converges(db: &std::path::Path, state_dir: &str) -> Result<(), String> {
    let mut last = String::new();
    let ok = wait_for(Duration::from_secs(15), || {
        let view = read_store(db);
        let n = view.configs["count"]["n"].as_u64().unwrap_or(0);
        let procs = worker_processes(state_dir);
        let staying: Vec<(&String, &Row)> = view
            .instances
            .iter()
            .filter(|(_, r)| {
                r.domain == "count"
                    && r.state != "terminating"
                    && !ENDED.contains(&r.state.as_str())
            })
            .collect();
        let working = staying
            .iter()
            .filter(|(id, r)| RUNNING.contains(&r.state.as_str()) && procs.contains_key(*id))
            .count();
        last = format!("n = {n}, {} staying, {working} working", staying.len());
        staying.len() as u64 == n && working == staying.len()
    });
    if ok {
        Ok(())
    } else {
        Err(format!("the count domain did not converge: {last}"))
    }
}

#[test]
fn crash_restart_torture_loses_and_doubles_nothing() {
    let Run {
        rounds,
        seed,
        replay,
    } = Run::from_env("EPU_TORTURE_ROUNDS", 20);
    eprintln!("torture: {rounds} rounds, seed {seed} (replay: {replay})");
    let mut rng = Rng(seed);

    let epu = Epu::new();
    let log = epu.dir.path().join("daemon.log");
    let plan = plan(epu.dir.path());
    epu.ok(&["boot", plan.to_str().unwrap()]);
    // `boot` started a detached daemon; from here on the test owns the daemon process.
    let booted = epu.daemon_pid().unwrap();
    kit::kill9(booted);
    assert!(wait_for(Duration::from_secs(5), || !is_alive(booted)));
    let mut daemon = start_daemon(&epu, &log);
    let state_dir = epu.state_dir().canonicalize().unwrap();
    let db = state_dir.join("epu.db");
    let state_dir = state_dir.to_str().unwrap().to_string();

    let expected = Arc::new(Mutex::new(Expected::default()));
    expected.lock().unwrap().acknowledged("count", "n", "3");
    let mut pids_ever = BTreeMap::new();
    let mut checks = 0u64;
    let mut violations: Vec<String> = Vec::new();
    let started = Instant::now();

    for round in 1..=rounds {
        // The storm runs until the crash.
        let stop = Arc::new(AtomicBool::new(false));
        let storm = {
            let (stop, expected, state_dir) = (stop.clone(), expected.clone(), state_dir.clone());
            let mut rng = Rng(rng.next());
            std::thread::spawn(move || {
                let mut steps = 0;
                while !stop.load(Ordering::Relaxed) {
                    storm_step(&mut rng, &state_dir, &expected);
                    steps += 1;
                    std::thread::sleep(Duration::from_millis(rng.range(0, 150)));
                }
                steps
            })
        };
        std::thread::sleep(Duration::from_millis(rng.range(200, 2500)));
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        let steps = storm.join().unwrap();

        // With the daemon down, the store is what was last committed: check it as it is.
        let mut bad: Vec<String> = check_now(&db, &state_dir, &mut pids_ever, &mut checks)
            .into_iter()
            .filter(|v| !v.starts_with("store disagrees"))
            .collect();
        let at_crash = read_store(&db);
        let killed = rng.chance(40);
        if killed {
            kill_a_worker(&mut rng, &state_dir);
        }

        daemon = start_daemon(&epu, &log);
        bad.extend(settle(&db, &state_dir, &mut pids_ever, &mut checks));
        bad.extend(check_configs(
            &epu,
            &db,
            &mut expected.lock().unwrap(),
            &mut checks,
        ));
        let after = read_store(&db);
        checks += 1;
        let last = at_crash.events.last();
        if last.is_some_and(|e| !after.events.contains(e)) {
            bad.push(format!(
                "the event committed last before the crash ({last:?}) is gone"
            ));
        }
        if round % 5 == 0 || !bad.is_empty() {
            checks += 1;
            if let Err(e) = converges(&db, &state_dir) {
                bad.push(e);
            }
        }
        eprintln!(
            "round {round}/{rounds}: {steps} storm steps, {} events, {} instances, \
             worker killed while down: {killed}, violations: {}",
            after.events.len(),
            after.instances.len(),
            bad.len()
        );
        for v in &bad {
            eprintln!("  VIOLATION (round {round}, {replay}): {v}");
        }
        violations.extend(bad.into_iter().map(|v| format!("round {round}: {v}")));
    }

    let final_view = read_store(&db);
    eprintln!(
        "torture: {rounds} rounds, {checks} invariant checks, {} violations, {} events, \
         {} instances, {:.0} s (seed {seed})",
        violations.len(),
        final_view.events.len(),
        final_view.instances.len(),
        started.elapsed().as_secs_f64()
    );
    cli(&state_dir, &["terminate"]);
    let _ = daemon.wait();
    assert!(
        violations.is_empty(),
        "{} violations; replay with {replay}:\n{}\n(daemon log: {})",
        violations.len(),
        violations.join("\n"),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let left = worker_processes(&state_dir);
    assert!(left.is_empty(), "workers left after terminate: {left:?}");
}
