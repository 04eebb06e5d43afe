//! A cluster of 3 daemons on a 3-member etcd of its own (cargo feature `cluster`):
//! - failover: from the `kill -9` of the node that owns the most domains to the first decide
//!   of one of its domains by its new owner, over EPU_BENCH_FAILOVERS kills (default 20);
//!   the node is started again after each;
//! - reaction in cluster mode: from the `kill -9` of a worker to the launch of its
//!   replacement (`launch-recorded` in the owner's log), over EPU_BENCH_KILLS (default 30).
//!
//! The lease TTL is EPU_BENCH_CLUSTER_TTL seconds (default 3); the targets are TTL + 1 s and
//! 50 ms. `cargo bench -p epu --features cluster --bench cluster`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[path = "../tests/kit/mod.rs"]
mod kit;
mod support;

use kit::cluster::{Cluster, Node};
use kit::{signal, unix_now as now, Signal};
use support::{env_count, Report};

/// The events of a node's own log, each as JSON.
fn events(node: &Node) -> Vec<Value> {
    if node.daemon.is_none() {
        return vec![];
    }
    node.epu
        .ok(&["events", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The earliest event of `kind` after `since` for one of `domains`, in any node's log.
fn first(c: &Cluster, kind: &str, domains: &[String], since: f64) -> Option<f64> {
    c.nodes
        .iter()
        .flat_map(events)
        .filter(|e| e["kind"] == kind && e["time"].as_f64().unwrap_or(0.0) > since)
        .filter(|e| domains.iter().any(|d| e["domain"] == d.as_str()))
        .filter_map(|e| e["time"].as_f64())
        .reduce(f64::min)
}

/// Waits for `f` to give a value, at most `within`.
fn wait_some<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < end, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let ttl = env_count("EPU_BENCH_CLUSTER_TTL", 3) as u64;
    let failovers = env_count("EPU_BENCH_FAILOVERS", 20);
    let kills = env_count("EPU_BENCH_KILLS", 30);
    let mut c = Cluster::start(3, ttl);
    let domains: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
    for d in &domains {
        c.nodes[0]
            .epu
            .add_domain(d)
            .config("preserve_n=2")
            .flag("--pulse-ms", "1000")
            .ok();
    }
    let settle = |c: &Cluster| c.wait_settled(&domains, 2, Duration::from_secs(90));
    let mut pids = settle(&c);

    let mut failover = Vec::new();
    for round in 0..failovers {
        let owners = c.owners();
        let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
        for o in owners.values() {
            *counts.entry(o).or_default() += 1;
        }
        let victim = counts
            .iter()
            .max_by_key(|(_, n)| **n)
            .unwrap()
            .0
            .to_string();
        let lost: Vec<String> = owners
            .iter()
            .filter(|(_, o)| **o == victim)
            .map(|(d, _)| d.clone())
            .collect();
        let i = c.nodes.iter().position(|n| n.name == victim).unwrap();
        let killed = now();
        c.nodes[i].kill9();
        let decided = wait_some(Duration::from_secs(ttl + 30), || {
            first(&c, "decision", &lost, killed)
        });
        failover.push(decided - killed);
        eprintln!(
            "failover {round}: {} domain(s) of {victim}, first decide after {:.2} s",
            lost.len(),
            decided - killed
        );
        c.restart(i);
        pids = settle(&c);
    }

    // A worker that dies within FAST_FAIL (2 s) of its launch counts toward a crash loop and
    // is replaced after a backoff: each kill takes a worker older than that.
    let mut reaction = Vec::new();
    let mut replaced: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for round in 0..kills {
        let d = &domains[round % domains.len()];
        let (when, newest) = replaced.get(d).copied().unwrap_or((0.0, 0));
        let wait = when + 2.5 - now();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        let before = pids[d].clone();
        let pid = *before.iter().find(|p| **p != newest).unwrap();
        let killed = now();
        signal(pid as i32, Signal::SIGKILL);
        let launched = wait_some(Duration::from_secs(30), || {
            first(&c, "launch-recorded", std::slice::from_ref(d), killed)
        });
        let noticed = first(&c, "state", std::slice::from_ref(d), killed).unwrap_or(launched);
        eprintln!(
            "kill {round}: exit recorded after {:.1} ms, replacement recorded after {:.1} ms",
            (noticed - killed) * 1e3,
            (launched - killed) * 1e3
        );
        reaction.push((launched - killed) * 1e3);
        pids = settle(&c);
        let new = pids[d].iter().find(|p| !before.contains(p)).copied();
        replaced.insert(d.clone(), (launched, new.unwrap_or(0)));
    }

    let mut report = Report::new("cluster");
    let target = ttl as f64 + 1.0;
    if !failover.is_empty() {
        report.info(
            "failover p50 (kill -9 owner → new owner's decide)",
            percentile(&mut failover, 0.5),
            "s",
        );
        report.at_most(
            "failover p99 (kill -9 owner → new owner's decide)",
            percentile(&mut failover, 0.99),
            "s",
            target,
        );
    }
    if !reaction.is_empty() {
        report.info(
            "cluster reaction p50 (kill -9 worker → launch)",
            percentile(&mut reaction, 0.5),
            "ms",
        );
        report.at_most(
            "cluster reaction p99 (kill -9 worker → launch)",
            percentile(&mut reaction, 0.99),
            "ms",
            50.0,
        );
    }
    report.finish();
}
