//! Engines in Python, JavaScript and C (built by plugins/build.sh into plugins/out/) pass
//! `epu engine check`, hold to their scenario files under `epu engine test`, refuse bad
//! configs with the key named, and run in the daemon.

mod common;

use common::{repo, wait_for, Epu, EPU};
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

        let dir = repo().join("plugins").join(name).join("scenarios");
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
        let mut args = vec![
            "domain",
            "add",
            name,
            "--engine",
            &wasm,
            "--pulse-ms",
            "200",
        ];
        for c in config {
            args.extend(["-c", c]);
        }
        args.extend(["--", "/bin/sleep", "1000"]);
        epu.ok(&args);
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
