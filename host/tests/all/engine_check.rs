//! `epu engine check`: the bundled engines pass the conformance scenario with their costs
//! reported, and every hostile fixture fails it at the right step with the right reason.

use crate::kit;

use kit::Epu;
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join(format!("{name}.wasm"));
    path.to_str().unwrap().to_string()
}

fn report(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn the_bundled_engines_pass_with_their_costs_reported() {
    let epu = Epu::new();
    let cases: [(&str, &[&str]); 2] = [
        ("npreserving", &["-c", "preserve_n=3"]),
        (
            "queuelen",
            &[
                "-c",
                "queuelen_high_water=10",
                "-c",
                "queuelen_low_water=2",
                "-c",
                "min_instances=2",
            ],
        ),
    ];
    for (engine, config) in cases {
        let mut args = vec!["engine", "check", engine, "--json"];
        args.extend(config);
        let r = report(&epu.ok(&args));
        assert!(r["failure"].is_null(), "{engine}: {r}");
        let steps: Vec<&str> = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            [
                "load",
                "initialize",
                "empty pool",
                "growing pool",
                "failing instances",
                "shrinking pool",
                "full snapshot again",
                "reconfigure",
                "steady decides",
                "dying"
            ]
        );
        let growing = r["steps"][3]["detail"].as_str().unwrap();
        let want = if engine == "npreserving" {
            "3 running"
        } else {
            "2 running"
        };
        assert!(growing.starts_with(want), "{engine}: {growing}");
        let m = &r["metrics"];
        assert!(m["decides"].as_u64().unwrap() > 200, "{m}");
        assert!(m["decide_us_p50"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["fuel_per_decide"].as_u64().unwrap() > 0, "{m}");
        let peak = m["peak_memory_bytes"].as_u64().unwrap();
        assert!(
            peak > 0 && peak < m["memory_limit_bytes"].as_u64().unwrap(),
            "{m}"
        );
    }
}

#[test]
fn engines_that_break_the_contract_fail_at_the_right_step() {
    let epu = Epu::new();
    let garbage = epu.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component at all").unwrap();
    let cases = [
        (
            garbage.to_str().unwrap().to_string(),
            "load",
            "not WebAssembly",
        ),
        (fixture("hostile-otherworld"), "load", "does not implement"),
        (
            fixture("hostile-oldcontract"),
            "load",
            "built for epu:engine@0.1.0",
        ),
        (
            "queuelen".to_string(),
            "initialize",
            "queuelen_high_water is required",
        ),
        (
            fixture("hostile-spin"),
            "empty pool",
            "time budget of 50 ms",
        ),
        (
            fixture("hostile-memory"),
            "empty pool",
            "memory cap of 64 MiB",
        ),
        (fixture("hostile-panic"), "empty pool", "trapped"),
        (fixture("hostile-recurse"), "empty pool", "trapped"),
        (
            fixture("hostile-billion"),
            "empty pool",
            "over max_instances = 100",
        ),
        (
            fixture("hostile-foreign"),
            "empty pool",
            "not a live instance",
        ),
    ];
    for (engine, step, why) in cases {
        let err = epu.fails(&["engine", "check", &engine]);
        assert!(
            err.contains(&format!("fails the check at {step}: ")) && err.contains(why),
            "{engine}: {err}"
        );
        let out = epu.run(&["engine", "check", &engine, "--json"]);
        assert!(!out.status.success());
        let r = report(&String::from_utf8_lossy(&out.stdout));
        let last = r["steps"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(
            (last["step"].as_str(), last["ok"].as_bool()),
            (Some(step), Some(false))
        );
    }
}

#[test]
fn a_live_domain_exports_a_scenario_that_replays_and_catches_a_different_policy() {
    use kit::{signal, wait_for, Signal};
    use std::time::Duration;
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    epu.add_sleepers("d", 2);
    let pids = |epu: &Epu| epu.domain_pids("d");
    assert!(wait_for(Duration::from_secs(30), || pids(&epu).len() == 2));
    let first = pids(&epu);
    assert!(signal(first[0] as i32, Signal::SIGKILL));
    assert!(wait_for(Duration::from_secs(30), || {
        let now = pids(&epu);
        now.len() == 2 && !now.contains(&first[0])
    }));
    std::thread::sleep(Duration::from_millis(500));

    let file = epu.dir.path().join("history.toml");
    let out = epu.ok(&[
        "events",
        "--domain",
        "d",
        "--export-scenario",
        file.to_str().unwrap(),
    ]);
    let steps: usize = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(steps >= 3, "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("state = \"failed\""),
        "the death is in the history: {text}"
    );
    let out = epu.run(&["engine", "test", "npreserving", file.to_str().unwrap()]);
    let replay = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{replay}{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(replay.matches("  ok").count(), steps, "{replay}");

    // The same history with another policy: the replay shows where it would differ.
    std::fs::write(&file, text.replace("preserve_n = 2", "preserve_n = 3")).unwrap();
    let out = epu.run(&["engine", "test", "npreserving", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("launch: expected 2, got 3"), "{diff}");

    epu.fails(&[
        "events",
        "--domain",
        "nope",
        "--export-scenario",
        file.to_str().unwrap(),
    ]);
    epu.ok(&["terminate"]);
    let _ = daemon.wait();
}

#[test]
fn readings_given_to_the_check_drive_an_engine_that_scales_on_them() {
    let epu = Epu::new();
    let config = [
        "-c",
        "queuelen_high_water=10",
        "-c",
        "queuelen_low_water=2",
        "-c",
        "max_instances=6",
    ];
    let mut args = vec!["engine", "check", "queuelen", "--json"];
    args.extend(config);
    let quiet = report(&epu.ok(&args));
    args.extend(["--reading", "queue-length=500"]);
    let busy = report(&epu.ok(&args));
    let steady = |r: &Value| r["steps"][8]["detail"].as_str().unwrap().to_string();
    assert!(steady(&quiet).contains("0 running"), "{}", steady(&quiet));
    assert!(steady(&busy).contains("6 running"), "{}", steady(&busy));
    let err = epu.fails(&[
        "engine",
        "check",
        "queuelen",
        "--reading",
        "queue-length=lots",
    ]);
    assert!(err.contains("not a finite number"), "{err}");
}
