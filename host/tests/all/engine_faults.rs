//! A misbehaving engine becomes recorded events and skipped decides, never a crashed daemon.

use crate::kit;

use kit::{wait_for, Epu};
use std::time::Duration;

const FAULTY: &str = env!("EPU_TEST_ENGINE_FAULTY");

fn add_faulty(epu: &Epu, mode: &str) {
    add_faulty_with(epu, &["--pulse-ms", "100", "-c", &format!("mode={mode}")]);
}

/// Adds domain `f` of `sleep` workers with the faulty engine and `options`.
fn add_faulty_with(epu: &Epu, options: &[&str]) {
    epu.add_domain("f").engine(FAULTY).options(options).ok();
}

/// Events of `kind`; for `engine-fault` also matches the fault kind, as in `engine-fault/trap`.
fn events_of_kind(epu: &Epu, kind: &str) -> Vec<String> {
    let (kind, fault) = kind.split_once('/').unwrap_or((kind, ""));
    let needle = format!("\"kind\":\"{kind}\"");
    let fault = format!("\"kind\":\"{fault}\"");
    epu.ok(&["events", "--json", "--domain", "f"])
        .lines()
        .filter(|l| l.contains(&needle) && (fault.ends_with(":\"\"") || l.contains(&fault)))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_trapping_engine_is_recorded_and_replaced_by_a_fresh_instance() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    add_faulty(&epu, "trap");
    assert!(
        wait_for(Duration::from_secs(10), || events_of_kind(
            &epu,
            "engine-fault/trap"
        )
        .len()
            >= 3),
        "no repeated engine-trap events"
    );
    let trap = &events_of_kind(&epu, "engine-fault/trap")[0];
    assert!(trap.contains("unreachable"), "{trap}");
    let status = epu.status();
    let controller = &status["domains"][0]["controller"];
    assert!(
        controller["consecutive_faults"].as_u64().unwrap() >= 3,
        "{controller}"
    );
    assert!(
        epu.instances("f").is_empty(),
        "a failed decide must launch nothing"
    );

    // Three faults in a row quarantine the engine (the default fallback holds).
    assert_eq!(controller["quarantined"], true, "{controller}");
    assert_eq!(controller["last_fault_kind"], "trap");
    assert!(!events_of_kind(&epu, "quarantined").is_empty());

    // A good config, then resume: the next call runs on a fresh instance and decides again.
    epu.ok(&["reconfigure", "f", "mode=ok"]);
    epu.ok(&["engine", "resume", "f"]);
    assert!(wait_for(Duration::from_secs(10), || epu
        .instances("f")
        .len()
        == 1));
    assert!(
        !events_of_kind(&epu, "engine-log").is_empty(),
        "the engine's log lines are events"
    );
    let status = epu.status();
    assert_eq!(status["domains"][0]["controller"]["consecutive_faults"], 0);
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

#[test]
fn engine_errors_and_invalid_decisions_are_refused_without_effect() {
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    add_faulty(&epu, "error");
    assert!(wait_for(Duration::from_secs(10), || !events_of_kind(
        &epu,
        "engine-fault/error"
    )
    .is_empty()));
    // A config whose decision the daemon would refuse is refused by reconfigure's canary;
    // an engine that decides so from the start is refused at every decide.
    let err = epu.fails(&["reconfigure", "f", "mode=foreign"]);
    assert!(err.contains("canary"), "{err}");
    epu.ok(&["domain", "remove", "f"]);
    add_faulty(&epu, "foreign");
    assert!(wait_for(Duration::from_secs(10), || !events_of_kind(
        &epu,
        "engine-fault/invalid-decision"
    )
    .is_empty()));
    let invalid = &events_of_kind(&epu, "engine-fault/invalid-decision")[0];
    assert!(invalid.contains(&u64::MAX.to_string()), "{invalid}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        epu.instances("f").is_empty(),
        "a refused decision launches nothing"
    );
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}

/// Decisions from a fuzzed engine (`faulty` in `fuzz` mode: random launches up to u32::MAX,
/// live, repeated and foreign handles, memos and vars of any size, any next decide), under
/// several seeds. What the host accepts never takes the domain over its max_instances, what it
/// refuses is an `invalid-decision` fault with nothing carried out, and the daemon keeps
/// deciding (a quarantine is lifted to go on).
#[test]
fn decisions_from_a_fuzzed_engine_never_break_the_domain_bounds() {
    const MAX: usize = 4;
    let epu = Epu::new();
    let mut daemon = epu.start_daemon();
    let max = MAX.to_string();
    add_faulty_with(
        &epu,
        &[
            "--pulse-ms",
            "20",
            "--max-instances",
            &max,
            "--grace",
            "0.1",
        ],
    );
    // The fuzz mode behaves on each instance's first decide, so the canary passes it.
    epu.ok(&["reconfigure", "f", "mode=fuzz", "seed=1"]);
    // Refusals are counted in the status (their events are rate-limited).
    let decisions = |epu: &Epu| {
        let log = epu.ok(&["events", "--json", "--domain", "f"]);
        let accepted = log
            .lines()
            .filter(|l| l.contains("\"kind\":\"decision\""))
            .count();
        let status = epu.status();
        let refused = status["domains"][0]["controller"]["faults"]["invalid-decision"]
            .as_u64()
            .unwrap_or(0);
        (accepted, refused)
    };
    let mut most = 0;
    for seed in 1..=5 {
        epu.ok(&["reconfigure", "f", &format!("seed={seed}")]);
        let end = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < end {
            let staying = epu
                .instances("f")
                .iter()
                .filter(|i| i.state != "terminating")
                .count();
            most = most.max(staying);
            assert!(
                staying <= MAX,
                "{staying} instances, max {MAX} (seed {seed})"
            );
            if epu.ok(&["status", "f"]).contains("QUARANTINED") {
                epu.ok(&["engine", "resume", "f"]);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (accepted, refused) = decisions(&epu);
    eprintln!("fuzzed engine: {accepted} decisions carried out, {refused} refused, at most {most} instances");
    assert!(
        accepted > 20 && refused > 20,
        "{accepted} carried out, {refused} refused"
    );
    // Every refusal is a decision with nothing carried out: no launch record is without its
    // accepted decision.
    let log = epu.ok(&["events", "--json", "--domain", "f"]);
    let launched: usize = log
        .lines()
        .filter(|l| l.contains("\"kind\":\"decision\""))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["detail"]["launch"].as_array().map_or(0, Vec::len)
        })
        .sum();
    let records = log
        .lines()
        .filter(|l| l.contains("launch-recorded"))
        .count();
    assert_eq!(launched, records);
    epu.ok(&["terminate"]);
    daemon.wait().unwrap();
}
