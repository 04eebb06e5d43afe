//! Runs of the two-level demo plan (`launch-plans/two-level-demo`): booting, attributes
//! reaching workers, a failing level, a daemon crash mid-run, and graphs of a run. Its
//! key-value service and workers are Python, so this module is in tier `services`.

use super::runs::{demo, demo_copy, json};
use crate::kit;
use kit::{is_alive, wait_for, Epu};
use std::time::Duration;

/// The environment of a live process as `KEY=VALUE` strings.
fn environ(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The pids of a run's services as they were started, oldest first, from its history.
fn service_pids(epu: &Epu, run: &str) -> Vec<i32> {
    epu.ok(&["history", run, "--json"])
        .lines()
        .map(json)
        .filter(|e| e["kind"] == "service-starting")
        .map(|e| e["detail"]["pid"].as_i64().unwrap() as i32)
        .collect()
}

#[test]
fn the_two_level_plan_boots_its_attributes_reach_the_workers_and_terminate_leaves_nothing() {
    let epu = Epu::new();
    let booted = json(&epu.ok(&["boot", demo().to_str().unwrap(), "--json"]));
    assert_eq!(booted["run"]["state"], "booted", "{booted:#}");
    let services = booted["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    assert!(
        services.iter().all(|s| s["state"] == "ready"),
        "{services:#?}"
    );
    let port = services[0]["attrs"]["port"].as_str().unwrap().to_string();
    assert!(port.parse::<u16>().unwrap() > 0);
    let url = services[1]["attrs"]["greeting_url"].as_str().unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{port}/greeting"));

    // Both attributes are in every worker's environment, and the worker used them.
    let workers = epu.wait_running("greeters", 2);
    for w in &workers {
        let env = environ(w.pid.unwrap());
        assert!(env.contains(&format!("KV_PORT={port}")), "{env:?}");
        assert!(env.contains(&format!("GREETING_URL={url}")), "{env:?}");
        let log = epu.state_dir().join("logs").join(format!("{}.log", w.id));
        let said = wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&format!("kv on port {port} says: hello from level 2"))
        });
        assert!(
            said,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    // status re-runs the readiness checks; find-workers and list see the same.
    let status = json(&epu.ok(&["status", "two-level-demo", "--json"]));
    assert_eq!(status["services"][0]["ready"]["ok"], true, "{status:#}");
    assert_eq!(status["services"][0]["alive"], true);
    assert_eq!(status["domains"][0]["name"], "greeters");
    let found = json(&epu.ok(&["find-workers", "two-level-demo", "--json"]));
    let mut found_pids: Vec<i64> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_i64().unwrap())
        .collect();
    found_pids.sort();
    assert_eq!(found_pids, epu.domain_pids("greeters"));
    let list = json(&epu.ok(&["list", "--json"]));
    assert_eq!(list[0]["name"], "two-level-demo");
    assert_eq!(list[0]["state"], "booted");

    // A killed worker is replaced, and the event analysis reports it.
    kit::kill9(workers[0].pid.unwrap());
    let replaced = wait_for(Duration::from_secs(20), || {
        let now = epu.instances("greeters");
        now.len() == 2
            && now.iter().all(|i| i.state == "running")
            && !now.iter().any(|i| i.id == workers[0].id)
    });
    assert!(replaced, "{:?}", epu.instances("greeters"));
    let summary = json(&epu.ok(&["events", "two-level-demo", "--summary", "--json"]));
    let d = &summary["domains"][0];
    assert_eq!(d["domain"], "greeters");
    assert_eq!(d["launches"], 3, "{d:#}");
    assert_eq!(d["failures"], 1, "{d:#}");
    assert_eq!(d["replacements"], 1, "{d:#}");
    assert_eq!(d["failure_to_replacement"]["count"], 1);
    assert_eq!(d["launch_to_running"]["count"], 3);
    let text = epu.ok(&["events", "greeters", "--summary"]);
    assert!(text.contains("replacements 1"), "{text}");

    // terminate: the workers first, then the services; nothing is left, checked by pid.
    let services = service_pids(&epu, "two-level-demo");
    assert_eq!(services.len(), 2);
    assert!(is_alive(services[0]), "kv should be running");
    let pids: Vec<i32> = epu
        .instances("greeters")
        .iter()
        .map(|i| i.pid.unwrap())
        .collect();
    let out = epu.ok(&["terminate", "two-level-demo"]);
    assert!(out.contains("terminated"), "{out}");
    for pid in pids.iter().chain(&services) {
        assert!(!is_alive(*pid), "pid {pid} is still alive");
    }
    assert!(epu.worker_processes().is_empty());
    assert!(epu.service_processes().is_empty());
    let list = json(&epu.ok(&["list", "--json"]));
    assert_eq!(list[0]["state"], "terminated");
    // The history keeps the order: workers gone before the first service is stopped, and
    // level 2 stopped before level 1.
    let kinds: Vec<String> = epu
        .ok(&["history", "two-level-demo", "--json"])
        .lines()
        .map(json)
        .map(|e| format!("{}:{}", e["kind"].as_str().unwrap(), e["detail"]["level"]))
        .collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k} in {kinds:?}"))
    };
    assert!(at("domain-removed:null") < at("level-terminated:2"));
    assert!(at("level-terminated:2") < at("level-terminated:1"));
    assert!(at("level-terminated:1") < at("run-terminated:null"));
}

#[test]
fn a_failing_level_2_readiness_check_exits_non_zero_and_leaves_no_process() {
    let epu = Epu::new();
    let plan = demo_copy(&epu.dir.path().join("plan"), |p| {
        p.replace(
            "publishes = [\"greeting_url\"]",
            "publishes = [\"greeting_url\"]\nready = { command = [\"sh\", \"-c\", \"echo announcer: no route to the queue; exit 3\"], retries = 3, interval_ms = 100 }",
        )
    });
    let err = epu.fails(&["boot", plan.to_str().unwrap()]);
    assert!(err.contains("level 2 failed"), "{err}");
    assert!(err.contains("announcer: no route to the queue"), "{err}");
    let services = service_pids(&epu, "two-level-demo");
    assert_eq!(services.len(), 2, "both levels were started");
    for pid in &services {
        assert!(!is_alive(*pid), "service pid {pid} is still alive");
    }
    assert!(epu.service_processes().is_empty());
    assert!(epu.worker_processes().is_empty());
    let list = json(&epu.ok(&["list", "--json"]));
    assert_eq!(list[0]["state"], "failed");
    assert!(list[0]["error"].as_str().unwrap().contains("no route"));
    // No domain was created; the history shows level 1 stopped after level 2 failed.
    assert!(epu.status()["domains"].as_array().unwrap().is_empty());
    let kinds: Vec<String> = epu
        .ok(&["history", "two-level-demo", "--json"])
        .lines()
        .map(|l| json(l)["kind"].as_str().unwrap().to_string())
        .collect();
    let failed = kinds.iter().position(|k| k == "level-failed").unwrap();
    let stopped = kinds.iter().rposition(|k| k == "level-terminated").unwrap();
    assert!(
        failed < stopped && kinds.last().unwrap() == "run-failed",
        "{kinds:?}"
    );

    // Fixed, the same run boots.
    std::fs::write(
        plan.join("plan.toml"),
        std::fs::read_to_string(demo().join("plan.toml")).unwrap(),
    )
    .unwrap();
    epu.ok(&["boot", plan.to_str().unwrap()]);
    epu.wait_running("greeters", 2);
}

#[test]
fn graphs_are_valid_svg_and_png_with_more_than_one_series() {
    let epu = Epu::new();
    epu.ok(&["boot", demo().to_str().unwrap()]);
    epu.wait_running("greeters", 2);
    let palette = ["9EC5FE", "FFC107", "198754"]; // launching, started, running
    let svg = epu.dir.path().join("g.svg");
    let out = epu.ok(&["graph", "two-level-demo", "-o", svg.to_str().unwrap()]);
    assert!(out.contains("running"), "{out}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    let upper = text.to_uppercase();
    let colors = palette.iter().filter(|c| upper.contains(*c)).count();
    assert!(colors >= 2, "series colors in the SVG: {colors}");
    assert!(text.contains("instances by state"));

    let png = epu.dir.path().join("g.png");
    epu.ok(&[
        "graph",
        "two-level-demo",
        "--kind",
        "instances",
        "-o",
        png.to_str().unwrap(),
    ]);
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1000, 560));
    let pixels = &buf[..info.buffer_size()];
    let step = info.color_type.samples();
    let count = |hex: &str| {
        let rgb: Vec<u8> = (0..3)
            .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap())
            .collect();
        pixels.chunks(step).filter(|p| p[..3] == rgb[..]).count()
    };
    let drawn = palette.iter().filter(|c| count(c) >= 50).count();
    assert!(drawn >= 2, "series drawn in the PNG: {drawn}");

    let latency = epu.dir.path().join("l.png");
    epu.ok(&[
        "graph",
        "greeters",
        "--kind",
        "latency",
        "-o",
        latency.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&latency)
        .unwrap()
        .starts_with(b"\x89PNG\r\n\x1a\n"));
    let err = epu.fails(&[
        "graph",
        "greeters",
        "-o",
        epu.dir.path().join("g.gif").to_str().unwrap(),
    ]);
    assert!(err.contains(".svg or .png"), "{err}");
    let err = epu.fails(&["graph", "nope", "-o", svg.to_str().unwrap()]);
    assert!(err.contains("unknown domain or run 'nope'"), "{err}");
    let err = epu.fails(&[
        "graph",
        "greeters",
        "--kind",
        "queue",
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert!(err.contains("no sensor reading"), "{err}");
}

#[test]
fn a_run_outlives_a_daemon_crash_and_a_crash_during_boot_leaks_nothing() {
    let epu = Epu::new();
    // A daemon killed while level 1 waits for its readiness check.
    let plan = demo_copy(&epu.dir.path().join("plan"), |p| {
        p.replace(
            "./kv-ready.py\"], timeout_seconds = 5, retries = 40",
            "false\"], timeout_seconds = 5, retries = 100000",
        )
    });
    let mut boot = epu
        .command()
        .args(["boot", plan.to_str().unwrap()])
        .spawn()
        .unwrap();
    let started = wait_for(Duration::from_secs(20), || {
        epu.state_dir().join("epu.db").exists()
            && epu
                .run(&["history", "two-level-demo", "--json"])
                .status
                .success()
            && !service_pids(&epu, "two-level-demo").is_empty()
    });
    assert!(started, "kv never started");
    let stale_kv = service_pids(&epu, "two-level-demo")[0];
    kit::kill9(epu.daemon_pid().unwrap());
    boot.kill().unwrap();
    boot.wait().unwrap();
    assert!(is_alive(stale_kv), "a service outlives its daemon");

    // Booting the fixed plan again marks the interrupted run failed, stops what it left, and
    // boots afresh.
    std::fs::write(
        plan.join("plan.toml"),
        std::fs::read_to_string(demo().join("plan.toml")).unwrap(),
    )
    .unwrap();
    epu.ok(&["boot", plan.to_str().unwrap()]);
    assert!(
        !is_alive(stale_kv),
        "the interrupted boot's kv is still alive"
    );
    let history = epu.ok(&["history", "two-level-demo"]);
    assert!(
        history.contains("the daemon stopped while the run was booting"),
        "{history}"
    );
    let workers = epu.wait_running("greeters", 2);

    // The booted run outlives a second crash; find-workers works with no daemon, and
    // terminate adopts what is alive and then stops it all.
    let kv = *service_pids(&epu, "two-level-demo")
        .iter()
        .rev()
        .nth(1)
        .unwrap();
    kit::kill9(epu.daemon_pid().unwrap());
    std::thread::sleep(Duration::from_millis(200));
    assert!(is_alive(kv));
    let found = json(&epu.ok(&["find-workers", "two-level-demo", "--json"]));
    assert_eq!(found.as_array().unwrap().len(), 2);
    epu.ok(&["terminate", "two-level-demo"]);
    assert!(!is_alive(kv), "kv is still alive");
    for w in &workers {
        assert!(!is_alive(w.pid.unwrap()), "worker {} is still alive", w.id);
    }
    assert!(epu.service_processes().is_empty());
}

#[test]
fn an_engine_that_refuses_its_config_fails_validate_and_boot_before_any_service_starts() {
    let epu = Epu::new();
    let plan = demo_copy(&epu.dir.path().join("plan"), |p| {
        p.replace("config = { preserve_n = 2 }", "config = { preserv_n = 2 }")
    });
    let plan = plan.to_str().unwrap();
    let err = epu.fails(&["boot", "--validate", plan]);
    for needle in [
        "plan.toml: line 27: domain 'greeters'",
        "unknown key 'preserv_n'",
        "did you mean 'preserve_n'",
    ] {
        assert!(err.contains(needle), "expected '{needle}' in: {err}");
    }
    // The boot itself refuses it with the same words before it starts anything.
    let booted = epu.fails(&["boot", plan]);
    assert!(
        booted.contains("line 27") && booted.contains("preserv_n"),
        "{booted}"
    );
    assert!(epu.service_processes().is_empty());
    let status = epu.status();
    assert!(status["runs"].as_array().unwrap().is_empty(), "{status}");
    assert!(status["domains"].as_array().unwrap().is_empty(), "{status}");

    // A config of the right key but a count the domain cannot hold is refused as well.
    let plan = demo_copy(&epu.dir.path().join("plan"), |p| {
        p.replace(
            "config = { preserve_n = 2 }",
            "config = { preserve_n = 20 }",
        )
    });
    let err = epu.fails(&["boot", "--validate", plan.to_str().unwrap()]);
    assert!(err.contains("over max_instances = 10"), "{err}");
    // The demo's own engine accepts its config, and says so.
    let out = epu.ok(&["boot", "--validate", demo().to_str().unwrap()]);
    assert!(
        out.contains("domain 'greeters': engine npreserving accepts its config"),
        "{out}"
    );
    let v = json(&epu.ok(&["boot", "--validate", "--json", demo().to_str().unwrap()]));
    assert_eq!(v["engines"][0]["tried"], true, "{v}");
}
