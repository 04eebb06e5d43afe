//! Scale of idle domains, with the real daemon: the daemon's RSS per idle domain, and the time
//! from a daemon start to the first decide with many domains and a warm compiled cache.
//! Set EPU_BENCH_DOMAINS (default 1000).
//!
//! `cargo bench -p epu --bench scale` prints the numbers against the suite's targets.

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../tests/kit/mod.rs"]
mod kit;
mod support;

use kit::{unix_now as now, Epu};
use support::{env_count, Report};

/// The resident set size of a process, in KiB.
fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A plan of `n` idle domains (npreserving, preserve_n = 0: no workers).
fn idle_plan(dir: &Path, n: usize) {
    let mut text = String::from("name = \"idle\"\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[domain]]\nname = \"idle-{i:05}\"\nengine = \"npreserving\"\n\
             config = {{ preserve_n = 0 }}\nprocess = {{ command = [\"true\"] }}\n"
        ));
    }
    std::fs::write(dir.join("plan.toml"), text).unwrap();
}

/// Decision events after event `after`, as (time, domain).
fn decisions(epu: &Epu, after: i64) -> Vec<(f64, String)> {
    epu.ok(&["events", "--json", "--after", &after.to_string()])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["kind"] == "decision")
        .map(|e| {
            let domain = e["domain"].as_str().unwrap_or_default().to_string();
            (e["time"].as_f64().unwrap(), domain)
        })
        .collect()
}

fn last_seq(epu: &Epu) -> i64 {
    let out = epu.ok(&["events", "--json"]);
    out.lines()
        .last()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .unwrap_or(0)
}

fn main() {
    let n = env_count("EPU_BENCH_DOMAINS", 1000);
    let epu = Epu::new();
    let plan = epu.dir.path().join("plan");
    std::fs::create_dir_all(&plan).unwrap();
    idle_plan(&plan, n);

    let daemon = epu.daemon();
    std::thread::sleep(Duration::from_secs(1));
    let rss_empty = rss_kib(daemon.child.id());
    let t = Instant::now();
    epu.ok(&["boot", plan.to_str().unwrap()]);
    let boot_s = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let rss_full = rss_kib(daemon.child.id());
    let seq = last_seq(&epu);
    daemon.stop();

    // Restart with the compiled code in the disk cache; time the first decides.
    let started = now();
    let daemon = epu.daemon();
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(120);
    while seen.len() < n && Instant::now() < end {
        seen = decisions(&epu, seq);
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.stop();
    assert_eq!(seen.len(), n, "not every domain decided after the restart");
    let first = seen.iter().map(|(t, _)| *t).fold(f64::MAX, f64::min);
    let all = seen.iter().map(|(t, _)| *t).fold(f64::MIN, f64::max);

    println!("{n} idle domains: daemon RSS {rss_empty:.0} KiB empty, {rss_full:.0} KiB with them");
    let mut report = Report::new("scale");
    report.info(&format!("boot a plan of {n} domains"), boot_s, "s");
    report.at_most(
        "RSS per idle domain",
        (rss_full - rss_empty) / n as f64,
        "KiB",
        512.0,
    );
    report.at_most(
        &format!("restart -> first decide, {n} domains"),
        first - started,
        "s",
        1.0,
    );
    report.info(
        &format!("restart -> every domain decided, {n} domains"),
        all - started,
        "s",
    );
    report.finish();
}
