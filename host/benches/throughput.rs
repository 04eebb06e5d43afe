//! Decide throughput of the real daemon:
//! - decides per CPU-second with N domains of 10 instances each (real `sleep` processes that
//!   never report, so the pool is stable) deciding on a 10 ms pulse. Set
//!   EPU_BENCH_BUSY_DOMAINS (default 100,1000; each domain is 10 processes, so 10,000 domains
//!   would need more processes than the kernel's default pid_max of 32,768 allows);
//! - the daemon's CPU share with many idle domains on a 1 s pulse. Set EPU_BENCH_IDLE_DOMAINS
//!   (default 10000);
//! - the cost of shadow engines: the first busy size again with a shadow beside every
//!   domain's engine (npreserving keeping another count), as a ratio of decides per CPU-second
//!   with and without, in one run.
//!
//! `cargo bench -p epu --bench throughput` prints the numbers against the suite's targets.

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../tests/kit/mod.rs"]
mod kit;
mod support;

use kit::Epu;
use support::{cpu_seconds, env_count, env_counts, Report};

/// Decides made so far, summed over every domain.
fn decides(epu: &Epu) -> u64 {
    let v: Value = serde_json::from_str(&epu.ok(&["status", "--json"])).unwrap();
    v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["controller"]["decides"].as_u64().unwrap_or(0))
        .sum()
}

/// A plan of `n` npreserving domains keeping `keep` instances each, on a `pulse_ms` pulse.
fn plan(dir: &Path, n: usize, keep: usize, pulse_ms: u32) {
    let mut text = String::from("name = \"load\"\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[domain]]\nname = \"d-{i:05}\"\nengine = \"npreserving\"\npulse_ms = {pulse_ms}\n\
             config = {{ preserve_n = {keep} }}\n\
             process = {{ command = [\"sleep\", \"100000\"], grace_seconds = 0 }}\n\
             health = {{ boot_timeout = 1e6 }}\n"
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("plan.toml"), text).unwrap();
}

/// Boots `n` domains of `keep` instances, waits for the pool to settle (then, with `shadows`,
/// starts a shadow beside each domain's engine), then measures for `window`: returns
/// (decides, daemon CPU seconds).
fn run(n: usize, keep: usize, pulse_ms: u32, window: Duration, shadows: bool) -> (u64, f64) {
    let epu = Epu::new();
    let plan_dir = epu.dir.path().join("plan");
    plan(&plan_dir, n, keep, pulse_ms);
    let daemon = epu.daemon();
    epu.ok(&["boot", plan_dir.to_str().unwrap()]);
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let v: Value = serde_json::from_str(&epu.ok(&["status", "--json"])).unwrap();
        let live: usize = v["domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["instances"].as_array().unwrap().len())
            .sum();
        if live == n * keep {
            break;
        }
        assert!(
            Instant::now() < end,
            "the pools did not settle: {live} of {}",
            n * keep
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    if shadows {
        for i in 0..n {
            let other = format!("preserve_n={}", keep + 1);
            epu.ok(&[
                "engine",
                "shadow",
                &format!("d-{i:05}"),
                "npreserving",
                "-c",
                &other,
            ]);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let (d0, c0) = (decides(&epu), cpu_seconds(daemon.child.id()));
    std::thread::sleep(window);
    let (d1, c1) = (decides(&epu), cpu_seconds(daemon.child.id()));
    epu.ok(&["terminate"]);
    drop(daemon);
    (d1 - d0, c1 - c0)
}

fn main() {
    let busy = env_counts("EPU_BENCH_BUSY_DOMAINS", &[100, 1000]);
    let idle = env_count("EPU_BENCH_IDLE_DOMAINS", 10_000);
    let window = Duration::from_secs(env_count("EPU_BENCH_WINDOW_S", 5) as u64);

    let mut report = Report::new("throughput");
    let mut plain = None;
    for &n in &busy {
        let (decided, cpu) = run(n, 10, 10, window, false);
        plain.get_or_insert(decided as f64 / cpu.max(0.01));
        println!(
            "{n} domains of 10 instances on a 10 ms pulse: {decided} decides in {:.1} s using {cpu:.2} CPU-s",
            window.as_secs_f64()
        );
        report.at_least(
            &format!("decides per CPU-second, {n} domains of 10"),
            decided as f64 / cpu.max(0.01),
            "/s",
            50_000.0,
        );
    }
    let n = busy[0];
    let (decided, cpu) = run(n, 10, 10, window, true);
    let shadowed = decided as f64 / cpu.max(0.01);
    println!(
        "{n} domains of 10 with a shadow each: {decided} decides in {:.1} s using {cpu:.2} CPU-s",
        window.as_secs_f64()
    );
    report.info(
        &format!("decides per CPU-second, {n} domains with a shadow each ÷ without"),
        shadowed / plain.unwrap_or(shadowed),
        "×",
    );
    let (m, idle_cpu) = run(idle, 0, 1000, window, false);
    println!(
        "{idle} idle domains on a 1 s pulse: {m} decides in {:.1} s using {idle_cpu:.2} CPU-s",
        window.as_secs_f64()
    );
    report.at_most(
        &format!("CPU share of 2 cores, {idle} domains at a 1 s pulse"),
        100.0 * idle_cpu / window.as_secs_f64() / 2.0,
        "%",
        25.0,
    );
    report.finish();
}
