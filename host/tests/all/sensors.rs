//! Pushed and command sensors, and bad sensor input, with the bundled queuelen engine.

use crate::kit;

use kit::{wait_for, Epu};
use std::time::Duration;

/// Adds a queuelen domain (high water 5, low water 1) with one sensor and idle workers.
fn add(epu: &Epu, domain: &str, sensor: &str, min: u32) {
    epu.add_domain(domain)
        .engine("queuelen")
        .config("queuelen_high_water=5")
        .config("queuelen_low_water=1")
        .config(&format!("min_instances={min}"))
        .flag("--sensor", sensor)
        .flag("--pulse-ms", "500")
        .command(&[
            "sh",
            "-c",
            "while :; do \"$EPU_BIN\" heartbeat; sleep 1; done",
        ])
        .ok();
}

#[test]
fn pushed_readings_scale_the_pool_and_survive_a_restart() {
    let epu = Epu::new();
    let daemon = epu.daemon();
    add(&epu, "pushed", "kind=pushed,name=queue-length", 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        epu.instances("pushed").is_empty(),
        "no reading: nothing launched"
    );

    epu.ok(&["sensor", "push", "pushed", "queue-length", "9"]);
    epu.wait_running("pushed", 1);
    epu.ok(&["sensor", "push", "pushed", "queue-length", "12"]);
    epu.wait_running("pushed", 2);
    let s = epu.sensor("pushed", "queue-length");
    assert_eq!(
        (s["value"].as_f64(), s["stale"].as_bool()),
        (Some(12.0), Some(false))
    );

    // The reading is kept: after a restart the engine still sees 12, so it does not shrink.
    daemon.kill9();
    let _daemon = epu.daemon();
    assert_eq!(epu.sensor("pushed", "queue-length")["value"], 12.0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(epu.instances("pushed").len(), 2);

    epu.ok(&["sensor", "push", "pushed", "queue-length", "0"]);
    epu.ok(&["sensor", "push", "pushed", "queue-length", "0.0"]);
    let shrunk = wait_for(Duration::from_secs(20), || {
        epu.instances("pushed").len() <= 1
    });
    assert!(shrunk, "{:?}", epu.instances("pushed"));
}

#[test]
fn a_command_sensor_is_polled_and_its_failures_are_stale_readings() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    let depth = epu.dir.path().join("depth");
    std::fs::write(&depth, "3\n").unwrap();
    let spec = format!(
        "kind=command,name=queue-length,interval_ms=100,command=cat {}",
        depth.display()
    );
    add(&epu, "cmd", &spec, 0);
    // Work and no instance: one is launched.
    epu.wait_running("cmd", 1);
    assert_eq!(epu.sensor("cmd", "queue-length")["value"], 3.0);

    std::fs::write(&depth, "lots\n").unwrap();
    let failed = wait_for(Duration::from_secs(10), || {
        epu.sensor("cmd", "queue-length")["stale"] == true
    });
    assert!(failed, "{}", epu.sensor("cmd", "queue-length"));
    let s = epu.sensor("cmd", "queue-length");
    assert_eq!(s["value"], 3.0, "the last good value is kept");
    assert!(s["error"].as_str().unwrap().contains("not a number"), "{s}");
    let human = epu.ok(&["status", "cmd"]);
    assert!(human.contains("STALE"), "{human}");
    // A stale reading holds the count, even at 0 work.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(epu.instances("cmd").len(), 1);

    std::fs::write(&depth, "0\n").unwrap();
    let recovered = wait_for(Duration::from_secs(10), || epu.instances("cmd").is_empty());
    assert!(
        recovered,
        "{:?} {}",
        epu.instances("cmd"),
        epu.sensor("cmd", "queue-length")
    );
    let events = epu.ok(&["events", "--json", "--domain", "cmd"]);
    assert!(events.contains("\"sensor-failed\"") && events.contains("\"sensor-recovered\""));
}

#[test]
fn bad_sensor_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let epu = Epu::new();
    let _daemon = epu.daemon();
    add(&epu, "d", "kind=pushed,name=queue-length", 0);
    let cases: &[(&[&str], &str)] = &[
        (
            &["sensor", "push", "nope", "queue-length", "1"],
            "unknown domain 'nope'",
        ),
        (
            &["sensor", "push", "d", "typo", "1"],
            "has no sensor 'typo' (declared: queue-length)",
        ),
        (
            &["sensor", "push", "d", "queue-length", "many"],
            "must be a finite number",
        ),
        (
            &["sensor", "push", "d", "queue-length", "NaN"],
            "must be a finite number",
        ),
    ];
    for (args, needle) in cases {
        let err = epu.fails(args);
        assert!(
            err.contains(needle),
            "{args:?}: expected '{needle}' in {err}"
        );
    }
    assert!(epu.sensor("d", "queue-length")["value"].is_null());

    let bad_domains: &[(&[&str], &str)] = &[
        (
            &["--sensor", "kind=amqp,name=q,url=http://x,queue=w"],
            "bad AMQP url",
        ),
        (
            &[
                "--sensor",
                "kind=pushed,name=a",
                "--sensor",
                "kind=pushed,name=a",
            ],
            "declared twice",
        ),
        (&["--sensor", "kind=gauge,name=a"], "gauge"),
    ];
    for (extra, needle) in bad_domains {
        let err = epu
            .add_domain("bad")
            .engine("queuelen")
            .config("queuelen_high_water=5")
            .config("queuelen_low_water=1")
            .options(extra)
            .command(&["true"])
            .fails();
        assert!(
            err.contains(needle),
            "{extra:?}: expected '{needle}' in {err}"
        );
    }
    // The engine's own checks: a required key, and a change that would break high > low.
    let err = epu
        .add_domain("bad")
        .engine("queuelen")
        .config("queuelen_low_water=1")
        .command(&["true"])
        .fails();
    assert!(err.contains("queuelen_high_water is required"), "{err}");
    let names = epu.ok(&["domain", "list"]);
    assert_eq!(names.trim(), "d", "nothing half-created: {names}");
    let err = epu.fails(&["reconfigure", "d", "queuelen_low_water=9"]);
    assert!(err.contains("must be above"), "{err}");
    assert_eq!(epu.status()["domains"][0]["config_version"], 1);
}
