//! Decide cost of the bundled engines (npreserving, queuelen): the wasm component through the
//! sandbox against the same decision logic compiled natively, at several pool sizes; and the
//! cost of the per-call time limits, in the same run: the CPU-time accounting (budget and
//! wall-clock backstop) ÷ epoch deadlines alone (how calls were timed before it), and epoch
//! deadlines alone ÷ no limit at all.
//! Set EPU_BENCH_SIZES (default 10,100,1000,10000).
//!
//! Each size is timed on three snapshots, all of a stable pool of running instances:
//! - `change`: a delta with one changed instance, what a decide after a health change or a
//!   state change gets (the targets are judged on this one);
//! - `pulse`: a delta with no change, what a decide on the pulse gets;
//! - `full`: every instance, what a fresh engine instance gets (after a start, trap or swap).
//!
//! queuelen also has a queue reading, which comes in the full snapshot. A fourth snapshot,
//! `reading`, is what queuelen gets after each poll of its queue: a delta with the new reading
//! and no instance change.
//!
//! The native side runs the engine crate's own `policy::decide`, which applies the snapshot to
//! the engine's instance table and decides, exactly as the component does.
//!
//! `cargo bench -p epu --bench decide` prints a table and the suite's targets; every ratio is
//! measured in one run.

use epu::engine::bindings as host;
use epu::engine::{bundled, EngineHost};
use npreserving::config::Config;
use std::hint::black_box;
use std::time::{Duration, Instant};

mod support;

use support::{env_counts, Report};

const SIZES: &[usize] = &[10, 100, 1000, 10_000];

/// What a snapshot carries: see the module comment.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Change,
    Pulse,
    Full,
    Reading,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Change => "change",
            Kind::Pulse => "pulse",
            Kind::Full => "full",
            Kind::Reading => "reading",
        }
    }
}

/// A snapshot of `kind` over `n` running, healthy instances, in the types of binding module
/// `$m` (the host's and the guest's bindings are separate types of the same WIT). With
/// `queue`, the full and `reading` snapshots carry a queue reading.
macro_rules! running_snapshot {
    ($m:ident, $n:expr, $kind:expr) => {
        running_snapshot!($m, $n, $kind, false)
    };
    ($m:ident, $n:expr, $kind:expr, $queue:expr) => {{
        let running = |handle: u64| $m::Instance {
            handle,
            state: $m::InstanceState::Running,
            state_time: 1.0,
            health: $m::Health::Ok,
            health_time: 1.0,
            protected: false,
            draining: false,
        };
        let n = $n as u64;
        $m::Snapshot {
            now: 1000.0,
            full: matches!($kind, Kind::Full),
            instances: match $kind {
                Kind::Full => (1..=n).map(running).collect(),
                Kind::Change => vec![running(n / 2 + 1)],
                Kind::Pulse | Kind::Reading => vec![],
            },
            details: None,
            sensors: match $kind {
                Kind::Full | Kind::Reading if $queue => queue_reading!($m),
                _ => None,
            },
            memo: None,
        }
    }};
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
        Some(vec![$m::SensorReading {
            name: "queue-length".into(),
            value: 50.0,
            time: 999.0,
            stale: false,
        }])
    };
}

/// Per-call times of wasm, native, wasm without any time limit, and wasm with epoch
/// deadlines but no CPU-time accounting (how calls were timed before it).
struct Costs {
    wasm: Vec<Duration>,
    native: Vec<Duration>,
    unlimited: Vec<Duration>,
    epochs_only: Vec<Duration>,
}

/// Times one engine's decide: the bundled component through the sandbox, the same component
/// without the time budget, and `native` (the same logic). Each engine instance first gets
/// `first` (the full pool), then `snap` on every call.
fn measure(
    name: &str,
    config: &str,
    first: &host::Snapshot,
    snap: &host::Snapshot,
    mut native: impl FnMut(),
) -> Costs {
    let dir = tempfile::tempdir().unwrap();
    let engines = EngineHost::new(dir.path()).unwrap();
    let loaded = engines.add(bundled::get(name).unwrap()).unwrap();
    let free = EngineHost::with_deadlines(dir.path(), false).unwrap();
    let free_loaded = free.add(bundled::get(name).unwrap()).unwrap();
    let epochs_only = epu::engine::HostOptions {
        accounting: false,
        ..Default::default()
    };
    let epochs = EngineHost::with_options(dir.path(), epochs_only).unwrap();
    let epochs_loaded = epochs.add(bundled::get(name).unwrap()).unwrap();
    let limits = (&epu::model::EngineLimits::default()).into();
    let mut inst = engines.instantiate(&loaded, config, limits).unwrap();
    inst.decide(first, 0).unwrap();
    let wasm = sample(BUDGET, || {
        let d = inst.decide(snap, 0).unwrap();
        assert!(d.launches.is_empty() && d.destroy.is_empty());
    });
    let mut unlimited_inst = free.instantiate(&free_loaded, config, limits).unwrap();
    unlimited_inst.decide(first, 0).unwrap();
    let unlimited = sample(BUDGET, || {
        unlimited_inst.decide(snap, 0).unwrap();
    });
    let mut epochs_inst = epochs.instantiate(&epochs_loaded, config, limits).unwrap();
    epochs_inst.decide(first, 0).unwrap();
    let epochs_only = sample(BUDGET, || {
        epochs_inst.decide(snap, 0).unwrap();
    });
    let native = sample(BUDGET, &mut native);
    Costs {
        wasm,
        native,
        unlimited,
        epochs_only,
    }
}

const BUDGET: Duration = Duration::from_millis(700);

/// Times both engines at `n` instances on snapshots of `kind`.
fn both_engines(n: usize, kind: Kind) -> [(&'static str, Costs); 2] {
    let np_config = format!(r#"{{"preserve_n": {n}}}"#);
    let np_native_config = Config::parse(&np_config, &Config::default()).unwrap();
    let mut np_domain = npreserving::Domain::default();
    npreserving::policy::decide(
        &np_native_config,
        &mut np_domain,
        &running_snapshot!(npreserving, n, Kind::Full),
    );
    let np_native_snap = running_snapshot!(npreserving, n, kind);
    let np = measure(
        "npreserving",
        &np_config,
        &running_snapshot!(host, n, Kind::Full),
        &running_snapshot!(host, n, kind),
        || {
            let d = npreserving::policy::decide(
                &np_native_config,
                &mut np_domain,
                black_box(&np_native_snap),
            );
            assert!(d.launches.is_empty() && d.destroy.is_empty());
        },
    );

    let ql_config = r#"{"queuelen_high_water": 100, "queuelen_low_water": 10}"#;
    let ql_native_config = queuelen::config::Config::parse(ql_config, None).unwrap();
    let mut ql_domain = queuelen::Domain::default();
    let ql_native_first = running_snapshot!(queuelen, n, Kind::Full, true);
    queuelen::policy::decide(&ql_native_config, &mut ql_domain, &ql_native_first);
    let ql_native_snap = running_snapshot!(queuelen, n, kind, true);
    let ql_first = running_snapshot!(host, n, Kind::Full, true);
    let ql_snap = running_snapshot!(host, n, kind, true);
    let ql = measure("queuelen", ql_config, &ql_first, &ql_snap, || {
        let d = queuelen::policy::decide(
            &ql_native_config,
            &mut ql_domain,
            black_box(&ql_native_snap),
        );
        assert!(d.launches.is_empty() && d.destroy.is_empty());
    });
    [("npreserving", np), ("queuelen", ql)]
}

fn main() {
    let sizes = env_counts("EPU_BENCH_SIZES", SIZES);
    println!("decide cost, every instance running and healthy (µs per call)");
    println!(
        "{:<20} {:>9} {:>10} {:>10} {:>11} {:>11} {:>12} {:>12} {:>11}",
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
        for kind in [Kind::Change, Kind::Pulse, Kind::Full, Kind::Reading] {
            for (name, c) in both_engines(n, kind) {
                let ratio = pct(&c.wasm, 0.5) / pct(&c.native, 0.5);
                println!(
                    "{:<20} {:>9} {:>10.2} {:>10.2} {:>11.2} {:>11.2} {:>11.1}× {:>12.2} {:>10.2}×",
                    format!("{name} {}", kind.name()),
                    n,
                    pct(&c.wasm, 0.5),
                    pct(&c.wasm, 0.99),
                    pct(&c.native, 0.5),
                    pct(&c.native, 0.99),
                    ratio,
                    pct(&c.unlimited, 0.5),
                    pct(&c.wasm, 0.5) / pct(&c.unlimited, 0.5)
                );
                if kind == Kind::Change {
                    let accounting = pct(&c.wasm, 0.5) / pct(&c.epochs_only, 0.5);
                    let metric = format!("CPU-time accounting ÷ epochs alone, {name}, {n}");
                    report.at_most(&metric, accounting, "×", 1.1);
                    let epochs = pct(&c.epochs_only, 0.5) / pct(&c.unlimited, 0.5);
                    let metric = format!("epochs alone ÷ no limit, {name}, {n}");
                    report.info(&metric, epochs, "×");
                }
                let metric = format!("decide wasm ÷ native, {name}, {n} instances");
                match (kind, n) {
                    (Kind::Change, 100) => report.at_most(&metric, ratio, "×", 2.0),
                    (Kind::Change, 10_000) => report.at_most(&metric, ratio, "×", 1.5),
                    (Kind::Change, _) => report.info(&metric, ratio, "×"),
                    _ => report.info(&format!("{metric}, {}", kind.name()), ratio, "×"),
                }
            }
        }
    }
    report.finish();
}
