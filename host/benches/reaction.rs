//! Reaction time: from `kill -9` of a worker to the launch of its replacement, with the real
//! daemon and real processes. Set EPU_BENCH_KILLS (default 20).
//!
//! `cargo bench -p epu --bench reaction` prints p50, p99 and max. Three spans are measured:
//! kill → exit noticed (the `failed` event), exit → replacement recorded (`launch-recorded`),
//! and kill → replacement process started (`started`), all on the same clock.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod support;

use support::epu;

fn running_pids(state: &Path) -> Vec<i32> {
    let v: Value = serde_json::from_str(&epu(state, &["status", "--json"])).unwrap();
    v["domains"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "running")
        .filter_map(|i| i["pid"].as_i64().map(|p| p as i32))
        .collect()
}

fn events_after(state: &Path, seq: i64) -> Vec<Value> {
    epu(state, &["events", "--json", "--after", &seq.to_string()])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<36} {:>9.2} {:>9.2} {:>9.2}",
        p(0.5),
        p(0.99),
        v[v.len() - 1]
    );
}

fn main() {
    let kills: usize = std::env::var("EPU_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let state: PathBuf = dir.path().join("state");
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../launch-plans/quickstart");
    epu(&state, &["boot", plan.to_str().unwrap()]);

    let wait_three = || {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let pids = running_pids(&state);
            if pids.len() == 3 {
                return pids;
            }
            assert!(Instant::now() < end, "pool did not settle");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (mut noticed, mut recorded, mut started) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq = events_after(&state, 0)
        .last()
        .and_then(|e| e["seq"].as_i64())
        .unwrap_or(0);
    for _ in 0..kills {
        let pid = wait_three()[0];
        let killed_at = now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let (mut failed_t, mut recorded_t, mut started_t) = (None, None, None);
        let end = Instant::now() + Duration::from_secs(10);
        while started_t.is_none() {
            assert!(Instant::now() < end, "no replacement within 10 s");
            for e in events_after(&state, seq) {
                seq = e["seq"].as_i64().unwrap();
                let t = e["time"].as_f64().unwrap();
                match e["kind"].as_str().unwrap() {
                    "state" if e["detail"]["to"] == "failed" => failed_t = Some(t),
                    "launch-recorded" if failed_t.is_some() => recorded_t = recorded_t.or(Some(t)),
                    "state" if e["detail"]["to"] == "started" && recorded_t.is_some() => {
                        started_t = started_t.or(Some(t))
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let (f, r, s) = (failed_t.unwrap(), recorded_t.unwrap(), started_t.unwrap());
        noticed.push((f - killed_at) * 1e3);
        recorded.push((r - f) * 1e3);
        started.push((s - killed_at) * 1e3);
    }
    epu(&state, &["terminate"]);
    println!("reaction over {kills} kills of a quickstart worker (ms)");
    println!("{:<36} {:>9} {:>9} {:>9}", "span", "p50", "p99", "max");
    summary("kill -9 -> exit recorded (failed)", noticed);
    summary("exit recorded -> launch recorded", recorded);
    summary("kill -9 -> replacement spawned", started);
}
