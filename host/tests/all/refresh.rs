//! Rolling refresh: a new version of a domain's deployable (`epu domain update`) replaces the
//! running instances make-before-break (`epu domain refresh`), survives a `kill -9` of the
//! daemon, stops when replacements fail, and rolls back. Real worker processes.

use crate::kit::{wait_for, Epu};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// A worker that says its version in its log, takes a second to come up (so that a
/// replacement put in service before it runs would show as a gap), then heartbeats every 0.2 s.
const WORKER: &str = r#"echo "version $VERSION"; sleep 1
    while :; do "$EPU_BIN" heartbeat >/dev/null 2>&1; sleep 0.2; done"#;

fn add(epu: &Epu, n: u32) {
    epu.add_domain("d")
        .config(&format!("preserve_n={n}"))
        .flag("--pulse-ms", "100")
        .options(&["--grace", "0", "--env", "VERSION=1"])
        .command(&["sh", "-c", WORKER])
        .ok();
    epu.wait_running("d", n as usize);
}

fn update(epu: &Epu, version: &str, command: &str) -> String {
    let env = format!("VERSION={version}");
    epu.ok(&[
        "domain", "update", "d", "--grace", "0", "--env", &env, "--", "sh", "-c", command,
    ])
}

/// The domain's instances as `epu status --json` shows them.
fn instances(epu: &Epu) -> Vec<Value> {
    epu.domain("d")["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ever(epu: &Epu) -> BTreeSet<String> {
    epu.instances_ever("d")
}

/// In service and healthy: running, ok, not a hidden replacement, not draining.
fn serving(i: &Value) -> bool {
    i["state"] == "running"
        && i["health"] == "ok"
        && i["surge"] != true
        && i["drain_until"].is_null()
}

/// Waits for the refresh to end, checking at each look that `n` instances stay in service.
/// Returns the fewest seen in service.
fn watch_refresh(epu: &Epu, n: usize) -> usize {
    let mut fewest = usize::MAX;
    let done = wait_for(Duration::from_secs(60), || {
        let d = epu.domain("d");
        let all = d["instances"].as_array().cloned().unwrap_or_default();
        fewest = fewest.min(all.iter().filter(|i| serving(i)).count());
        d["refresh"].is_null() && all.len() == n
    });
    assert!(done, "the refresh never ended: {}", epu.domain("d"));
    fewest
}

#[test]
fn a_refresh_replaces_every_instance_make_before_break_and_rolls_back() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(&epu, 4);
    let first = ever(&epu);
    let out = update(&epu, "2", WORKER);
    assert!(out.contains("version 2"), "{out}");
    assert_eq!(epu.domain("d")["deployable_version"], 2);
    // An update alone replaces nothing.
    std::thread::sleep(Duration::from_secs(1));
    assert!(instances(&epu).iter().all(|i| i["version"] == 1));

    let out = epu.ok(&["domain", "refresh", "d", "--batch", "2", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["refresh"]["to_version"], 2, "{v}");
    let fewest = watch_refresh(&epu, 4);
    assert!(
        fewest >= 4,
        "only {fewest} instances were in service at one point"
    );
    let now = instances(&epu);
    assert!(
        now.iter().all(|i| i["version"] == 2 && serving(i)),
        "{now:?}"
    );
    for i in &now {
        let id = i["id"].as_str().unwrap();
        let log = std::fs::read_to_string(epu.state_dir().join(format!("logs/{id}.log")))
            .unwrap_or_default();
        assert!(log.contains("version 2"), "{id}: {log}");
    }
    // Exactly one replacement each: 8 instances in all, none failed.
    assert_eq!(ever(&epu).len(), 8, "{:?}", ever(&epu));
    assert!(ever(&epu).is_superset(&first));
    assert_eq!(epu.events("d", Some("refresh-replaced")).len(), 4);
    assert_eq!(epu.events("d", Some("refresh-done")).len(), 1);
    assert!(epu
        .events("d", Some("state"))
        .iter()
        .all(|e| e["detail"]["to"] != "failed"));

    // Back to version 1, the same way.
    epu.ok(&["domain", "refresh", "d", "--rollback"]);
    assert!(watch_refresh(&epu, 4) >= 4);
    assert_eq!(epu.domain("d")["deployable_version"], 1);
    assert!(instances(&epu).iter().all(|i| i["version"] == 1));
    assert_eq!(ever(&epu).len(), 12);
}

#[test]
fn a_refresh_finishes_after_a_kill_9_of_the_daemon_with_nothing_doubled() {
    let epu = Epu::new();
    let daemon = epu.daemon();
    add(&epu, 3);
    update(&epu, "2", WORKER);
    epu.ok(&["domain", "refresh", "d"]);
    assert!(
        wait_for(Duration::from_secs(30), || !epu
            .events("d", Some("refresh-replaced"))
            .is_empty()),
        "no replacement went into service"
    );
    daemon.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let _d = epu.daemon();
    watch_refresh(&epu, 3);
    assert!(instances(&epu).iter().all(|i| i["version"] == 2));
    assert_eq!(ever(&epu).len(), 6, "{:?}", ever(&epu));
    assert_eq!(epu.events("d", Some("refresh-replaced")).len(), 3);
}

#[test]
fn replacements_that_fail_stop_the_refresh_and_leave_the_old_instances_serving() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(&epu, 2);
    let old: BTreeSet<String> = instances(&epu)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    update(&epu, "2", "exit 1");
    epu.ok(&["domain", "refresh", "d", "--batch", "2"]);
    let stopped = wait_for(Duration::from_secs(60), || {
        !epu.events("d", Some("refresh-failed")).is_empty()
    });
    assert!(stopped, "{}", epu.domain("d"));
    let shown = epu.ok(&["status", "d"]);
    assert!(shown.contains("REFRESH STOPPED"), "{shown}");
    let serving_now: BTreeSet<String> = instances(&epu)
        .iter()
        .filter(|i| serving(i))
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serving_now, old, "the old instances serve on");
    // The rollback makes version 1 current again: nothing is left to replace.
    epu.ok(&["domain", "refresh", "d", "--rollback"]);
    watch_refresh(&epu, 2);
    assert_eq!(epu.domain("d")["deployable_version"], 1);
    let after: BTreeSet<String> = instances(&epu)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(after, old);
}

#[test]
fn bad_updates_and_refreshes_are_refused_with_nothing_changed() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(&epu, 1);
    let err = epu.fails(&["domain", "update", "d", "--", "/no/such/program"]);
    assert!(err.contains("/no/such/program"), "{err}");
    assert_eq!(epu.domain("d")["deployable_version"], 1);
    let err = epu.fails(&["domain", "refresh", "d", "--batch", "0"]);
    assert!(err.contains("batch"), "{err}");
    let err = epu.fails(&["domain", "refresh", "d", "--min-healthy", "101"]);
    assert!(err.contains("min_healthy_percent"), "{err}");
    let err = epu.fails(&["domain", "refresh", "d", "--rollback"]);
    assert!(err.contains("no version to roll back to"), "{err}");
    let err = epu.fails(&["domain", "refresh", "nope"]);
    assert!(err.contains("nope"), "{err}");
    assert!(epu.domain("d")["refresh"].is_null());
}
