//! Decide cost of the bundled engines (npreserving, queuelen): the wasm component through the
//! sandbox against the same decision logic compiled natively, at several pool sizes; and the
//! cost of the per-call time budget (epoch deadlines), as wasm with it ÷ wasm without it.
//! Set EPU_BENCH_SIZES (default 10,100,1000,10000).
//!
//! `cargo bench -p epu --bench decide` prints a table and the suite's targets; every ratio is
//! measured in one run.

use epu::engine::bindings as host;
use epu::engine::{bundled, EngineHost};
use npreserving::config::Config;
use std::hint::black_box;
use std::time::{Duration, Instant};

mod support;

use support::Report;

const SIZES: &[usize] = &[10, 100, 1000, 10_000];

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

/// Sensor readings for the snapshot of binding module `$m`: a queue length between the
/// queuelen config's water marks, so that the pool is stable.
macro_rules! queue_reading {
    ($m:ident) => {
        vec![$m::SensorReading {
            name: "queue-length".into(),
            value: 50.0,
            time: 999.0,
            stale: false,
        }]
    };
}

/// p50 of wasm, native and wasm without the time budget, in µs.
struct Costs {
    wasm: Vec<Duration>,
    native: Vec<Duration>,
    unlimited: Vec<Duration>,
}

/// Times one engine's decide at `n` running instances: the bundled component through the
/// sandbox, the same component without the time budget, and `native` (the same logic).
fn measure(name: &str, config: &str, snap: &host::Snapshot, mut native: impl FnMut()) -> Costs {
    let dir = tempfile::tempdir().unwrap();
    let engines = EngineHost::new(dir.path()).unwrap();
    let loaded = engines.add(bundled::get(name).unwrap()).unwrap();
    let free = EngineHost::with_deadlines(dir.path(), false).unwrap();
    let free_loaded = free.add(bundled::get(name).unwrap()).unwrap();
    let limits = (&epu::model::EngineLimits::default()).into();
    let mut inst = engines.instantiate(&loaded, config, limits).unwrap();
    let wasm = sample(BUDGET, || {
        let d = inst.decide(snap).unwrap();
        assert!(d.launches.is_empty() && d.destroy.is_empty());
    });
    let mut unlimited_inst = free.instantiate(&free_loaded, config, limits).unwrap();
    let unlimited = sample(BUDGET, || {
        unlimited_inst.decide(snap).unwrap();
    });
    let native = sample(BUDGET, &mut native);
    Costs {
        wasm,
        native,
        unlimited,
    }
}

const BUDGET: Duration = Duration::from_millis(700);

fn main() {
    let sizes: Vec<usize> = match std::env::var("EPU_BENCH_SIZES") {
        Ok(v) => v.split(',').map(|n| n.trim().parse().unwrap()).collect(),
        Err(_) => SIZES.to_vec(),
    };
    println!("decide cost, every instance running and healthy (µs per call)");
    println!(
        "{:<12} {:>9} {:>10} {:>10} {:>11} {:>11} {:>12} {:>12} {:>11}",
        "engine",
        "instances",
        "wasm p50",
        "wasm p99",
        "native p50",
        "native p99",
        "wasm÷native",
        "no-limit p50",
        "limit cost"
    );
    let mut report = Report::new("decide");
    for &n in &sizes {
        let np_config = format!(r#"{{"preserve_n": {n}}}"#);
        let np_native_config = Config::parse(&np_config, &Config::default()).unwrap();
        let np_native_snap = running_snapshot!(npreserving, n);
        let np = measure(
            "npreserving",
            &np_config,
            &running_snapshot!(host, n),
            || {
                let d = npreserving::policy::decide(&np_native_config, black_box(&np_native_snap));
                assert!(d.launches.is_empty() && d.destroy.is_empty());
            },
        );
        let ql_config = r#"{"queuelen_high_water": 100, "queuelen_low_water": 10}"#;
        let ql_native_config = queuelen::config::Config::parse(ql_config, None).unwrap();
        let mut ql_native_snap = running_snapshot!(queuelen, n);
        ql_native_snap.sensors = queue_reading!(queuelen);
        let mut ql_snap = running_snapshot!(host, n);
        ql_snap.sensors = queue_reading!(host);
        let ql = measure("queuelen", ql_config, &ql_snap, || {
            let d = queuelen::policy::decide(&ql_native_config, black_box(&ql_native_snap));
            assert!(d.launches.is_empty() && d.destroy.is_empty());
        });
        for (name, c) in [("npreserving", np), ("queuelen", ql)] {
            let ratio = pct(&c.wasm, 0.5) / pct(&c.native, 0.5);
            println!(
                "{:<12} {:>9} {:>10.1} {:>10.1} {:>11.2} {:>11.2} {:>11.1}× {:>12.1} {:>10.2}×",
                name,
                n,
                pct(&c.wasm, 0.5),
                pct(&c.wasm, 0.99),
                pct(&c.native, 0.5),
                pct(&c.native, 0.99),
                ratio,
                pct(&c.unlimited, 0.5),
                pct(&c.wasm, 0.5) / pct(&c.unlimited, 0.5)
            );
            let metric = format!("decide wasm ÷ native, {name}, {n} instances");
            match n {
                100 => report.at_most(&metric, ratio, "×", 2.0),
                10_000 => report.at_most(&metric, ratio, "×", 1.5),
                _ => report.info(&metric, ratio, "×"),
            }
        }
    }
    report.finish();
}
