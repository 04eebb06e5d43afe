//! Reaction time, with the real daemon and real processes:
//! - from `kill -9` of a worker to the launch of its replacement. Three spans are measured:
//!   kill → exit noticed (the `failed` event), exit → replacement recorded (`launch-recorded`),
//!   and kill → replacement process started (`started`), all on the same clock.
//!   Set EPU_BENCH_KILLS (default 100).
//! - from a sensor reading above high water (`epu sensor push` to a queuelen domain) to the
//!   launch it causes. Set EPU_BENCH_CROSSINGS (default 50).
//!
//! `cargo bench -p epu --bench reaction` prints p50, p99 and max, and the suite's target.

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../tests/kit/mod.rs"]
mod kit;
mod support;

use kit::{unix_now as now, Epu};
use support::{env_count, Report};

fn running_pids(epu: &Epu) -> Vec<i32> {
    let v: Value = serde_json::from_str(&epu.ok(&["status", "--json"])).unwrap();
    v["domains"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "running")
        .filter_map(|i| i["pid"].as_i64().map(|p| p as i32))
        .collect()
}

fn events_after(epu: &Epu, seq: i64) -> Vec<Value> {
    epu.ok(&["events", "--json", "--after", &seq.to_string()])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Prints p50, p99 and max of `v`; returns p99.
fn summary(name: &str, mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<40} {:>9.2} {:>9.2} {:>9.2}",
        p(0.5),
        p(0.99),
        v[v.len() - 1]
    );
    p(0.99)
}

/// The states of the instances of domain `name`.
fn pool(epu: &Epu, name: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&epu.ok(&["status", name, "--json"])).unwrap();
    v["domains"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap().to_string())
        .collect()
}

/// Pushes a queue length above high water to an empty queuelen domain, `n` times; returns
/// the milliseconds from each push to the launch decision it caused.
fn crossings(epu: &Epu, n: usize) -> Vec<f64> {
    epu.add_domain("q")
        .engine("queuelen")
        .config("queuelen_high_water=5")
        .config("queuelen_low_water=1")
        .flag("--sensor", "kind=pushed,name=queue-length")
        .flag("--pulse-ms", "60000")
        .command(&[
            "sh",
            "-c",
            "while :; do \"$EPU_BIN\" heartbeat; sleep 1; done",
        ])
        .ok();
    let wait = |want: &dyn Fn(&[String]) -> bool| {
        let end = Instant::now() + Duration::from_secs(20);
        while !want(&pool(epu, "q")) {
            assert!(Instant::now() < end, "the queuelen pool did not settle");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut seq = events_after(epu, 0).last().unwrap()["seq"]
        .as_i64()
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let pushed = now();
        epu.ok(&["sensor", "push", "q", "queue-length", "50"]);
        let end = Instant::now() + Duration::from_secs(10);
        let launched = loop {
            assert!(Instant::now() < end, "no launch after the crossing");
            let found = events_after(epu, seq).into_iter().find(|e| {
                e["kind"] == "decision"
                    && e["detail"]["launch"]
                        .as_array()
                        .is_some_and(|l| !l.is_empty())
            });
            if let Some(e) = found {
                break e;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        out.push((launched["time"].as_f64().unwrap() - pushed) * 1e3);
        // Back to an empty pool: the instance must be running before a reading of 0 trims it.
        wait(&|p| p.len() == 1 && p[0] == "running");
        epu.ok(&["sensor", "push", "q", "queue-length", "0"]);
        wait(&|p| p.is_empty());
        seq = events_after(epu, seq).last().unwrap()["seq"]
            .as_i64()
            .unwrap();
    }
    out
}

fn main() {
    let kills = env_count("EPU_BENCH_KILLS", 100);
    let epu = Epu::new();
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../launch-plans/quickstart");
    epu.ok(&["boot", plan.to_str().unwrap()]);

    let wait_three = || {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let pids = running_pids(&epu);
            if pids.len() == 3 {
                return pids;
            }
            assert!(
                Instant::now() < end,
                "pool did not settle: {}\n{}",
                epu.ok(&["status"]),
                epu.ok(&["events"])
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (mut noticed, mut recorded, mut started) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq = events_after(&epu, 0)
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
            for e in events_after(&epu, seq) {
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
    let issued: Vec<f64> = noticed.iter().zip(&recorded).map(|(a, b)| a + b).collect();
    let n = env_count("EPU_BENCH_CROSSINGS", 50);
    let crossed = crossings(&epu, n);
    epu.ok(&["terminate"]);
    println!("reaction over {kills} kills of a quickstart worker and {n} crossings (ms)");
    println!("{:<40} {:>9} {:>9} {:>9}", "span", "p50", "p99", "max");
    summary("kill -9 -> exit recorded (failed)", noticed);
    summary("exit recorded -> launch recorded", recorded);
    let issued_p99 = summary("kill -9 -> replacement launch recorded", issued);
    let started_p99 = summary("kill -9 -> replacement spawned", started);
    let crossed_p99 = summary("push above high water -> launch recorded", crossed);
    let mut report = Report::new("reaction");
    report.at_most(
        "worker death -> replacement launch issued, p99",
        issued_p99,
        "ms",
        50.0,
    );
    report.info(
        "worker death -> replacement spawned, p99",
        started_p99,
        "ms",
    );
    report.info(
        "reading above high water -> launch issued, p99",
        crossed_p99,
        "ms",
    );
    report.finish();
}
