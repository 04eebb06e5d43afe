//! Placement in a cluster: a domain that names nodes or labels is owned only by a node that
//! matches, stays unowned (its workers running) while none is live, and a daemon outside a
//! cluster refuses a placement.

use crate::kit::cluster::Cluster;
use crate::kit::{is_alive, wait_for, Epu};
use std::time::Duration;

const TTL: u64 = 3;

#[test]
fn a_domain_is_owned_only_by_the_nodes_its_placement_admits() {
    let mut c = Cluster::start_labelled(
        &[vec!["zone=a"], vec!["zone=b"], vec!["zone=b", "gpu=yes"]],
        TTL,
    );
    let add = |name: &str, placement: &[&str]| {
        c.nodes[0]
            .epu
            .add_domain(name)
            .config("preserve_n=2")
            .flag("--pulse-ms", "200")
            .options(placement)
            .ok();
    };
    add("pinned", &["--node", "n2"]);
    add("zoned", &["--label", "zone=b"]);
    add("gpu", &["--label", "zone=b", "--label", "gpu=yes"]);
    add("anywhere", &[]);
    let names: Vec<String> = ["pinned", "zoned", "gpu", "anywhere"]
        .map(String::from)
        .to_vec();
    let pids = c.wait_settled(&names, 2, Duration::from_secs(60));

    // Owners match the placements, and every view shows the placement and the labels.
    let owners = c.owners();
    assert_eq!(owners["pinned"], "n2", "{owners:?}");
    assert_eq!(owners["gpu"], "n2", "{owners:?}");
    assert_ne!(owners["zoned"], "n0", "{owners:?}");
    let status = c.nodes[1].epu.status();
    let pinned = status["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "pinned")
        .unwrap();
    assert_eq!(pinned["placement"]["nodes"][0], "n2", "{pinned}");
    let cluster = c.nodes[0].cluster();
    let n2 = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "n2")
        .unwrap();
    assert_eq!(n2["labels"]["gpu"], "yes", "{cluster}");

    // A process domain no live node may own is refused, naming the placement.
    let refused = c.nodes[0]
        .epu
        .add_domain("nowhere")
        .config("preserve_n=1")
        .options(&["--label", "zone=c"])
        .fails();
    assert!(refused.contains("no live node matches"), "{refused}");
    let bad = c.nodes[0]
        .epu
        .add_domain("bad")
        .config("preserve_n=1")
        .options(&["--label", "zone"])
        .fails();
    assert!(bad.contains("'zone' is not KEY=VALUE"), "{bad}");

    // With n2 dead, its pinned domains stay unowned and their workers run on; the zoned one
    // moves to n1 only.
    c.nodes[2].kill9();
    let moved = wait_for(Duration::from_secs(TTL + 10), || {
        let o = c.owners();
        o.get("zoned").map(String::as_str) == Some("n1")
            && !o.contains_key("pinned")
            && !o.contains_key("gpu")
            && o.contains_key("anywhere")
    });
    assert!(moved, "after n2 died: {:?}", c.owners());
    // A few balance rounds later, still nobody else has taken them.
    std::thread::sleep(Duration::from_secs(TTL));
    let o = c.owners();
    assert!(!o.contains_key("pinned") && !o.contains_key("gpu"), "{o:?}");
    for d in ["pinned", "gpu"] {
        for pid in &pids[d] {
            assert!(
                is_alive(*pid as i32),
                "{d}'s worker {pid} died with no owner"
            );
        }
    }

    // n2 back: it takes them on again and adopts the same workers.
    c.restart(2);
    let again = c.wait_settled(&names, 2, Duration::from_secs(60));
    assert_eq!(c.owners()["pinned"], "n2");
    for d in ["pinned", "gpu"] {
        assert_eq!(again[d].len(), 2);
        for pid in &again[d] {
            assert!(
                pids[d].contains(pid),
                "{d}: {pid} is new; the old were {:?}",
                pids[d]
            );
        }
    }
}

#[test]
fn a_daemon_outside_a_cluster_refuses_a_placement() {
    let epu = Epu::new();
    let _d = epu.daemon();
    let refused = epu
        .add_domain("placed")
        .config("preserve_n=1")
        .options(&["--node", "n1"])
        .fails();
    assert!(
        refused.contains("only to a daemon in a cluster"),
        "{refused}"
    );
    assert!(epu.status()["domains"].as_array().unwrap().is_empty());
}
