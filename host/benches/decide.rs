//! Decide cost of the bundled npreserving engine: the wasm component through the sandbox
//! against the same decision logic compiled natively, at several pool sizes; and the cost of
//! the per-call time budget (epoch deadlines), as wasm with it ÷ wasm without it.
//!
//! `cargo bench -p epu --bench decide` prints a table; the ratio is measured in one run.

use epu::engine::bindings as host;
use epu::engine::{bundled, EngineHost};
use npreserving::config::Config;
use std::time::{Duration, Instant};

const SIZES: &[usize] = &[3, 100, 1000];

/// A snapshot of `n` running, healthy instances, in the types of binding module `$m` (the
/// host's and the guest's bindings are separate types of the same WIT).
macro_rules! running_snapshot {
    ($m:ident, $n:expr) => {
        $m::Snapshot {
            domain: "bench".into(),
            now: 1000.0,
            instances: (0..$n)
                .map(|i| $m::Instance {
                    id: format!("i-{i:012}"),
                    launch_id: "l-000000000000".into(),
                    state: $m::InstanceState::Running,
                    state_time: 1.0,
                    health: $m::Health::Ok,
                    health_time: 1.0,
                    last_heartbeat: Some(999.0),
                    vars: vec![],
                })
                .collect(),
            instance_changes: vec![],
            sensors: vec![],
            sensor_changes: vec![],
            memo: vec![],
        }
    };
}

/// Times `f` over enough iterations to fill about `budget`; returns sorted per-call durations.
fn sample(budget: Duration, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..50 {
        f();
    }
    let mut out = Vec::new();
    let end = Instant::now() + budget;
    while Instant::now() < end || out.len() < 100 {
        let t = Instant::now();
        f();
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn pct(v: &[Duration], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let engines = EngineHost::new(dir.path()).unwrap();
    let loaded = engines.add(bundled::get("npreserving").unwrap()).unwrap();
    let free_dir = tempfile::tempdir().unwrap();
    let free = EngineHost::with_deadlines(free_dir.path(), false).unwrap();
    let free_loaded = free.add(bundled::get("npreserving").unwrap()).unwrap();
    println!("decide cost, npreserving, every instance running and healthy (µs per call)");
    println!(
        "{:>10} {:>12} {:>12} {:>12} {:>12} {:>14} {:>16} {:>14}",
        "instances",
        "wasm p50",
        "wasm p99",
        "native p50",
        "native p99",
        "wasm÷native",
        "no-limit p50",
        "limit cost"
    );
    for &n in SIZES {
        let config = format!(r#"{{"preserve_n": {n}}}"#);
        let limits = (&epu::model::EngineLimits::default()).into();
        let mut inst = engines.instantiate(&loaded, &config, limits).unwrap();
        let snap = running_snapshot!(host, n);
        let wasm = sample(Duration::from_secs(1), || {
            let d = inst.decide(&snap).unwrap();
            assert!(d.launches.is_empty() && d.destroy.is_empty());
        });
        let mut unlimited = free.instantiate(&free_loaded, &config, limits).unwrap();
        let free_run = sample(Duration::from_secs(1), || {
            unlimited.decide(&snap).unwrap();
        });
        let native_config = Config::parse(&config, &Config::default()).unwrap();
        let native_snap = running_snapshot!(npreserving, n);
        let native = sample(Duration::from_secs(1), || {
            let d = npreserving::policy::decide(&native_config, std::hint::black_box(&native_snap));
            assert!(d.launches.is_empty() && d.destroy.is_empty());
        });
        println!(
            "{:>10} {:>12.1} {:>12.1} {:>12.2} {:>12.2} {:>13.1}× {:>16.1} {:>13.2}×",
            n,
            pct(&wasm, 0.5),
            pct(&wasm, 0.99),
            pct(&native, 0.5),
            pct(&native, 0.99),
            pct(&wasm, 0.5) / pct(&native, 0.5),
            pct(&free_run, 0.5),
            pct(&wasm, 0.5) / pct(&free_run, 0.5)
        );
    }
}
