//! Heartbeats across a failover: a worker whose node died sends its heartbeats to another
//! node on its host, which passes them on to the domain's new owner, so the adopted worker
//! stays healthy instead of being replaced as missing.

use crate::kit::cluster::Cluster;
use crate::kit::wait_for;
use serde_json::Value;
use std::time::Duration;

const TTL: u64 = 3;

/// Domain "hb"'s instances through any node, as (id, pid, state, health).
fn instances(c: &Cluster) -> Vec<(String, i64, String, String)> {
    let status = c.status();
    let Some(d) = status["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "hb")
    else {
        return vec![];
    };
    let s = |i: &Value, k: &str| i[k].as_str().unwrap_or("").to_string();
    let mut list: Vec<_> = d["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                s(i, "id"),
                i["pid"].as_i64().unwrap_or(0),
                s(i, "state"),
                s(i, "health"),
            )
        })
        .collect();
    list.sort();
    list
}

fn all_healthy(list: &[(String, i64, String, String)]) -> bool {
    list.len() == 2 && list.iter().all(|(_, _, s, h)| s == "running" && h == "ok")
}

#[test]
fn an_adopted_worker_s_heartbeats_reach_its_new_owner_through_another_node() {
    let mut c = Cluster::start(3, TTL);
    // Owned by n1 or n2, then (that one dead) by the other: the worker's first fallback
    // socket is n0's, which must pass its heartbeats on to the new owner.
    let beat = r#"while :; do "$EPU_BIN" heartbeat >/dev/null 2>&1; sleep 0.2; done"#;
    c.nodes[0]
        .epu
        .add_domain("hb")
        .config("preserve_n=2")
        .flag("--pulse-ms", "200")
        .options(&["--node", "n1", "--node", "n2"])
        .options(&["--boot-timeout", "2", "--missing-timeout", "2"])
        .command(&["sh", "-c", beat])
        .ok();
    let mut before = vec![];
    let up = wait_for(Duration::from_secs(60), || {
        before = instances(&c);
        all_healthy(&before) && c.owners().contains_key("hb")
    });
    assert!(up, "the workers never ran healthy: {before:?}");
    let first = c.owners()["hb"].clone();
    let (dead, heir) = if first == "n1" { (1, "n2") } else { (2, "n1") };

    c.nodes[dead].kill9();
    let moved = wait_for(Duration::from_secs(TTL + 10), || {
        c.owners().get("hb").map(String::as_str) == Some(heir)
    });
    assert!(moved, "{heir} did not take the domain: {:?}", c.owners());
    // Three times the timeouts: a worker whose heartbeats were lost would be missing and
    // replaced by now.
    std::thread::sleep(Duration::from_secs(6));
    let after = instances(&c);
    assert_eq!(before, after, "the adopted workers were not kept healthy");
    let heir = c.nodes.iter().find(|n| n.name == heir).unwrap();
    let events = heir.epu.ok(&["events", "--json"]);
    assert!(
        !events.contains("\"missing\""),
        "an adopted worker was marked missing:\n{events}"
    );
}
