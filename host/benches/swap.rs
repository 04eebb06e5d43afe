//! Hot-swap latency, from `epu engine swap` on the command line to the new engine live
//! (validated, canary-decided, recorded), with the real daemon:
//! - cold: the component was never compiled in this state dir;
//! - warm (disk): compiled code is in the on-disk cache but not in memory (after a restart);
//! - warm (memory): the daemon has the component loaded already.
//!
//! `cargo bench -p epu --bench swap` prints p50 and max per case. Set EPU_BENCH_ROUNDS
//! (default 10).

use std::time::{Duration, Instant};

#[path = "../tests/kit/mod.rs"]
mod kit;
mod support;

use kit::Epu;
use support::{env_count, Report};

fn fixture(name: &str) -> String {
    format!("{}/{name}.wasm", env!("EPU_TEST_ENGINES_DIR"))
}

/// Runs `epu ARGS` and returns how long it took.
fn timed(epu: &Epu, args: &[&str]) -> Duration {
    let t = Instant::now();
    epu.ok(args);
    t.elapsed()
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<16} {:>9.1} {:>9.1}",
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    );
}

fn main() {
    let (mut cold, mut disk, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    let noop = timed(&Epu::new(), &["--version"]);
    let rounds = env_count("EPU_BENCH_ROUNDS", 10);
    for _ in 0..rounds {
        let epu = Epu::new();
        let daemon = epu.daemon();
        epu.add_domain("d").command(&["/bin/true"]).ok();
        cold.push(timed(&epu, &["engine", "swap", "d", &fixture("faulty")]));
        memory.push(timed(&epu, &["engine", "swap", "d", "npreserving"]));
        memory.push(timed(&epu, &["engine", "swap", "d", &fixture("faulty")]));
        daemon.stop();
        // After a restart the compiled code comes from the disk cache.
        let daemon = epu.daemon();
        disk.push(timed(&epu, &["engine", "swap", "d", "npreserving"]));
        daemon.stop();
    }
    let p50 = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    };
    let mut report = Report::new("swap");
    report.info("hot swap, cold cache, p50", p50(&cold), "ms");
    report.at_most("hot swap, warm cache (disk), p50", p50(&disk), "ms", 50.0);
    report.at_most(
        "hot swap, warm cache (memory), p50",
        p50(&memory),
        "ms",
        50.0,
    );
    println!(
        "hot swap, CLI to live, over {rounds} rounds (ms; `epu --version` alone takes {:.1} ms)",
        noop.as_secs_f64() * 1e3
    );
    println!("{:<16} {:>9} {:>9}", "cache", "p50", "max");
    summary("cold", cold);
    summary("warm (disk)", disk);
    summary("warm (memory)", memory);
    report.finish();
}
