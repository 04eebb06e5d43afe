//! Health from heartbeats: silent workers turn missing, failing ones report process-error, and
//! npreserving destroys both and replaces them; late heartbeats mark zombies.

use crate::kit;

use kit::{wait_for, Epu};
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
    epu.add_domain("silent")
        .config("preserve_n=1")
        .flag("--boot-timeout", "1")
        .flag("--grace", "0.2")
        .ok();
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
    assert!(wait_for(Duration::from_secs(5), || !kit::is_alive(
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
    epu.add_domain("z")
        .config("preserve_n=1")
        .flag("--zombie-timeout", "0")
        .flag("--grace", "0.2")
        .ok();
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

/// libfaketime, which shifts a process's wall clock (not its monotonic clock) by the offset
/// in a file, re-read every second (Debian package `faketime`).
#[cfg(feature = "services")]
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The wall clock jumps two hours ahead and then back behind real time under a running daemon.
/// Silence is timed on the monotonic clock: the jump ahead marks no heartbeating worker
/// missing (nothing is replaced), and after the jump back a worker that stops heartbeating is
/// still found missing on time.
#[test]
#[cfg(feature = "services")]
fn a_wall_clock_jump_neither_invents_nor_hides_silent_workers() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: apt-get install faketime"
    );
    let epu = Epu::new();
    let offset = epu.dir.path().join("clock-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let mut daemon = epu
        .command()
        .arg("daemon")
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        .env("FAKETIME_CACHE_DURATION", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(20), || epu
        .run(&["status"])
        .status
        .success()));
    let worker = kit::repo().join("launch-plans/quickstart/worker.sh");
    epu.add_domain("clocked")
        .config("preserve_n=2")
        .flag("--pulse-ms", "100")
        .flag("--missing-timeout", "3")
        .flag("--env", "HEARTBEAT_SECONDS=0.5")
        .flag("--grace", "0.2")
        .command(&[&worker])
        .ok();
    let before = epu.wait_running("clocked", 2);
    // The time of a fresh event (a reconfigure that changes nothing), as the daemon's clock has it.
    let wall = |epu: &Epu| {
        epu.ok(&["reconfigure", "clocked", "preserve_n=2"]);
        let last = epu.ok(&["events", "--json"]);
        let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
        last["time"].as_f64().unwrap()
    };

    std::fs::write(&offset, "+7200\n").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        wall(&epu) > kit::unix_now() + 7000.0,
        "the daemon's clock did not jump ahead: is libfaketime working?"
    );
    assert_eq!(epu.wait_running("clocked", 2), before, "jump ahead");
    for i in &before {
        assert_eq!(health_events(&epu, &i.id).len(), 1, "only unknown → ok");
    }

    std::fs::write(&offset, "-7200\n").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        wall(&epu) < kit::unix_now() - 7000.0,
        "the clock did not jump back"
    );
    assert_eq!(epu.wait_running("clocked", 2), before, "jump back");
    // A worker that stops heartbeating is found missing within its 3 s, although every
    // heartbeat it sent is stamped two hours after the daemon's clock now.
    let stopped = before[0].pid.unwrap();
    assert!(kit::signal(stopped, kit::Signal::SIGSTOP));
    let missing = wait_for(Duration::from_secs(8), || {
        health_events(&epu, &before[0].id)
            .iter()
            .any(|e| e.contains("\"to\":\"missing\""))
    });
    kit::signal(stopped, kit::Signal::SIGCONT);
    assert!(missing, "{:?}", health_events(&epu, &before[0].id));
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}
