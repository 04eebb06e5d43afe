//! `epu explain`: a domain's last decides in words, from a real daemon deciding on real
//! workers: what the engine saw and answered, what the daemon did, held back, or refused.

use crate::kit::{wait_for, Epu};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn explained(epu: &Epu, domain: &str) -> Vec<Value> {
    let out = epu.ok(&["explain", domain, "--last", "20", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["domain"], domain, "{v}");
    v["decides"].as_array().unwrap().clone()
}

#[test]
fn explain_says_what_the_engine_saw_and_answered_and_what_was_held_back() {
    let epu = Epu::new();
    let _d = epu.daemon();
    epu.add_domain("d")
        .config("preserve_n=2")
        .options(&["--pulse-ms", "100", "--max-launches", "1"])
        .options(&["--budget-window", "3600"])
        .ok();
    // The engine asks for 2; the budget lets 1 through and holds the other back.
    let mut decides = Vec::new();
    let held = wait_for(Duration::from_secs(20), || {
        decides = explained(&epu, "d");
        decides.iter().any(|d| d["done"]["held"]["launches"] == 1)
    });
    assert!(held, "{decides:#?}");
    let first = &decides[0];
    assert_eq!(first["by"], "engine");
    assert_eq!(first["answer"]["launch"], 2, "{first}");
    assert_eq!(first["done"]["launched"], 1, "{first}");
    assert_eq!(first["seen"]["instances"], serde_json::json!({}), "{first}");
    // Alike decides in a row are counted on one.
    let repeated = wait_for(Duration::from_secs(20), || {
        explained(&epu, "d").last().unwrap()["repeats"]
            .as_u64()
            .unwrap()
            > 3
    });
    assert!(repeated);
    let text = epu.ok(&["explain", "d"]);
    for words in [
        "by the engine",
        "answered  launch 1, status",
        "HELD      1 launch: the budget's max_launches is spent for the window",
        "decides alike over the last",
        "saw       1 instance",
    ] {
        assert!(text.contains(words), "expected '{words}' in:\n{text}");
    }
    let err = epu.fails(&["explain", "nope"]);
    assert!(err.contains("unknown domain 'nope'"), "{err}");
}

#[test]
fn explain_shows_a_fault_and_a_refused_decision_as_nothing_carried_out() {
    let epu = Epu::new();
    let _d = epu.daemon();
    let faulty = PathBuf::from(env!("EPU_TEST_ENGINES_DIR")).join("faulty.wasm");
    epu.add_domain("t")
        .engine(&faulty)
        .config("mode=trap")
        .options(&["--pulse-ms", "100", "--quarantine-after", "100"])
        .ok();
    let mut decides = Vec::new();
    let trapped = wait_for(Duration::from_secs(20), || {
        decides = explained(&epu, "t");
        !decides.is_empty()
    });
    assert!(trapped);
    let d = &decides[0];
    assert!(d["fault"].as_str().unwrap().starts_with("trap: "), "{d}");
    assert!(d.get("done").is_none() && d.get("answer").is_none(), "{d}");
    let text = epu.ok(&["explain", "t", "--last", "1"]);
    assert!(
        text.contains("FAULT     trap: ") && text.contains("nothing was carried out"),
        "{text}"
    );

    // A decision over max_instances is refused: the answer is shown, and nothing was done.
    epu.add_domain("big")
        .engine(&faulty)
        .config("mode=billion")
        .options(&["--pulse-ms", "100", "--max-instances", "5"])
        .options(&["--quarantine-after", "100"])
        .ok();
    let refused = wait_for(Duration::from_secs(20), || {
        explained(&epu, "big").iter().any(|d| {
            d["fault"]
                .as_str()
                .is_some_and(|f| f.starts_with("invalid-decision"))
                && d["answer"]["launch"].as_u64() > Some(5)
        })
    });
    assert!(refused, "{:#?}", explained(&epu, "big"));
}
