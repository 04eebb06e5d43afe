//! Self-describing engines (contract 0.5.0): `epu engine info`, configs checked against the
//! schema an engine declares before the engine sees them, `epu engine check` holding the
//! schema against `initialize`, and hostile describes contained.

use crate::kit::{components, wait_for, Epu};
use serde_json::Value;
use std::time::Duration;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn key<'a>(description: &'a Value, name: &str) -> &'a Value {
    description["config"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no key {name}: {description}"))
}

/// A component whose description declares one integer key `n` (from 0) and no other, while
/// its `initialize` accepts any config: its schema and its initialize disagree.
fn disagreeing_component() -> Vec<u8> {
    // The config-key record (80 bytes) at 640: name "n" at 200, kind integer, empty doc, no
    // default, not required, no min or max, no choices; the description at 512 points at it.
    let body = r#"
        (i32.store (i32.const 200) (i32.const 110))
        (i32.store (i32.const 640) (i32.const 200))
        (i32.store (i32.const 644) (i32.const 1))
        (i32.store (i32.const 652) (i32.const 192))
        (i32.store (i32.const 536) (i32.const 640))
        (i32.store (i32.const 540) (i32.const 1))
        (i32.store (i32.const 544) (i32.const 0))
        (i32.const 512)"#;
    components::describing_component(body)
}

#[test]
fn engine_info_shows_each_bundled_engines_schema_and_an_older_engine_has_none() {
    let epu = Epu::new();
    for name in ["npreserving", "queuelen", "sensor"] {
        let v = json(&epu.ok(&["engine", "info", name, "--json"]));
        assert_eq!(v["contract"], "0.5.0", "{v}");
        assert_eq!(v["description"]["name"], name, "{v}");
        assert!(!v["description"]["summary"].as_str().unwrap().is_empty());
    }
    let v = json(&epu.ok(&["engine", "info", "npreserving", "--json"]));
    let n = key(&v["description"], "preserve_n");
    assert_eq!(n["kind"], "integer", "{n}");
    assert_eq!(n["min"], 0.0, "{n}");
    assert_eq!(n["default"], 0, "{n}");
    assert!(
        n["doc"].as_str().unwrap().contains("healthy instances"),
        "{n}"
    );
    let v = json(&epu.ok(&["engine", "info", "queuelen", "--json"]));
    assert_eq!(
        key(&v["description"], "queuelen_high_water")["required"],
        true
    );
    assert_eq!(key(&v["description"], "max_instances")["nullable"], true);
    let v = json(&epu.ok(&["engine", "info", "sensor", "--json"]));
    let f = key(&v["description"], "sample_function");
    assert!(
        f["choices"].as_array().unwrap().contains(&"max".into()),
        "{f}"
    );

    let text = epu.ok(&["engine", "info", "npreserving"]);
    for needle in [
        "npreserving ",
        "keeps N healthy instances",
        "preserve_n",
        "integer >= 0, default 0",
    ] {
        assert!(text.contains(needle), "expected '{needle}' in: {text}");
    }

    // An engine of the previous contract runs, and says it cannot describe itself.
    let dir = tempfile::tempdir().unwrap();
    let old = components::write(dir.path(), "old", &components::idle_component("0.4.0"));
    let old = old.to_str().unwrap();
    let v = json(&epu.ok(&["engine", "info", old, "--json"]));
    assert_eq!(v["contract"], "0.4.0", "{v}");
    assert!(v["description"].is_null(), "{v}");
    assert!(epu.ok(&["engine", "info", old]).contains("has no describe"));
    let err = epu.fails(&["engine", "info", "no-such-engine"]);
    assert!(err.contains("neither a bundled engine"), "{err}");
}

#[test]
fn configs_outside_the_schema_are_refused_at_add_reconfigure_and_swap_with_the_key_named() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    for (setting, why) in [
        ("preserve_n=abc", "preserve_n must be a whole number"),
        ("preserve_n=-1", "preserve_n must be a whole number >= 0"),
        ("preserv_n=2", "did you mean 'preserve_n'"),
        (
            "devmode_no_failure_compensation=maybe",
            "must be true or false",
        ),
    ] {
        let out = epu.add_domain("d").config(setting).run();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{setting}");
        assert!(
            err.contains("schema") && err.contains(why),
            "{setting}: {err}"
        );
    }
    assert!(epu.status()["domains"].as_array().unwrap().is_empty());

    epu.add_sleepers("d", 1);
    let err = epu.fails(&["reconfigure", "d", "preserve_n=2.5"]);
    assert!(
        err.contains("schema") && err.contains("preserve_n must be a whole number"),
        "{err}"
    );
    assert_eq!(epu.domain("d")["config"]["preserve_n"], 1);
    epu.ok(&["reconfigure", "d", "preserve_n=2"]);
    assert!(wait_for(Duration::from_secs(20), || epu
        .instances("d")
        .len()
        == 2));

    // A swap to an engine whose required keys the config lacks is refused; the old one runs on.
    let err = epu.fails(&["engine", "swap", "d", "queuelen"]);
    assert!(
        err.contains("queuelen_high_water is required") || err.contains("preserve_n"),
        "{err}"
    );
    let err = epu.fails(&[
        "engine",
        "swap",
        "d",
        "queuelen",
        "-c",
        "queuelen_low_water=2",
    ]);
    assert!(err.contains("queuelen_high_water is required"), "{err}");
    assert_eq!(epu.domain("d")["engine"], "npreserving");
}

#[test]
fn engine_check_holds_the_schema_against_initialize() {
    let epu = Epu::new();
    for (engine, config) in [
        ("npreserving", vec!["preserve_n=2"]),
        (
            "sensor",
            vec![
                "metric=cpu",
                "scale_up_threshold=0.8",
                "scale_down_threshold=0.2",
            ],
        ),
        (
            "queuelen",
            vec!["queuelen_high_water=10", "queuelen_low_water=2"],
        ),
    ] {
        let mut args = vec!["engine", "check", engine, "--json"];
        for c in &config {
            args.extend(["-c", c]);
        }
        let v = json(&epu.ok(&args));
        let schema = &v["schema"];
        assert!(
            schema["disagreements"].as_array().unwrap().is_empty(),
            "{v}"
        );
        assert!(
            schema["allowed"].as_u64().unwrap() >= 3,
            "{engine}: {schema}"
        );
        assert!(
            schema["forbidden"].as_u64().unwrap() >= 5,
            "{engine}: {schema}"
        );
        assert_eq!(v["description"]["name"], engine);
    }

    // A schema that forbids what initialize accepts fails the check, saying where.
    let dir = tempfile::tempdir().unwrap();
    let path = components::write(dir.path(), "liar", &disagreeing_component());
    let path = path.to_str().unwrap();
    let info = json(&epu.ok(&["engine", "info", path, "--json"]));
    assert_eq!(key(&info["description"], "n")["kind"], "integer", "{info}");
    let out = epu.run(&["engine", "check", path]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("schema")
            && text.contains("forbids")
            && text.contains("initialize accepted it"),
        "{text}"
    );
}

#[test]
fn a_describe_that_spins_or_lies_is_refused_and_the_daemon_runs_on() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let dir = tempfile::tempdir().unwrap();
    let spin = components::write(
        dir.path(),
        "spin",
        &components::describing_component("(loop $l (br $l)) (i32.const 512)"),
    );
    let out = epu.add_domain("spin").engine(&spin).run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Timeout") || err.contains("time"), "{err}");

    // A description whose name points outside the memory traps when it is read.
    let wild = components::write(
        dir.path(),
        "wild",
        &components::describing_component(
            "(i32.store (i32.const 512) (i32.const 0x7fffffff)) (i32.const 512)",
        ),
    );
    let out = epu.add_domain("wild").engine(&wild).run();
    assert!(!out.status.success());
    // One with an empty name is refused by the host's own checks.
    let nameless = components::write(
        dir.path(),
        "nameless",
        &components::describing_component(
            "(i32.store (i32.const 516) (i32.const 0)) (i32.const 512)",
        ),
    );
    let out = epu.add_domain("nameless").engine(&nameless).run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("name is empty"),
        "{err}"
    );

    // The daemon answers and runs a good domain beside them.
    epu.add_sleepers("ok", 1);
    assert!(wait_for(Duration::from_secs(30), || epu
        .instances("ok")
        .iter()
        .any(|i| i.pid.is_some())));
    assert_eq!(
        epu.status()["domains"].as_array().unwrap().len(),
        1,
        "only the good domain was added"
    );
}
