//! A cluster of 3 daemons on a 3-member etcd of its own (cargo feature `cluster`):
//! - failover: from the `kill -9` of the node that owns the most domains to the first decide
//!   of one of its domains by its new owner, over EPU_BENCH_FAILOVERS kills (default 20);
//!   the node is started again after each;
//! - reaction in cluster mode: from the `kill -9` of a worker to the launch of its
//!   replacement (`launch-recorded` in the owner's log), over EPU_BENCH_KILLS (default 30);
//! - decides per CPU-second of 3 nodes against one daemon on SQLite, in one run: the same
//!   EPU_BENCH_BUSY_DOMAINS (default 60) domains of 10 `sleep` workers on a 10 ms pulse,
//!   measured for EPU_BENCH_WINDOW_S (default 5) once settled, with etcd's writes counted
//!   (its revision) over the window: a decide that changes nothing writes nothing.
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
use kit::{signal, unix_now as now, wait_for, Epu, Signal};
use support::{cpu_seconds, env_count, Report};

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

/// Decides made so far by the domains `epu`'s daemon runs (those `node` owns, in a cluster),
/// and how many live instances they have.
fn own_decides(epu: &Epu, node: Option<&str>) -> (u64, usize) {
    let v: Value = serde_json::from_str(&epu.ok(&["status", "--json"])).unwrap();
    let mine: Vec<&Value> = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| node.is_none_or(|n| d["owner"] == n))
        .collect();
    let decides = mine
        .iter()
        .map(|d| d["controller"]["decides"].as_u64().unwrap_or(0))
        .sum();
    let live = mine
        .iter()
        .map(|d| d["instances"].as_array().map_or(0, Vec::len))
        .sum();
    (decides, live)
}

/// Adds `n` busy domains (10 workers, a 10 ms pulse) through `epu`.
fn add_busy(epu: &Epu, n: usize) {
    for i in 0..n {
        epu.add_domain(&format!("t{i:03}"))
            .config("preserve_n=10")
            .flag("--pulse-ms", "10")
            .flag("--boot-timeout", "1000000")
            .ok();
    }
}

/// Decides per CPU-second: one daemon on SQLite, then 3 nodes, with `n` busy domains each.
fn throughput(report: &mut Report, ttl: u64, n: usize, window: Duration) {
    let epu = Epu::new();
    let daemon = epu.daemon();
    add_busy(&epu, n);
    let settled = wait_for(Duration::from_secs(120), || {
        own_decides(&epu, None).1 == n * 10
    });
    assert!(settled, "one daemon: the pools did not settle");
    std::thread::sleep(Duration::from_secs(1));
    let pid = daemon.child.id();
    let (d0, c0) = (own_decides(&epu, None).0, cpu_seconds(pid));
    std::thread::sleep(window);
    let (d1, c1) = (own_decides(&epu, None).0, cpu_seconds(pid));
    epu.ok(&["terminate"]);
    drop(daemon);
    let single = (d1 - d0) as f64 / (c1 - c0).max(0.01);

    let c = Cluster::start(3, ttl);
    add_busy(&c.nodes[0].epu, n);
    let fair = |c: &Cluster| {
        let owners = c.owners();
        let per: Vec<usize> = c
            .nodes
            .iter()
            .map(|node| owners.values().filter(|o| **o == node.name).count())
            .collect();
        owners.len() == n && per.iter().all(|k| k * 3 + 3 >= n && *k * 3 <= n + 3)
    };
    let settled = wait_for(Duration::from_secs(180), || {
        fair(&c) && c.worker_processes().len() == n * 10
    });
    assert!(settled, "3 nodes: the pools did not settle");
    std::thread::sleep(Duration::from_secs(2));
    let sample = |c: &Cluster| {
        let decides: u64 = c
            .nodes
            .iter()
            .map(|node| own_decides(&node.epu, Some(&node.name)).0)
            .sum();
        let nodes: f64 = c.nodes.iter().map(|n| cpu_seconds(n.pid() as u32)).sum();
        let etcd: f64 = c.etcd.pids().into_iter().map(cpu_seconds).sum();
        (decides, nodes, etcd, c.etcd.revision())
    };
    let (d0, n0, e0, r0) = sample(&c);
    std::thread::sleep(window);
    let (d1, n1, e1, r1) = sample(&c);
    let decided = (d1 - d0) as f64;
    let cluster = decided / (n1 - n0).max(0.01);
    let with_etcd = decided / (n1 - n0 + e1 - e0).max(0.01);
    println!(
        "{n} domains of 10 on a 10 ms pulse: one daemon {single:.0} decides/CPU-s; 3 nodes \
         {decided} decides in {:.1} s, {:.2} CPU-s (etcd {:.2}), {} etcd writes",
        window.as_secs_f64(),
        n1 - n0,
        e1 - e0,
        r1 - r0
    );
    report.info("decides per CPU-second, one daemon on SQLite", single, "/s");
    report.info(
        "decides per CPU-second, 3 nodes (the daemons)",
        cluster,
        "/s",
    );
    report.info("decides per CPU-second, 3 nodes and etcd", with_etcd, "/s");
    report.info(
        "3 nodes ÷ one daemon, decides per CPU-second",
        cluster / single,
        "×",
    );
    report.at_most(
        "etcd writes per 1000 decides that change nothing",
        1000.0 * (r1 - r0) as f64 / decided.max(1.0),
        "",
        0.0,
    );
}

fn main() {
    let ttl = env_count("EPU_BENCH_CLUSTER_TTL", 3) as u64;
    let mut report = Report::new("cluster");
    let busy = env_count("EPU_BENCH_BUSY_DOMAINS", 60);
    let window = Duration::from_secs(env_count("EPU_BENCH_WINDOW_S", 5) as u64);
    throughput(&mut report, ttl, busy, window);
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
