//! Drain before destroy: a destroyed, healthy worker of a domain with a drain timeout is told
//! to drain in its heartbeat answer (`epu heartbeat` exits 3), and is stopped only once it
//! exits, says it is done, or the timeout passes. A launch takes a draining worker back, and a
//! drain survives a `kill -9` of the daemon. Real worker processes.

use crate::kit::{is_alive, wait_for, Epu};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// Domain `d`'s events of `kind`, as JSON.
fn events(epu: &Epu, kind: &str) -> Vec<Value> {
    epu.events("d", Some(kind))
}

/// A worker that heartbeats every 0.2 s. Told to drain, it runs `on_drain` (a shell command).
fn worker(on_drain: &str) -> String {
    format!(
        r#"while :; do
            "$EPU_BIN" heartbeat >/dev/null 2>&1
            if [ $? = 3 ]; then {on_drain}; fi
            sleep 0.2
        done"#
    )
}

/// Finishes its job of 2 s (saying so in its log), then exits.
const FINISH_JOB: &str = "echo draining; sleep 2; echo job done; exit 0";
/// Goes on as if nothing was said.
const IGNORE: &str = "true";

fn add(epu: &Epu, n: u32, drain_timeout: &str, on_drain: &str) {
    epu.add_domain("d")
        .config(&format!("preserve_n={n}"))
        .flag("--pulse-ms", "100")
        .options(&["--grace", "0", "--drain-timeout", drain_timeout])
        .command(&["sh", "-c", &worker(on_drain)])
        .ok();
    epu.wait_running("d", n as usize);
}

fn log_of(epu: &Epu, id: &str) -> String {
    std::fs::read_to_string(epu.state_dir().join("logs").join(format!("{id}.log")))
        .unwrap_or_default()
}

fn ever(epu: &Epu) -> BTreeSet<String> {
    epu.instances_ever("d")
}

#[test]
fn a_worker_told_to_drain_finishes_its_job_before_it_goes_and_is_not_replaced() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(&epu, 2, "30", FINISH_JOB);
    let before = ever(&epu);
    epu.ok(&["reconfigure", "d", "preserve_n=1"]);

    assert!(
        wait_for(Duration::from_secs(10), || !events(&epu, "draining")
            .is_empty()),
        "no drain started"
    );
    let drained = events(&epu, "draining")[0]["instance"]
        .as_str()
        .unwrap()
        .to_string();
    // While it drains it is still up, and shown as draining.
    let shown = epu.ok(&["status", "d"]);
    assert!(shown.contains("draining"), "{shown}");

    let ended = wait_for(Duration::from_secs(20), || {
        !events(&epu, "drain-ended").is_empty() && epu.instances("d").len() == 1
    });
    assert!(ended, "the drain never ended: {:?}", epu.instances("d"));
    let end = &events(&epu, "drain-ended")[0];
    assert_eq!(end["instance"], drained.as_str());
    assert_eq!(end["detail"]["reason"], "exited", "{end}");
    let log = log_of(&epu, &drained);
    assert!(log.contains("job done"), "the job was cut short: {log}");
    // It ended as a drained worker does, not as a failure, and the engine launched nothing
    // in its place.
    assert!(events(&epu, "state")
        .iter()
        .all(|e| e["detail"]["to"] != "failed"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ever(&epu), before, "no instance was launched");
    assert_eq!(epu.instances("d").len(), 1);
}

#[test]
fn a_worker_that_ignores_the_drain_is_stopped_at_the_timeout() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(&epu, 1, "3", IGNORE);
    let pid = epu.instances("d")[0].pid.unwrap();
    epu.ok(&["reconfigure", "d", "preserve_n=0"]);
    assert!(wait_for(Duration::from_secs(10), || !events(
        &epu, "draining"
    )
    .is_empty()));
    assert!(is_alive(pid), "stopped before its timeout");
    assert!(
        wait_for(Duration::from_secs(20), || epu.instances("d").is_empty()),
        "still there after its drain timeout"
    );
    assert!(!is_alive(pid));
    let draining = &events(&epu, "draining")[0];
    let (started, until) = (
        draining["time"].as_f64().unwrap(),
        draining["detail"]["until"].as_f64().unwrap(),
    );
    // The deadline is 3 s from the decide that started the drain (a moment before its event).
    assert!((until - started - 3.0).abs() < 0.5, "{draining}");
    let end = &events(&epu, "drain-ended")[0];
    assert_eq!(end["detail"]["reason"], "timeout", "{end}");
    let ended = end["time"].as_f64().unwrap();
    assert!(
        ended >= until,
        "the drain ended at {ended}, before its deadline {until}"
    );
}

#[test]
fn a_worker_that_says_it_is_drained_is_stopped_at_once() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(&epu, 1, "600", r#""$EPU_BIN" heartbeat --drained"#);
    epu.ok(&["reconfigure", "d", "preserve_n=0"]);
    assert!(
        wait_for(Duration::from_secs(20), || epu.instances("d").is_empty()),
        "a drained worker should be stopped long before its 600 s"
    );
    let end = &events(&epu, "drain-ended")[0];
    assert_eq!(end["detail"]["reason"], "drained", "{end}");
    assert_eq!(events(&epu, "drained").len(), 1);
}

#[test]
fn a_launch_takes_draining_workers_back_instead_of_starting_new_ones() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(&epu, 3, "600", IGNORE);
    let before = ever(&epu);
    epu.ok(&["reconfigure", "d", "preserve_n=1"]);
    assert!(wait_for(Duration::from_secs(10), || events(
        &epu, "draining"
    )
    .len()
        == 2));
    epu.ok(&["reconfigure", "d", "preserve_n=3"]);
    assert!(
        wait_for(Duration::from_secs(10), || events(&epu, "drain-cancelled")
            .len()
            == 2),
        "{:?}",
        events(&epu, "drain-cancelled")
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ever(&epu), before, "nothing new was launched");
    let d = epu.domain("d");
    let instances = d["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3, "{d}");
    assert!(instances.iter().all(|i| i["drain_until"].is_null()), "{d}");
    // Their heartbeats no longer say drain.
    let id = instances[0]["id"].as_str().unwrap();
    let out = epu
        .command()
        .args(["heartbeat", "--node-id", id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_drain_finishes_after_a_kill_9_of_the_daemon_with_nothing_lost_or_doubled() {
    let epu = Epu::new();
    let daemon = epu.daemon();
    add(
        &epu,
        2,
        "30",
        "echo draining; sleep 4; echo job done; exit 0",
    );
    let before = ever(&epu);
    epu.ok(&["reconfigure", "d", "preserve_n=1"]);
    assert!(wait_for(Duration::from_secs(10), || !events(
        &epu, "draining"
    )
    .is_empty()));
    let drained = events(&epu, "draining")[0]["instance"]
        .as_str()
        .unwrap()
        .to_string();
    daemon.kill9();
    std::thread::sleep(Duration::from_secs(1));
    let _d = epu.daemon();
    let ended = wait_for(Duration::from_secs(30), || {
        !events(&epu, "drain-ended").is_empty() && epu.instances("d").len() == 1
    });
    assert!(ended, "the drain never ended: {:?}", epu.instances("d"));
    let end = &events(&epu, "drain-ended")[0];
    assert_eq!(end["instance"], drained.as_str());
    assert_eq!(end["detail"]["reason"], "exited", "{end}");
    assert!(log_of(&epu, &drained).contains("job done"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ever(&epu), before, "nothing was launched in its place");
    assert_eq!(events(&epu, "drain-ended").len(), 1);
}

#[test]
fn a_drain_timeout_out_of_range_is_refused_by_key() {
    let epu = Epu::new();
    let _d = epu.daemon();
    let out = epu
        .add_domain("d")
        .config("preserve_n=1")
        .options(&["--drain-timeout", "0"])
        .run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("drain_timeout_seconds"), "{err}");
}
