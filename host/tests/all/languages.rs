//! Engines in Python, JavaScript and C (built by plugins/build.sh into plugins/out/) pass
//! `epu engine check`, hold to their scenario files under `epu engine test`, refuse bad
//! configs with the key named, and run in the daemon. The Python sensor engine decides as the
//! bundled Rust one does.
// Needs the engines that plugins/build.sh builds: run with `--features guests` (host/tests/README.md).

use crate::kit;

use kit::{repo, wait_for, Epu, EPU};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// A built engine, or a clear failure telling how to build it.
fn built(name: &str) -> String {
    let path = repo().join("plugins/out").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the engines with plugins/build.sh",
        path.display()
    );
    path.to_str().unwrap().to_string()
}

/// `epu ARGS` with a state dir shared by these tests, so that each engine compiles once.
fn epu(args: &[&str]) -> Output {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-cache");
    Command::new(EPU)
        .arg("--state-dir")
        .arg(&cache)
        .args(args)
        .output()
        .expect("running epu")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const ENGINES: [(&str, &[&str]); 3] = [
    (
        "sensor-py",
        &[
            "metric=cpu",
            "scale_up_threshold=0.8",
            "scale_down_threshold=0.3",
            "minimum_vms=2",
        ],
    ),
    (
        "target-js",
        &["metric=load", "target=10", "min_instances=2"],
    ),
    ("fixed-c", &["size=2"]),
];

#[test]
fn each_language_passes_the_check_and_its_scenarios() {
    for (name, config) in ENGINES {
        let wasm = built(name);
        let mut args = vec!["engine", "check", &wasm, "--json"];
        for c in config {
            args.extend(["-c", c]);
        }
        let out = epu(&args);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let growing = report["steps"][3]["detail"].as_str().unwrap();
        assert!(growing.starts_with("2 running"), "{name}: {growing}");

        // sensor-py is the Python build of the bundled sensor engine: it holds to its scenarios.
        let source = if name == "sensor-py" { "sensor" } else { name };
        let dir = repo().join("plugins").join(source).join("scenarios");
        let mut scenarios = 0;
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let out = epu(&["engine", "test", &wasm, file.to_str().unwrap()]);
            assert!(out.status.success(), "{}: {}", file.display(), text(&out));
            scenarios += 1;
        }
        assert!(scenarios > 0, "{name} has no scenario in {}", dir.display());
    }
}

#[test]
fn a_scenario_that_does_not_hold_fails_with_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("wrong.toml");
    std::fs::write(
        &scenario,
        "config = { size = 3 }\n[[step]]\nnow = 1.0\nexpect = { launch = 9, status = \"pending\" }\n\
         [[step]]\nnow = 2.0\nexpect = { launch = 3 }\n",
    )
    .unwrap();
    let replay = || {
        epu(&[
            "engine",
            "test",
            &built("fixed-c"),
            scenario.to_str().unwrap(),
        ])
    };
    let out = replay();
    assert!(!out.status.success());
    let all = text(&out);
    assert!(all.contains("step   1  FAIL"), "{all}");
    assert!(all.contains("launch: expected 9, got 3"), "{all}");
    assert!(all.contains("step   2  ok"), "{all}");
    assert!(all.contains("1 of 2 steps"), "{all}");

    std::fs::write(
        &scenario,
        "config = {}\n[[step]]\nnow = 1.0\nexpectt = {}\n",
    )
    .unwrap();
    let out = replay();
    assert!(!out.status.success());
    assert!(text(&out).contains("expectt"), "{}", text(&out));
}

#[test]
fn bad_configs_are_refused_with_the_key_named() {
    let cases = [
        (
            "sensor-py",
            "scale_up_threshold=high",
            "scale_up_threshold must be a number",
        ),
        ("sensor-py", "colour=blue", "unknown key 'colour'"),
        ("target-js", "target=-1", "target must be >= 0"),
        ("target-js", "period_s=[1]", "period_s must be a number"),
        ("fixed-c", "size=2.5", "size must be a whole number"),
        ("fixed-c", "schedule=25:00=1", "schedule must be HH:MM=N"),
    ];
    for (name, bad, why) in cases {
        let wasm = built(name);
        let out = epu(&["engine", "check", &wasm, "-c", bad]);
        assert!(!out.status.success(), "{name} {bad}");
        let all = text(&out);
        assert!(
            all.contains("fails the check at initialize") && all.contains(why),
            "{name} {bad}: {all}"
        );
    }
}

#[test]
fn engines_in_every_language_keep_a_pool_in_the_daemon() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    for (name, config) in ENGINES {
        let wasm = built(name);
        let mut add = epu.add_domain(name).engine(&wasm).flag("--pulse-ms", "200");
        for c in config {
            add = add.config(c);
        }
        add.ok();
    }
    let settled = wait_for(Duration::from_secs(120), || {
        let status = epu.status();
        status["domains"].as_array().unwrap().iter().all(|d| {
            d["instances"].as_array().unwrap().len() == 2 && d["controller"]["last_fault"].is_null()
        })
    });
    assert!(settled, "not two workers in each domain: {}", epu.status());
    epu.ok(&["terminate"]);
    let _ = daemon.wait();
}

#[test]
fn a_swap_from_rust_to_python_and_back_keeps_the_pool_running() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    epu.add_sleepers("d", 2);
    let workers = |epu: &Epu| epu.domain_pids("d");
    assert!(wait_for(Duration::from_secs(30), || workers(&epu).len() == 2));
    let pool = workers(&epu);

    let python = built("sensor-py");
    epu.ok(&[
        "engine",
        "swap",
        "d",
        &python,
        "-c",
        "metric=cpu",
        "-c",
        "scale_up_threshold=0.8",
        "-c",
        "scale_down_threshold=0.3",
        "-c",
        "minimum_vms=2",
    ]);
    let d = &epu.status()["domains"][0];
    assert_eq!(d["engine"], "sensor-py");
    assert_eq!(d["config"]["metric"], "cpu");
    let decides = d["controller"]["decides"].as_u64().unwrap();
    assert!(wait_for(Duration::from_secs(30), || {
        let d = &epu.status()["domains"][0];
        d["controller"]["decides"].as_u64().unwrap() > decides + 3
            && d["controller"]["last_fault"].is_null()
    }));
    assert_eq!(
        workers(&epu),
        pool,
        "the Python engine keeps the same workers"
    );

    // A swap whose config the engine refuses changes nothing.
    let err = epu.fails(&[
        "engine",
        "swap",
        "d",
        "npreserving",
        "-c",
        "preserve_n=lots",
    ]);
    assert!(err.contains("preserve_n"), "{err}");
    assert_eq!(epu.status()["domains"][0]["engine"], "sensor-py");

    // Back to the Rust engine, with the config it had.
    epu.ok(&["engine", "rollback", "d"]);
    let d = &epu.status()["domains"][0];
    assert_eq!(d["engine"], "npreserving");
    assert_eq!(d["config"], serde_json::json!({"preserve_n": 2}));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(workers(&epu), pool, "and back: still the same workers");
    epu.ok(&["terminate"]);
    let _ = daemon.wait();
}

/// A small deterministic random stream (xorshift), so that a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One simulated worker: its record and its details.
struct Worker {
    handle: u64,
    state: epu::engine::bindings::InstanceState,
    health: epu::engine::bindings::Health,
    since: f64,
    vars: Vec<(String, String)>,
}

#[test]
fn the_python_sensor_engine_decides_as_the_rust_one() {
    use epu::engine::bindings::{
        Health, Instance, InstanceDetails, InstanceState, SensorReading, Snapshot,
    };
    use epu::engine::{bundled, EngineHost};
    let configs = [
        r#"{"metric": "cpu", "scale_up_threshold": 0.8, "scale_down_threshold": 0.3, "maximum_vms": 6}"#,
        r#"{"metric": "cpu", "sample_function": "Maximum", "scale_up_threshold": "0.7",
            "scale_up_n_vms": 2, "scale_down_threshold": 0.2, "minimum_vms": 1, "cooldown_period": 3,
            "unique_key": "slot", "unique_values": ["a", "b", "c"]}"#,
        r#"{"metric": "cpu", "sample_function": "sum", "scale_up_threshold": 2, "scale_down_threshold": 1,
            "scale_down_n_vms": 2, "retirable_nodes": ["i-2", "i-5", "i-9"], "provisioner_vars": {"r": "w"}}"#,
    ];
    let dir = tempfile::tempdir().unwrap();
    let host = EngineHost::new(dir.path()).unwrap();
    let rust = host.add(bundled::get("sensor").unwrap()).unwrap();
    let python = host
        .add(&std::fs::read(built("sensor-py")).unwrap())
        .unwrap();
    let limits = (&epu::model::EngineLimits::default()).into();
    let (mut compared, mut scaled, mut uniques) = (0, 0, 0);
    for (c, config) in configs.iter().enumerate() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ c as u64);
        let mut engines = [
            host.instantiate(&rust, config, limits).unwrap(),
            host.instantiate(&python, config, limits).unwrap(),
        ];
        let mut workers: Vec<Worker> = Vec::new();
        let mut next = 1u64;
        let mut told = 0u64;
        for step in 0..120u64 {
            let now = 1000.0 + step as f64;
            // The world moves: workers come up, fail, go missing; readings arrive.
            let mut changed = Vec::new();
            for w in workers.iter_mut() {
                let roll = rng.below(20);
                let before = (w.state, w.health);
                match w.state {
                    InstanceState::Requesting => w.state = InstanceState::Running,
                    InstanceState::Terminating => w.state = InstanceState::Terminated,
                    InstanceState::Running if roll == 0 => w.state = InstanceState::Failed,
                    InstanceState::Running if roll == 1 => w.health = Health::Missing,
                    _ => {}
                }
                if w.state == InstanceState::Running && w.health == Health::Unknown {
                    w.health = Health::Ok;
                }
                if before != (w.state, w.health) {
                    w.since = now;
                    changed.push(w.handle);
                }
            }
            let mut sensors = Vec::new();
            if rng.below(3) > 0 {
                let up: Vec<u64> = workers
                    .iter()
                    .filter(|w| w.state == InstanceState::Running)
                    .map(|w| w.handle)
                    .collect();
                for h in &up {
                    if rng.below(2) == 0 {
                        continue;
                    }
                    let stale = rng.below(10) == 0;
                    sensors.push(SensorReading {
                        name: format!("cpu/i-{h}"),
                        value: rng.below(100) as f64 / 100.0,
                        time: now,
                        stale,
                    });
                }
                if rng.below(4) == 0 {
                    sensors.push(SensorReading {
                        name: "cpu".into(),
                        value: rng.below(100) as f64 / 100.0,
                        time: now,
                        stale: false,
                    });
                }
            }
            let full = step == 0;
            let instances = workers
                .iter()
                .filter(|w| full || changed.contains(&w.handle) || w.handle > told)
                .map(|w| Instance {
                    handle: w.handle,
                    state: w.state,
                    state_time: w.since,
                    health: w.health,
                    health_time: w.since,
                    protected: false,
                    draining: false,
                })
                .collect::<Vec<_>>();
            let details = workers
                .iter()
                .filter(|w| w.handle > told)
                .map(|w| InstanceDetails {
                    handle: w.handle,
                    id: format!("i-{}", w.handle),
                    launch_id: format!("l-{}", w.handle),
                    vars: w.vars.clone(),
                })
                .collect::<Vec<_>>();
            told = next - 1;
            workers
                .retain(|w| !matches!(w.state, InstanceState::Terminated | InstanceState::Failed));
            let snapshot = Snapshot {
                now,
                full,
                instances,
                details: (!details.is_empty()).then_some(details),
                sensors: (!sensors.is_empty()).then_some(sensors),
                memo: None,
            };
            let [a, b] = engines
                .each_mut()
                .map(|e| e.decide(&snapshot, step).unwrap());
            let vars = |d: &epu::engine::bindings::Decision| {
                let mut v: Vec<_> = d
                    .launches
                    .iter()
                    .flat_map(|l| std::iter::repeat_n(l.vars.clone(), l.count as usize))
                    .collect();
                v.sort();
                v
            };
            let sorted = |d: &[u64]| {
                let mut d = d.to_vec();
                d.sort();
                d
            };
            let context = format!("config {c}, step {step}: rust {a:?}, python {b:?}");
            assert_eq!(vars(&a), vars(&b), "{context}");
            assert_eq!(sorted(&a.destroy), sorted(&b.destroy), "{context}");
            assert_eq!(a.status, b.status, "{context}");
            assert_eq!(a.memo, b.memo, "{context}");
            compared += 1;
            scaled += usize::from(!a.launches.is_empty()) + usize::from(!a.destroy.is_empty());
            uniques += a
                .launches
                .iter()
                .filter(|l| l.vars.iter().any(|(k, _)| k == "slot"))
                .count();
            // The daemon carries the decision out.
            for h in &a.destroy {
                if let Some(w) = workers.iter_mut().find(|w| w.handle == *h) {
                    w.state = InstanceState::Terminating;
                }
            }
            for l in &a.launches {
                for _ in 0..l.count {
                    workers.push(Worker {
                        handle: next,
                        state: InstanceState::Requesting,
                        health: Health::Unknown,
                        since: now,
                        vars: l.vars.clone(),
                    });
                    next += 1;
                }
            }
        }
    }
    assert_eq!(compared, 360);
    assert!(
        scaled > 60 && uniques > 5,
        "too quiet to compare: {scaled} steps scaled, {uniques} unique launches"
    );
}
