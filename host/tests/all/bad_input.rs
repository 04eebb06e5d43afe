//! Every kind of bad input gets a clear message and a non-zero exit, and changes nothing.

use crate::kit;

use kit::Epu;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The parts of the state that bad input must not change.
fn state(epu: &Epu) -> Vec<(Value, Value, Vec<String>)> {
    epu.status()["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let ids = d["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect();
            (d["config"].clone(), d["config_version"].clone(), ids)
        })
        .collect()
}

fn write(epu: &Epu, name: &str, bytes: &[u8]) -> PathBuf {
    let p = epu.dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn engines_that_are_not_components_of_the_world_are_refused() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "garbage.wasm",
            b"this is not wasm at all",
            "not WebAssembly",
        ),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0",
            "core WebAssembly module, not a component",
        ),
        // A valid, empty component: it exports nothing of the engine world.
        (
            "empty.wasm",
            b"\0asm\x0d\0\x01\0",
            "does not implement the epu:engine/engine world",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = write(&epu, name, bytes);
        let err = epu
            .add_domain("d")
            .engine(&path)
            .command(&["/bin/true"])
            .fails();
        assert!(err.contains(needle), "{name}: {err}");
    }
    // A real component of another world that also exports a `decide`.
    let other = format!("{}/hostile-otherworld.wasm", env!("EPU_TEST_ENGINES_DIR"));
    let err = epu
        .add_domain("d")
        .engine(&other)
        .command(&["/bin/true"])
        .fails();
    assert!(
        err.contains("does not implement the epu:engine/engine world"),
        "{err}"
    );
    let err = epu
        .add_domain("d")
        .engine("no-such-engine")
        .command(&["/bin/true"])
        .fails();
    assert!(err.contains("neither a bundled engine"), "{err}");
    assert!(state(&epu).is_empty());
    // Nothing of a refused engine is kept in the state dir.
    let kept = std::fs::read_dir(epu.state_dir().join("engines"))
        .unwrap()
        .count();
    assert_eq!(kept, 0);
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn a_config_value_of_the_wrong_type_is_refused_and_nothing_changes() {
    let epu = Epu::new();
    epu.boot_quickstart();
    let before = state(&epu);

    let err = epu.fails(&["reconfigure", "workers", "preserve_n=abc"]);
    assert!(
        err.contains("preserve_n must be a whole number >= 0, got \"abc\""),
        "{err}"
    );
    let err = epu.fails(&["reconfigure", "workers", "preserve-n=4"]);
    assert!(err.contains("unknown key 'preserve-n'"), "{err}");
    let err = epu.fails(&["reconfigure", "workers", "preserve_n"]);
    assert!(err.contains("is not KEY=VALUE"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state(&epu), before);

    let err = epu
        .add_domain("more")
        .config("preserve_n=2.5")
        .command(&["/bin/true"])
        .fails();
    assert!(err.contains("preserve_n must be a whole number"), "{err}");
    assert_eq!(state(&epu), before, "a refused domain must not be stored");

    // The engine still works with its old config after the refusals.
    epu.ok(&["reconfigure", "workers", "preserve_n=\"4\""]);
    epu.wait_running("workers", 4);
}

#[test]
fn unknown_domains_and_bad_names_are_refused() {
    let epu = Epu::new();
    epu.boot_quickstart();
    let before = state(&epu);
    for args in [
        vec!["reconfigure", "nope", "preserve_n=1"],
        vec!["domain", "remove", "nope"],
    ] {
        let err = epu.fails(&args);
        assert!(err.contains("unknown domain 'nope'"), "{args:?}: {err}");
    }
    // A status may be of a domain or a run.
    let err = epu.fails(&["status", "nope"]);
    assert!(err.contains("unknown domain or run 'nope'"), "{err}");
    let err = epu.add_domain("../evil").command(&["/bin/true"]).fails();
    assert!(err.contains("invalid domain name"), "{err}");
    let err = epu.add_domain("workers").command(&["/bin/true"]).fails();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(state(&epu), before);
}

#[test]
fn bad_plans_are_refused_before_anything_starts() {
    let epu = Epu::new();
    let dir = epu.dir.path().join("plan");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("plan.toml"),
        "name = \"p\"\n[[domain]\nname = \"x\"\n",
    )
    .unwrap();
    let err = epu.fails(&["boot", dir.to_str().unwrap()]);
    assert!(err.contains("plan.toml") && err.contains("line 2"), "{err}");

    std::fs::write(
        dir.join("plan.toml"),
        "name = \"p\"\n[[domain]]\nname = \"x\"\nengine = \"missing.wasm\"\nprocess = { command = [\"/bin/true\"] }\n",
    )
    .unwrap();
    let err = epu.fails(&["boot", dir.to_str().unwrap()]);
    assert!(
        err.contains("missing.wasm") && err.contains("does not exist"),
        "{err}"
    );
    let err = epu.fails(&["run", dir.to_str().unwrap()]);
    assert!(err.contains("missing.wasm"), "{err}");

    // No daemon was started and no state was written.
    assert!(!epu.state_dir().join("epu.db").exists());
    assert!(!epu.run(&["status"]).status.success());
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let epu = Epu::new();
    epu.boot_quickstart();
    let before = state(&epu);
    let first = epu.daemon_pid().unwrap();
    let err = epu.fails(&["daemon"]);
    assert!(
        err.contains("another epu daemon is already running") && err.contains(&first.to_string()),
        "{err}"
    );
    let plan = kit::repo().join("launch-plans/quickstart");
    let err = epu.fails(&["run", plan.to_str().unwrap()]);
    assert!(err.contains("already running"), "{err}");
    assert_eq!(epu.daemon_pid(), Some(first));
    assert_eq!(state(&epu), before);
}
