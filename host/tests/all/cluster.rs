//! A cluster of daemons on a real 3-member etcd: balance, failover, fencing, quorum loss,
//! and random kills. Every node runs on this host, so each may own any domain, and the
//! workers are real processes whose pids are checked.

use crate::kit::cluster::Cluster;
use crate::kit::{is_alive, signal, wait_for, Signal};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The nodes' lease TTL in these tests, in seconds.
const TTL: u64 = 3;

/// Adds `n` domains of 2 `sleep` workers through node 0; returns their names.
fn add_domains(c: &Cluster, n: usize) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("d{i:02}")).collect();
    for name in &names {
        c.nodes[0]
            .epu
            .add_domain(name)
            .config("preserve_n=2")
            .flag("--pulse-ms", "200")
            .ok();
    }
    names
}

/// How many domains each node owns.
fn counts(c: &Cluster) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    for owner in c.owners().values() {
        *out.entry(owner.clone()).or_default() += 1;
    }
    out
}

/// The events of a node's own log after `after` (seconds since the epoch).
fn events_since(node: &crate::kit::cluster::Node, after: f64) -> Vec<Value> {
    node.epu
        .ok(&["events", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["time"].as_f64().unwrap_or(0.0) > after)
        .collect()
}

/// Whether the cluster's record has an event of `domain` from `node` (of `kind`, if given).
fn record_has(c: &Cluster, domain: &str, node: &str, kind: Option<&str>) -> bool {
    c.any()
        .epu
        .ok(&["cluster", "events", domain, "--json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .any(|e| e["node"] == node && kind.is_none_or(|k| e["kind"] == k))
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn three_nodes_share_thirty_domains_fairly() {
    let c = Cluster::start(3, TTL);
    let domains = add_domains(&c, 30);
    c.wait_settled(&domains, 2, Duration::from_secs(90));
    let mut last = BTreeMap::new();
    let fair = wait_for(Duration::from_secs(30), || {
        last = counts(&c);
        last.len() == 3 && last.values().all(|n| (8..=12).contains(n))
    });
    assert!(fair, "each node should own 10 ± 2 domains: {last:?}");
    eprintln!("balance: {last:?}");
    // `status --json` through any node names each domain's owner.
    let status = c.nodes[2].epu.status();
    let owners = c.owners();
    for d in status["domains"].as_array().unwrap() {
        let name = d["name"].as_str().unwrap();
        assert_eq!(d["owner"].as_str(), owners.get(name).map(String::as_str));
    }
    // Each node's /metrics shows the domains it owns, and that it is live.
    for n in &c.nodes {
        let dir = n.epu.state_dir();
        let addr = std::fs::read_to_string(dir.join("listen.addr")).unwrap();
        let token = std::fs::read_to_string(dir.join("api-token")).unwrap();
        let (code, body) =
            crate::kit::http::request(addr.trim(), "GET", "/metrics", Some(token.trim()), "");
        assert_eq!(code, 200, "{body}");
        let live = format!("epu_cluster_node_live{{node=\"{}\"}} 1", n.name);
        assert!(body.contains(&live), "{}: no {live}", n.name);
        let owned = body
            .lines()
            .filter(|l| l.starts_with("epu_cluster_domain_owned{") && l.ends_with(" 1"))
            .count();
        let mine = owners.values().filter(|o| **o == n.name).count();
        assert_eq!(
            owned, mine,
            "{}: /metrics owns {owned}, the cluster says {mine}",
            n.name
        );
    }
}

#[test]
fn a_killed_node_s_domains_are_owned_again_within_the_ttl_with_their_workers_adopted() {
    let mut c = Cluster::start(3, TTL);
    let domains = add_domains(&c, 9);
    let before = c.wait_settled(&domains, 2, Duration::from_secs(60));
    let counts = counts(&c);
    let (victim, _) = counts.iter().max_by_key(|(_, n)| **n).unwrap();
    let victim = c.nodes.iter().position(|n| &n.name == victim).unwrap();
    let lost: Vec<String> = c
        .owners()
        .into_iter()
        .filter(|(_, o)| *o == c.nodes[victim].name)
        .map(|(d, _)| d)
        .collect();
    assert!(!lost.is_empty());

    // Events reach the record within a second of being made; those of a node's last second
    // may die with it. Wait until the victim's are there.
    let name = c.nodes[victim].name.clone();
    assert!(wait_for(Duration::from_secs(10), || record_has(
        &c, &lost[0], &name, None
    )));

    let killed = Instant::now();
    c.nodes[victim].kill9();
    let moved = wait_for(Duration::from_secs(TTL + 10), || {
        let owners = c.owners();
        lost.iter()
            .all(|d| owners.get(d).is_some_and(|o| *o != name))
    });
    let took = killed.elapsed();
    assert!(moved, "the domains of the killed node were not owned again");
    eprintln!(
        "failover: {} domains owned again {took:?} after the kill -9",
        lost.len()
    );
    assert!(
        took <= Duration::from_secs(TTL + 2),
        "failover took {took:?}, more than TTL + 2 s"
    );

    // Every worker was adopted: the same pids, nothing launched twice.
    let after = c.wait_settled(&domains, 2, Duration::from_secs(30));
    assert_eq!(before, after, "the workers changed across the failover");

    // The domain's history outlives the node that made it: the cluster's record, read
    // through a live node, has the dead node's events and the new owner's.
    let new_owner = c.owners()[&lost[0]].clone();
    assert!(
        record_has(&c, &lost[0], &name, None),
        "the dead node's events are gone"
    );
    assert!(
        wait_for(Duration::from_secs(10), || record_has(
            &c,
            &lost[0],
            &new_owner,
            Some("domain-taken")
        )),
        "the new owner's events never reached the record"
    );

    // The adopting owner keeps preserve_n: a killed worker is replaced once.
    let d = &lost[0];
    let pid = after[d][0];
    signal(pid as i32, Signal::SIGKILL);
    let replaced = c.wait_settled(&domains, 2, Duration::from_secs(30));
    assert!(!replaced[d].contains(&pid));
    assert!(replaced[d].contains(&after[d][1]));
}

#[test]
fn a_paused_node_acts_on_nothing_it_lost_when_it_wakes() {
    let c = Cluster::start(2, TTL);
    let domains = add_domains(&c, 6);
    let before = c.wait_settled(&domains, 2, Duration::from_secs(60));
    let owners = c.owners();
    let paused = &c.nodes[0];
    let mine: Vec<&String> = owners
        .iter()
        .filter(|(_, o)| **o == paused.name)
        .map(|(d, _)| d)
        .collect();
    assert!(!mine.is_empty(), "node 0 owns nothing: {owners:?}");

    signal(paused.pid(), Signal::SIGSTOP);
    // While it sleeps, one of its workers dies: the node that takes the domain replaces it;
    // the paused node, whose child it was, sees the exit only when it wakes.
    let victim = before[mine[0]][0];
    signal(victim as i32, Signal::SIGKILL);
    std::thread::sleep(Duration::from_secs(2 * TTL));
    let moved = wait_for(Duration::from_secs(10), || {
        let owners = c.nodes[1].cluster();
        let nodes = owners["nodes"].as_array().unwrap();
        nodes.len() == 1 && nodes[0]["domains"].as_array().unwrap().len() == domains.len()
    });
    assert!(moved, "the paused node's domains did not move");
    let during = {
        let mut last = BTreeMap::new();
        let ok = wait_for(Duration::from_secs(30), || {
            let all = c.nodes[1].epu.status();
            last = all["domains"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let pids: Vec<i64> = d["instances"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|i| i["pid"].as_i64())
                        .collect();
                    (d["name"].as_str().unwrap().to_string(), pids)
                })
                .collect::<BTreeMap<_, _>>();
            last.values()
                .all(|p| p.len() == 2 && p.iter().all(|&p| is_alive(p as i32)))
        });
        assert!(ok, "the live node did not restore every domain: {last:?}");
        last
    };
    assert!(!during[mine[0]].contains(&victim));

    let woke = now();
    signal(paused.pid(), Signal::SIGCONT);
    std::thread::sleep(Duration::from_secs(TTL + 2));
    // It launched, destroyed and stored nothing for the domains it lost.
    for e in events_since(paused, woke) {
        let kind = e["kind"].as_str().unwrap_or("");
        let lost = e["domain"]
            .as_str()
            .is_some_and(|d| mine.iter().any(|m| *m == d));
        let acted =
            kind == "launch-recorded" || (kind == "state" && e["detail"]["to"] == "terminating");
        assert!(
            !(lost && acted),
            "the woken node acted on a lost domain: {e}"
        );
    }
    // Whatever it owns now, the workers are the same: nothing was launched or destroyed.
    let after = c.wait_settled(&domains, 2, Duration::from_secs(30));
    assert_eq!(during, after, "workers changed after the paused node woke");
}

#[test]
fn losing_etcd_s_quorum_holds_every_node_and_decides_resume_once_it_returns() {
    let mut c = Cluster::start(2, TTL);
    let domains = add_domains(&c, 4);
    let before = c.wait_settled(&domains, 2, Duration::from_secs(60));
    let owners = c.owners();

    // One member of three: nothing changes.
    c.etcd.kill_member(0);
    std::thread::sleep(Duration::from_secs(2 * TTL));
    assert_eq!(
        c.owners(),
        owners,
        "losing one member of three moved domains"
    );
    assert_eq!(c.wait_settled(&domains, 2, Duration::from_secs(10)), before);

    // Two of three: no quorum. Every node holds; the workers run on.
    c.etcd.kill_member(1);
    std::thread::sleep(Duration::from_secs(2 * TTL));
    let d = &domains[0];
    let victim = before[d][0];
    signal(victim as i32, Signal::SIGKILL);
    std::thread::sleep(Duration::from_secs(TTL));
    let processes = c.worker_processes();
    assert_eq!(
        processes.len(),
        domains.len() * 2 - 1,
        "a node launched or destroyed without quorum: {processes:?}"
    );
    for (name, pids) in &before {
        for &p in pids {
            if p != victim {
                assert!(
                    is_alive(p as i32),
                    "worker {p} of {name} died without quorum"
                );
            }
        }
    }

    // Quorum returns: decides resume, the lost worker is replaced once, nothing else moves.
    c.etcd.start_member(0);
    c.etcd.start_member(1);
    let after = c.wait_settled(&domains, 2, Duration::from_secs(60));
    for (name, pids) in &before {
        let kept: Vec<&i64> = pids.iter().filter(|p| **p != victim).collect();
        assert!(
            kept.iter().all(|p| after[name].contains(p)),
            "{name}: {pids:?} → {:?}",
            after[name]
        );
    }
    assert!(!after[d].contains(&victim));
}

/// Rounds of random kills (`EPU_CLUSTER_TORTURE_ROUNDS`, 20 by default; 100 in
/// `./dev.sh torture-cluster`; the seed is printed): of a node (started again), of an etcd member (started again),
/// or of a worker. After each, the cluster settles with every domain owned, each worker of
/// the record a live process, and no other worker process anywhere.
#[test]
fn torture_random_kills_of_nodes_and_etcd_members_orphan_and_double_nothing() {
    let rounds: usize = std::env::var("EPU_CLUSTER_TORTURE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut c = Cluster::start(3, TTL);
    let domains = add_domains(&c, 6);
    let mut settled = c.wait_settled(&domains, 2, Duration::from_secs(60));
    let mut seed: u64 = std::env::var("EPU_CLUSTER_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now().to_bits() | 1);
    eprintln!("torture seed {seed} (EPU_CLUSTER_TORTURE_SEED repeats it)");
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for round in 0..rounds {
        let what = match next(3) {
            0 => {
                let i = next(c.nodes.len());
                c.nodes[i].kill9();
                std::thread::sleep(Duration::from_millis(next(2000) as u64));
                c.restart(i);
                format!("kill -9 node {i}")
            }
            1 => {
                let i = next(3);
                c.etcd.kill_member(i);
                std::thread::sleep(Duration::from_millis(next(2000) as u64));
                c.etcd.start_member(i);
                format!("kill -9 etcd member {i}")
            }
            _ => {
                let d = &domains[next(domains.len())];
                let pid = settled[d][next(2)];
                signal(pid as i32, Signal::SIGKILL);
                format!("kill -9 worker {pid} of {d}")
            }
        };
        eprintln!("round {round}: {what}");
        settled = c.wait_settled(&domains, 2, Duration::from_secs(60));
    }
}

#[test]
fn commands_through_any_node_reach_the_owner_and_a_removal_leaves_the_cluster() {
    let c = Cluster::start(2, TTL);
    let domains = add_domains(&c, 2);
    c.wait_settled(&domains, 2, Duration::from_secs(60));
    let owners = c.owners();
    let d = &domains[0];
    let other = c.nodes.iter().find(|n| n.name != owners[d]).unwrap();

    // A name the cluster has is taken, through any node.
    let taken = other.epu.add_domain(d).config("preserve_n=1").fails();
    assert!(taken.contains("already exists"), "{taken}");
    // A node does not terminate the cluster's domains.
    let refused = other.epu.fails(&["terminate"]);
    assert!(refused.contains("cluster"), "{refused}");

    // Commands for a domain another node owns are forwarded to it.
    other.epu.ok(&["reconfigure", d, "preserve_n=1"]);
    let ok = wait_for(Duration::from_secs(20), || {
        c.instances().get(d).is_some_and(|i| i.len() == 1)
    });
    assert!(ok, "the owner did not apply the forwarded reconfigure");
    let history = other.epu.ok(&["engine", "history", d, "--json"]);
    assert!(history.contains("npreserving"), "{history}");
    // A domain's log is its owner's, through any node.
    let log = other.epu.ok(&["events", d, "--json"]);
    assert!(
        log.contains("domain-taken") && log.contains("reconfigured"),
        "{log}"
    );

    other.epu.ok(&["domain", "remove", d]);
    let gone = wait_for(Duration::from_secs(20), || {
        !c.owners().contains_key(d) && !c.instances().contains_key(d)
    });
    assert!(gone, "the removed domain is still in the cluster");
    c.wait_settled(&domains[1..], 2, Duration::from_secs(30));
    let unknown = other.epu.fails(&["reconfigure", d, "preserve_n=1"]);
    assert!(unknown.contains("unknown domain"), "{unknown}");
}
