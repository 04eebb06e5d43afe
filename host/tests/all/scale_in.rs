//! Safe scale-in, enforced by the daemon whatever the engine decides: protected instances,
//! and budgets on launches, destroys and the healthy share. Real worker processes.

use crate::kit::{is_alive, wait_for, Epu};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Domain `d`'s events of `kind`, as JSON.
fn events(epu: &Epu, kind: &str) -> Vec<Value> {
    epu.events("d", Some(kind))
}

/// The live (not terminating) instances of `d`.
fn live(epu: &Epu) -> Vec<crate::kit::Instance> {
    epu.instances("d")
        .into_iter()
        .filter(|i| i.state != "terminating")
        .collect()
}

fn add(epu: &Epu, n: u32, options: &[&str]) {
    epu.add_domain("d")
        .config(&format!("preserve_n={n}"))
        .flag("--pulse-ms", "100")
        .options(options)
        .ok();
    // Up: spawned, with a pid.
    let up = || {
        let all = live(epu);
        all.len() == n as usize && all.iter().all(|i| i.pid.is_some())
    };
    assert!(
        wait_for(Duration::from_secs(30), up),
        "{n} instances never came up"
    );
}

#[test]
fn a_protected_worker_stays_through_a_scale_to_zero_and_goes_once_unprotected() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(&epu, 6, &["--grace", "0"]);
    let keep = live(&epu)[2].clone();
    let out = epu.ok(&["instance", "protect", "d", &keep.id, "--json"]);
    assert!(out.contains("\"protected\": true"), "{out}");
    assert_eq!(
        epu.domain("d")["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["protected"] == true)
            .count(),
        1
    );

    epu.ok(&["reconfigure", "d", "preserve_n=0"]);
    let mut last = vec![];
    let ok = wait_for(Duration::from_secs(20), || {
        last = epu.instances("d");
        last.len() == 1
    });
    assert!(ok, "only the protected instance should be left: {last:?}");
    assert_eq!(last[0].id, keep.id);
    assert!(is_alive(keep.pid.unwrap()));
    let held = events(&epu, "destroy-held");
    assert!(
        held.iter()
            .any(|e| e["detail"]["instance"] == keep.id.as_str()
                && e["detail"]["reason"] == "protected"),
        "{held:?}"
    );
    // Still there after more decides, and said so in the status.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(epu.instances("d").len(), 1);
    let status = epu.domain("d");
    assert_eq!(
        status["controller"]["held"]["destroys"][0][1], "protected",
        "{status}"
    );
    // One event for the hold, not one per decide.
    assert_eq!(events(&epu, "destroy-held").len(), 1);

    epu.ok(&["instance", "unprotect", "d", &keep.id]);
    assert!(
        wait_for(Duration::from_secs(20), || epu.instances("d").is_empty()),
        "the unprotected instance should go"
    );
    let gone = epu.fails(&["instance", "protect", "d", &keep.id]);
    assert!(gone.contains("no live instance"), "{gone}");
}

/// Four workers, of which the first to take a lock protects itself by heartbeat, under the
/// engine `engine` with `config`; `scale_in` then asks the engine for none. The protected
/// worker must be the one left.
fn self_protected_worker_stays(engine: &str, config: &[&str], scale_in: impl Fn(&Epu)) {
    let epu = Epu::new();
    let _d = epu.daemon();
    let lock = epu.dir.path().join("lock");
    let beat = format!(
        r#"p=""; if mkdir "{}" 2>/dev/null; then p=--protect; fi
        while :; do "$EPU_BIN" heartbeat $p >/dev/null 2>&1; sleep 0.2; done"#,
        lock.display()
    );
    let mut add = epu.add_domain("d").engine(engine);
    for c in config {
        add = add.config(c);
    }
    add.flag("--pulse-ms", "100")
        .flag("--sensor", "kind=pushed,name=queue-length")
        .options(&["--grace", "0"])
        .command(&["sh", "-c", &beat])
        .ok();
    epu.wait_running("d", 4);
    let protected = || {
        let d = epu.domain("d");
        d["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["protected"] == true)
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        wait_for(Duration::from_secs(10), || protected().len() == 1),
        "the worker never protected itself"
    );
    let keep = protected()[0].clone();
    scale_in(&epu);
    assert!(
        wait_for(Duration::from_secs(20), || epu.instances("d").len() == 1),
        "{:?}",
        epu.instances("d")
    );
    assert_eq!(epu.instances("d")[0].id, keep);
    let by = events(&epu, "protected");
    assert_eq!(by[0]["detail"]["by"], "worker", "{by:?}");
}

#[test]
fn a_worker_that_protects_itself_by_heartbeat_is_never_destroyed_by_npreserving() {
    self_protected_worker_stays("npreserving", &["preserve_n=4"], |epu| {
        epu.ok(&["reconfigure", "d", "preserve_n=0"]);
    });
}

#[test]
fn a_worker_that_protects_itself_by_heartbeat_is_never_destroyed_by_queuelen() {
    let config = [
        "queuelen_high_water=5",
        "queuelen_low_water=1",
        "min_instances=4",
        "scale_step=4",
    ];
    self_protected_worker_stays("queuelen", &config, |epu| {
        epu.ok(&["reconfigure", "d", "min_instances=0"]);
        // Each new reading of an empty queue is a step down of up to 4.
        for _ in 0..3 {
            epu.ok(&["sensor", "push", "d", "queue-length", "0"]);
            std::thread::sleep(Duration::from_millis(300));
        }
    });
}

#[test]
fn max_destroys_spreads_a_scale_to_zero_over_windows() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(
        &epu,
        6,
        &[
            "--grace",
            "0",
            "--max-destroys",
            "2",
            "--budget-window",
            "3",
        ],
    );
    epu.ok(&["reconfigure", "d", "preserve_n=0"]);
    assert!(
        wait_for(Duration::from_secs(30), || epu.instances("d").is_empty()),
        "all 6 should go in the end"
    );
    // Read the log: no more than 2 destroys in any 3 s window. (A decision is logged a few ms
    // after the budget counts it, so the window read from the log is 0.1 s shorter.)
    let mut times: Vec<f64> = events(&epu, "decision")
        .iter()
        .flat_map(|e| {
            let n = e["detail"]["destroy"].as_array().map_or(0, Vec::len);
            std::iter::repeat_n(e["time"].as_f64().unwrap(), n)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    assert_eq!(times.len(), 6, "{times:?}");
    for (i, t) in times.iter().enumerate() {
        let within = times[i..].iter().filter(|u| **u < t + 2.9).count();
        assert!(
            within <= 2,
            "{within} destroys within 3 s from {t}: {times:?}"
        );
    }
    assert!(!events(&epu, "destroy-held").is_empty());
}

#[test]
fn min_healthy_percent_holds_a_floor_against_an_engine_that_destroys_everything() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(
        &epu,
        6,
        &[
            "--grace",
            "0",
            "--min-healthy-percent",
            "50",
            "--budget-window",
            "60",
        ],
    );
    let faulty = PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join("faulty.wasm");
    epu.ok(&[
        "engine",
        "swap",
        "d",
        faulty.to_str().unwrap(),
        "-c",
        "mode=destroy-all",
    ]);
    // Watch until the floor is reached and for 3 s more (many decides at 200 ms).
    let mut fewest = 6;
    let mut floor_since = None;
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < end
        && floor_since.is_none_or(|t: std::time::Instant| t.elapsed() < Duration::from_secs(3))
    {
        fewest = fewest.min(live(&epu).len());
        if fewest <= 3 && floor_since.is_none() {
            floor_since = Some(std::time::Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(fewest, 3, "the floor is 50 % of 6");
    let held = events(&epu, "destroy-held");
    assert!(
        held.iter().all(|e| e["detail"]["reason"] == "min-healthy") && held.len() == 3,
        "{held:?}"
    );
}

#[test]
fn a_plan_s_budget_is_checked_by_key_and_shows_in_the_status() {
    let epu = Epu::new();
    let dir = epu.dir.path().join("plan");
    std::fs::create_dir_all(&dir).unwrap();
    let plan = |budget: &str| {
        let text = format!(
            "name = \"p\"\n[[domain]]\nname = \"d\"\nengine = \"npreserving\"\n\
             config = {{ preserve_n = 1 }}\nbudget = {budget}\n\
             [domain.process]\ncommand = [\"/bin/sleep\", \"1000\"]\n"
        );
        std::fs::write(dir.join("plan.toml"), text).unwrap();
    };
    plan("{ max_destroys = 2, min_healthy_percent = 101 }");
    let err = epu.fails(&["boot", "--validate", dir.to_str().unwrap()]);
    assert!(err.contains("budget.min_healthy_percent"), "{err}");
    plan("{ max_destroys = 2, window_seconds = 30 }");
    let _d = epu.daemon();
    epu.ok(&["boot", dir.to_str().unwrap()]);
    let budget = &epu.domain("d")["budget"];
    assert_eq!(budget["max_destroys"], 2, "{budget}");
    assert_eq!(budget["window_seconds"], 30.0, "{budget}");
    epu.ok(&["terminate"]);
}

#[test]
fn an_engine_that_always_names_a_protected_instance_never_gets_it() {
    let epu = Epu::new();
    let _d = epu.daemon();
    add(&epu, 3, &["--grace", "0"]);
    let keep = live(&epu)[0].clone();
    epu.ok(&["instance", "protect", "d", &keep.id]);
    let faulty = PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join("faulty.wasm");
    let swap = ["engine", "swap", "d", faulty.to_str().unwrap()];
    epu.ok(&[&swap[..], &["-c", "mode=destroy-all"]].concat());
    assert!(
        wait_for(Duration::from_secs(20), || epu.instances("d").len() == 1),
        "{:?}",
        epu.instances("d")
    );
    // Many decides later (every 200 ms), it is still there.
    std::thread::sleep(Duration::from_secs(2));
    let left = epu.instances("d");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, keep.id);
    assert!(is_alive(keep.pid.unwrap()));
}
