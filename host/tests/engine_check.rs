//! `epu engine check`: the bundled engines pass the conformance scenario with their costs
//! reported, and every hostile fixture fails it at the right step with the right reason.

mod common;

use common::Epu;
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
