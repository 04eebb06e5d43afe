//! Shadow engines: candidates deciding beside a live engine on real workers, compared and
//! never carried out; hostile shadows contained; a shadow through a restart and a promotion.

use crate::kit::{wait_for, Epu};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn faulty() -> String {
    let p = PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join("faulty.wasm");
    p.to_str().unwrap().to_string()
}

/// The report of the domain's shadow `id`.
fn report(epu: &Epu, domain: &str, id: i64) -> Value {
    let out = epu.ok(&["engine", "shadow-report", domain, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["shadows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no shadow {id}: {v}"))
}

/// Waits until `domain` has `n` instances with a pid; returns how many it has.
fn up(epu: &Epu, domain: &str, n: usize) -> usize {
    let mut have = 0;
    wait_for(Duration::from_secs(30), || {
        let all = epu.instances(domain);
        have = all.len();
        have == n && all.iter().all(|i| i.pid.is_some())
    });
    have
}

fn add_shadow(epu: &Epu, domain: &str, args: &[&str]) -> i64 {
    let mut all = vec!["engine", "shadow", domain];
    all.extend(args);
    all.push("--json");
    let v: Value = serde_json::from_str(&epu.ok(&all)).unwrap();
    v["shadow"].as_i64().unwrap()
}

#[test]
fn a_shadow_that_keeps_another_count_is_reported_and_never_carried_out() {
    let epu = Epu::new();
    let _d = epu.daemon();
    epu.add_sleepers("d", 2);
    assert_eq!(up(&epu, "d", 2), 2);
    let id = add_shadow(&epu, "d", &["npreserving", "-c", "preserve_n=4"]);
    // The shadow would keep 4 where the live engine keeps 2: it differs, with more.
    let mut r = Value::Null;
    assert!(
        wait_for(Duration::from_secs(20), || {
            r = report(&epu, "d", id);
            r["stats"]["more"].as_u64() >= Some(3)
        }),
        "{r}"
    );
    assert_eq!(r["stats"]["fewer"], 0, "{r}");
    assert_eq!(r["running"], true);
    let last = r["points"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last[1].as_u64(), last[2].as_u64()),
        (Some(2), Some(4)),
        "{r}"
    );
    // Its decisions are never carried out.
    assert_eq!(epu.instances("d").len(), 2);
    // Reconfigured to the shadow's count, the live engine agrees with it from then on.
    epu.ok(&["reconfigure", "d", "preserve_n=4"]);
    assert!(
        wait_for(Duration::from_secs(20), || {
            r = report(&epu, "d", id);
            let last = r["points"].as_array().unwrap().last().unwrap().clone();
            last[1] == 4 && last[2] == 4
        }),
        "{r}"
    );
    let differed = r["stats"]["differed"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let later = report(&epu, "d", id);
    assert!(later["stats"]["decides"].as_u64() > r["stats"]["decides"].as_u64());
    assert_eq!(
        later["stats"]["differed"].as_u64(),
        Some(differed),
        "{later}"
    );
    assert!(later["cost_ratio"].as_f64().is_some(), "{later}");
    let text = epu.ok(&["engine", "shadow-report", "d"]);
    assert!(
        text.contains("more instances") && text.contains("cost per decide"),
        "{text}"
    );
}

#[test]
fn shadows_that_trap_or_spin_leave_the_live_domain_deciding() {
    let epu = Epu::new();
    let _d = epu.daemon();
    epu.add_sleepers("d", 1);
    let spin = add_shadow(&epu, "d", &[&faulty(), "-c", "mode=spin"]);
    let trap = add_shadow(&epu, "d", &[&faulty(), "-c", "mode=trap"]);
    let before = epu.domain("d")["controller"]["decides"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let d = epu.domain("d");
    // A 100 ms pulse: about 30 decides in 3 s. The live engine decided on, unharmed.
    let decides = d["controller"]["decides"].as_u64().unwrap() - before;
    assert!(decides >= 15, "{decides} decides in 3 s: {d}");
    assert_eq!(d["controller"]["quarantined"], false);
    assert_eq!(d["controller"]["faults_in_window"], 0, "{d}");
    assert_eq!(epu.instances("d").len(), 1);
    assert!(wait_for(Duration::from_secs(10), || {
        let (s, t) = (report(&epu, "d", spin), report(&epu, "d", trap));
        s["stats"]["faults"].as_u64() > Some(0) && t["stats"]["faults"].as_u64() > Some(0)
    }));
    let t = report(&epu, "d", trap);
    assert!(
        t["stats"]["last_fault"].as_str().unwrap().contains("trap"),
        "{t}"
    );
    // A bad config is refused with the key named; a fifth shadow is refused.
    let err = epu.fails(&["engine", "shadow", "d", "npreserving", "-c", "preserv_n=3"]);
    assert!(err.contains("preserv_n"), "{err}");
    add_shadow(&epu, "d", &["npreserving"]);
    add_shadow(&epu, "d", &["npreserving"]);
    let err = epu.fails(&["engine", "shadow", "d", "npreserving"]);
    assert!(err.contains("the most a domain may"), "{err}");
    epu.ok(&["engine", "shadow", "d", "--stop"]);
    let err = epu.fails(&["engine", "shadow", "d", "--stop"]);
    assert!(err.contains("runs no shadow"), "{err}");
}

#[test]
fn a_shadow_survives_a_restart_and_is_promoted_through_the_swap() {
    let epu = Epu::new();
    let d = epu.daemon();
    epu.add_sleepers("d", 2);
    let id = add_shadow(&epu, "d", &["npreserving", "-c", "preserve_n=3"]);
    assert!(wait_for(Duration::from_secs(20), || {
        report(&epu, "d", id)["stats"]["decides"].as_u64() >= Some(3)
    }));
    d.stop();
    let _d = epu.daemon();
    let before = report(&epu, "d", id)["stats"]["decides"].as_u64().unwrap();
    assert!(wait_for(Duration::from_secs(20), || {
        let r = report(&epu, "d", id);
        r["running"] == true && r["stats"]["decides"].as_u64() > Some(before + 2)
    }));
    let v: Value = serde_json::from_str(&epu.ok(&["engine", "promote", "d", "--json"])).unwrap();
    assert_eq!(v["engine_version"], 2, "{v}");
    let dom = epu.domain("d");
    assert_eq!(dom["config"]["preserve_n"], 3, "{dom}");
    assert_eq!(report(&epu, "d", id)["running"], false);
    assert_eq!(up(&epu, "d", 3), 3);
}
