//! Hostile engines are contained within their limits, recorded with the right fault kind and
//! quarantined, while a healthy domain keeps its decide cadence; a swap to one is refused and
//! the old engine runs on. Swaps that pass validation can be rolled back.

use crate::kit;

use kit::{wait_for, Epu};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join(format!("{name}.wasm"))
}

fn add(epu: &Epu, domain: &str, engine: &str, config: &[&str]) {
    let mut add = epu
        .add_domain(domain)
        .engine(engine)
        .flag("--pulse-ms", "100");
    for c in config {
        add = add.config(c);
    }
    add.ok();
}

fn domain(epu: &Epu, name: &str) -> Value {
    epu.domain(name)
}

fn events(epu: &Epu, domain: &str) -> String {
    epu.ok(&["events", "--json", "--domain", domain])
}

#[test]
fn hostile_engines_are_contained_and_quarantined_while_others_keep_their_cadence() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    // A healthy engine that asks to decide every 200 ms.
    add(&epu, "healthy", fixture("faulty").to_str().unwrap(), &[]);
    let cases = [
        ("spin", "timeout"),
        ("memory", "memory"),
        ("recurse", "trap"),
        ("panic", "trap"),
        ("billion", "invalid-decision"),
        ("foreign", "invalid-decision"),
    ];
    for (name, _) in cases {
        add(
            &epu,
            name,
            fixture(&format!("hostile-{name}")).to_str().unwrap(),
            &[],
        );
    }
    let start_decides = domain(&epu, "healthy")["controller"]["decides"]
        .as_u64()
        .unwrap();
    let started = Instant::now();
    for (name, kind) in cases {
        let quarantined = wait_for(Duration::from_secs(20), || {
            domain(&epu, name)["controller"]["quarantined"] == true
        });
        let d = domain(&epu, name);
        assert!(quarantined, "{name} was not quarantined: {d}");
        assert_eq!(d["controller"]["last_fault_kind"], kind, "{name}: {d}");
        assert!(
            d["instances"].as_array().unwrap().is_empty(),
            "{name} launched something"
        );
        let log = events(&epu, name);
        let expected = format!("\"kind\":\"{kind}\"");
        let faults = log
            .lines()
            .filter(|l| l.contains("engine-fault") && l.contains(&expected))
            .count();
        assert!(faults >= 3, "{name}: {faults} {kind} faults\n{log}");
    }
    // The spinning engine gave up within its 50 ms budget, not the old 1 s one.
    let spin = events(&epu, "spin");
    assert!(spin.contains("interrupt"), "{spin}");

    // Meanwhile the healthy domain kept deciding about every 200 ms.
    std::thread::sleep(Duration::from_millis(500));
    let elapsed = started.elapsed().as_secs_f64();
    let decides = domain(&epu, "healthy")["controller"]["decides"]
        .as_u64()
        .unwrap()
        - start_decides;
    let expected = (elapsed / 0.2) as u64;
    assert!(
        decides * 10 >= expected * 6,
        "the healthy domain made {decides} decides in {elapsed:.1} s, expected about {expected}"
    );
    assert_eq!(
        domain(&epu, "healthy")["controller"]["consecutive_faults"],
        0
    );
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn an_engine_gets_no_files_env_clock_or_network() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    add(
        &epu,
        "probe",
        fixture("hostile-wasi").to_str().unwrap(),
        &[],
    );
    let mut log = String::new();
    assert!(wait_for(Duration::from_secs(10), || {
        log = events(&epu, "probe");
        log.contains("wasi probe")
    }));
    assert!(
        log.contains("wasi probe: fs=denied env=0 clock=0 net=denied"),
        "{log}"
    );
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn swaps_to_bad_engines_are_refused_and_the_old_engine_runs_on() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    add(&epu, "d", "npreserving", &["preserve_n=1"]);
    assert!(wait_for(Duration::from_secs(10), || epu
        .instances("d")
        .len()
        == 1));
    let before = epu.instances("d");

    let real = std::fs::read(fixture("faulty")).unwrap();
    let truncated = epu.dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let garbage = epu.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").unwrap();
    let other_world = epu.dir.path().join("other-world.wasm");
    std::fs::write(&other_world, b"\0asm\x0d\0\x01\0").unwrap();
    let mut files: Vec<(PathBuf, &str)> = vec![
        (truncated, "not a valid WebAssembly component"),
        (garbage, "not WebAssembly"),
        (other_world, "does not implement"),
        (fixture("hostile-otherworld"), "does not implement"),
    ];
    let old_contract = format!(
        "built for epu:engine@0.1.0, and this epu runs epu:engine@{}",
        epu::engine::CONTRACT_VERSION
    );
    files.push((fixture("hostile-oldcontract"), &old_contract));
    for (name, why) in [
        ("spin", "canary decide failed"),
        ("memory", "canary decide failed"),
        ("recurse", "canary decide failed"),
        ("panic", "canary decide failed"),
        ("billion", "canary decision refused"),
        ("foreign", "canary decision refused"),
    ] {
        files.push((fixture(&format!("hostile-{name}")), why));
    }
    for (file, why) in &files {
        let err = epu.fails(&["engine", "swap", "d", file.to_str().unwrap()]);
        assert!(err.contains(why), "{}: {err}", file.display());
    }
    let d = domain(&epu, "d");
    assert_eq!(d["engine"], "npreserving");
    let history: Value =
        serde_json::from_str(&epu.ok(&["engine", "history", "d", "--json"])).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(
        events(&epu, "d").matches("swap-rejected").count(),
        files.len()
    );
    // The old engine still decides: a killed worker is replaced.
    kit::kill9(before[0].pid.unwrap());
    assert!(wait_for(Duration::from_secs(10), || {
        let now = epu.instances("d");
        now.len() == 1 && now[0].id != before[0].id
    }));
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn a_swap_goes_live_and_can_be_rolled_back() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    add(
        &epu,
        "d",
        "npreserving",
        &["preserve_n=2", "devmode_no_failure_compensation=true"],
    );
    assert!(wait_for(Duration::from_secs(10), || epu
        .instances("d")
        .len()
        == 2));
    let first_sha = domain(&epu, "d")["engine_sha"].clone();

    // To the test engine (it launches one instance when there is none, and ignores N).
    let out = epu.ok(&["engine", "swap", "d", fixture("faulty").to_str().unwrap()]);
    assert!(out.contains("engine version 2 is live"), "{out}");
    assert_eq!(domain(&epu, "d")["engine"], "faulty");
    assert!(events(&epu, "d").contains("engine-swapped"));

    // And back: the first engine by its hash, with the domain's config and memo.
    let out = epu.ok(&["engine", "rollback", "d"]);
    assert!(out.contains("engine version 3"), "{out}");
    let d = domain(&epu, "d");
    assert_eq!(d["engine"], "npreserving");
    assert_eq!(d["engine_sha"], first_sha);
    let history: Value =
        serde_json::from_str(&epu.ok(&["engine", "history", "d", "--json"])).unwrap();
    let shas: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["sha"].clone())
        .collect();
    assert_eq!(shas.len(), 3);
    assert_eq!(shas[0], shas[2]);
    assert_ne!(shas[0], shas[1]);
    // A bundled engine can be swapped in by name too.
    epu.ok(&["engine", "swap", "d", "npreserving"]);
    let err = epu.fails(&["engine", "resume", "d"]);
    assert!(err.contains("not quarantined"), "{err}");
    let err = epu.fails(&["engine", "rollback", "nope"]);
    assert!(err.contains("unknown domain"), "{err}");
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn an_engine_dropped_into_the_plugins_dir_is_validated_and_swapped_in() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    add(&epu, "d", fixture("faulty").to_str().unwrap(), &[]);
    add(&epu, "other", "npreserving", &["preserve_n=0"]);
    let plugins = epu.state_dir().join("plugins");
    let original = domain(&epu, "d")["engine_sha"].clone();

    // A bad version of `faulty` is refused and the old one runs on.
    std::fs::copy(fixture("hostile-foreign"), plugins.join("faulty.wasm")).unwrap();
    assert!(wait_for(Duration::from_secs(10), || events(&epu, "d")
        .contains("swap-rejected")));
    assert_eq!(domain(&epu, "d")["engine_sha"], original);

    // A good one goes live; a domain with another engine is left alone.
    let tmp = plugins.join("faulty.wasm.part");
    std::fs::copy(fixture("hostile-wasi"), &tmp).unwrap();
    std::fs::rename(&tmp, plugins.join("faulty.wasm")).unwrap();
    assert!(wait_for(Duration::from_secs(10), || domain(&epu, "d")
        ["engine_sha"]
        != original));
    let history: Value =
        serde_json::from_str(&epu.ok(&["engine", "history", "d", "--json"])).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(domain(&epu, "other")["engine"], "npreserving");
    let other: Value =
        serde_json::from_str(&epu.ok(&["engine", "history", "other", "--json"])).unwrap();
    assert_eq!(other.as_array().unwrap().len(), 1);
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn a_quarantined_domain_holds_or_preserves_its_count_as_configured() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    for (name, fallback) in [("p", "preserve"), ("h", "hold")] {
        // Good on each instance's first decide, a trap after: the engine goes bad after it has
        // done its work (a canary does not see it).
        epu.add_domain(name)
            .engine(fixture("faulty"))
            .flag("--pulse-ms", "100")
            .flag("--quarantine-after", "2")
            .config("mode=fresh-then-trap")
            .flag("--fallback", fallback)
            .ok();
    }
    for name in ["p", "h"] {
        assert!(wait_for(Duration::from_secs(10), || epu
            .instances(name)
            .len()
            == 1));
        assert!(wait_for(Duration::from_secs(10), || domain(&epu, name)
            ["controller"]["quarantined"]
            == true));
    }
    let victims: Vec<_> = ["p", "h"]
        .iter()
        .map(|n| epu.instances(n)[0].clone())
        .collect();
    for v in &victims {
        kit::kill9(v.pid.unwrap());
    }
    // preserve replaces the failed worker without asking the engine; hold does nothing.
    assert!(wait_for(Duration::from_secs(10), || {
        let now = epu.instances("p");
        now.len() == 1 && now[0].id != victims[0].id
    }));
    assert!(wait_for(Duration::from_secs(5), || epu
        .instances("h")
        .is_empty()));
    std::thread::sleep(Duration::from_millis(500));
    assert!(epu.instances("h").is_empty(), "hold launched something");
    assert!(events(&epu, "p").contains("\"by\":\"fallback\""));

    // Resume: the engine decides again (and, still bad, is quarantined again).
    epu.ok(&["reconfigure", "h", "mode=ok"]);
    epu.ok(&["engine", "resume", "h"]);
    assert!(wait_for(Duration::from_secs(10), || epu
        .instances("h")
        .len()
        == 1));
    assert_eq!(domain(&epu, "h")["controller"]["quarantined"], false);
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn a_quarantine_survives_a_daemon_restart() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    add(&epu, "bad", fixture("hostile-panic").to_str().unwrap(), &[]);
    assert!(wait_for(Duration::from_secs(10), || domain(&epu, "bad")
        ["controller"]["quarantined"]
        == true));
    let faults_before = events(&epu, "bad").matches("engine-fault").count();
    kit::kill9(daemon.id() as i32);
    daemon.wait().unwrap();

    let mut daemon = epu.start_daemon();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(domain(&epu, "bad")["controller"]["quarantined"], true);
    let faults_after = events(&epu, "bad").matches("engine-fault").count();
    assert_eq!(
        faults_after, faults_before,
        "a quarantined engine is not called after a restart"
    );
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn an_engine_that_runs_past_its_budget_moves_to_the_isolation_thread() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    // Several healthy domains, spread over the decide threads, and a spinning engine that is
    // not quarantined for a long while.
    for n in 0..4 {
        add(
            &epu,
            &format!("healthy-{n}"),
            fixture("faulty").to_str().unwrap(),
            &[],
        );
    }
    epu.add_domain("spin")
        .engine(fixture("hostile-spin"))
        .flag("--pulse-ms", "100")
        .flag("--quarantine-after", "1000")
        .ok();
    let isolated = wait_for(Duration::from_secs(20), || {
        domain(&epu, "spin")["controller"]["isolated"] == true
    });
    assert!(isolated, "{}", domain(&epu, "spin"));
    // It goes on deciding (and timing out) there, while the others run where they were.
    let faults = |epu: &Epu| {
        domain(epu, "spin")["controller"]["consecutive_faults"]
            .as_u64()
            .unwrap()
    };
    let before = faults(&epu);
    assert!(wait_for(Duration::from_secs(20), || faults(&epu) >= before + 3));
    for n in 0..4 {
        let d = domain(&epu, &format!("healthy-{n}"));
        assert_eq!(d["controller"]["isolated"], false, "{d}");
        assert_eq!(d["controller"]["consecutive_faults"], 0, "{d}");
    }
    // Commands still reach the moved controller.
    epu.ok(&["domain", "remove", "spin"]);
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}
