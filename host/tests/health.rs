//! Health from heartbeats: silent workers turn missing, failing ones report process-error, and
//! npreserving destroys both and replaces them; late heartbeats mark zombies.

mod common;

use common::{wait_for, Epu};
use std::time::Duration;

fn health_events(epu: &Epu, id: &str) -> Vec<String> {
    epu.ok(&["events", "--json"])
        .lines()
        .filter(|l| l.contains(id) && l.contains("\"kind\":\"health\""))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_worker_that_never_heartbeats_goes_missing_and_is_replaced() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    epu.ok(&[
        "domain",
        "add",
        "silent",
        "--engine",
        "npreserving",
        "-c",
        "preserve_n=1",
        "--boot-timeout",
        "1",
        "--grace",
        "0.2",
        "--",
        "/bin/sleep",
        "1000",
    ]);
    let mut first = Vec::new();
    // Spawned, but with no heartbeat it never gets past `started`.
    let started = wait_for(Duration::from_secs(10), || {
        first = epu.instances("silent");
        first.len() == 1 && first[0].state == "started"
    });
    assert!(started, "{first:?}");
    let first = first[0].clone();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let now = epu.instances("silent");
            now.len() == 1 && now[0].id != first.id
        }),
        "the silent worker was not replaced"
    );
    let events = health_events(&epu, &first.id);
    assert!(
        events.iter().any(|e| e.contains("\"to\":\"missing\"")),
        "{events:?}"
    );
    assert!(wait_for(Duration::from_secs(5), || !common::is_alive(
        first.pid.unwrap()
    )));
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn a_process_error_heartbeat_gets_the_worker_replaced() {
    let epu = Epu::new();
    let before = epu.boot_quickstart();
    let sick = &before[0];
    epu.ok(&[
        "heartbeat",
        "--node-id",
        &sick.id,
        "--state",
        "process-error",
        "--error",
        "disk full",
    ]);
    assert!(
        wait_for(Duration::from_secs(10), || {
            let now = epu.instances("workers");
            now.len() == 3 && now.iter().all(|i| i.id != sick.id && i.state == "running")
        }),
        "the sick worker was not replaced"
    );
    let events = epu.ok(&["events", "--json"]);
    assert!(
        events.contains("disk full"),
        "the reported error is in the event log"
    );
    let err = epu.fails(&["heartbeat", "--node-id", "i-unknown"]);
    assert!(err.contains("unknown node"), "{err}");
}

#[test]
fn a_heartbeat_long_after_a_destroy_marks_a_zombie() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    epu.ok(&[
        "domain",
        "add",
        "z",
        "--engine",
        "npreserving",
        "-c",
        "preserve_n=1",
        "--zombie-timeout",
        "0",
        "--grace",
        "0.2",
        "--",
        "/bin/sleep",
        "1000",
    ]);
    assert!(wait_for(Duration::from_secs(10), || epu
        .instances("z")
        .len()
        == 1));
    let victim = epu.instances("z")[0].clone();
    epu.ok(&["reconfigure", "z", "preserve_n=0"]);
    assert!(wait_for(Duration::from_secs(10), || epu
        .instances("z")
        .is_empty()));
    std::thread::sleep(Duration::from_millis(50));
    epu.ok(&["heartbeat", "--node-id", &victim.id]);
    let events = health_events(&epu, &victim.id);
    assert!(
        events.iter().any(|e| e.contains("\"to\":\"zombie\"")),
        "{events:?}"
    );
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}
