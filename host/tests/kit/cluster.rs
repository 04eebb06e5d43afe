//! Clusters for tests and benches: a 3-member etcd of its own on loopback (members can be
//! killed and started again), and `epu daemon --cluster` nodes on it, each with a state dir.

use super::{wait_for, workers_by_instance, DaemonGuard, Epu};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Domain → its live instances as (id, pid, state).
pub type Instances = BTreeMap<String, Vec<(String, Option<i64>, String)>>;

/// A free loopback port (bound, then let go).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An etcd cluster of its own, on loopback.
pub struct Etcd {
    dir: tempfile::TempDir,
    /// (client port, peer port) of each member.
    ports: Vec<(u16, u16)>,
    members: Vec<Option<Child>>,
}

impl Etcd {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> Etcd {
        let ports = (0..n).map(|_| (free_port(), free_port())).collect();
        let mut etcd = Etcd {
            dir: tempfile::Builder::new()
                .prefix("epu-etcd")
                .tempdir()
                .unwrap(),
            ports,
            members: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            etcd.start_member(i);
        }
        assert!(
            wait_for(Duration::from_secs(30), || etcd.healthy()),
            "etcd did not come up"
        );
        etcd
    }

    /// Starts member `i` (again, on its data dir).
    pub fn start_member(&mut self, i: usize) {
        let peers: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .map(|(j, (_, p))| format!("m{j}=http://127.0.0.1:{p}"))
            .collect();
        let (client, peer) = self.ports[i];
        let log = std::fs::File::create(self.dir.path().join(format!("m{i}.log"))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("m{i}")))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &peers.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "epu-test"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (apt-get install etcd-server)");
        self.members[i] = Some(child);
    }

    /// `kill -9`s member `i`.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The pids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().flatten().map(Child::id).collect()
    }

    /// The store's revision: it counts every write the cluster took.
    pub fn revision(&self) -> i64 {
        let out = Command::new("etcdctl")
            .args(["--endpoints", &self.endpoints(), "--command-timeout=5s"])
            .args(["get", "revision-probe", "--write-out=json"])
            .output()
            .expect("etcdctl");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl's JSON");
        v["header"]["revision"].as_i64().expect("a revision")
    }

    /// Whether member `i` runs.
    pub fn member_up(&self, i: usize) -> bool {
        self.members[i].is_some()
    }

    /// The client URLs of every member, comma-separated.
    pub fn endpoints(&self) -> String {
        let urls: Vec<String> = self
            .ports
            .iter()
            .map(|(c, _)| format!("http://127.0.0.1:{c}"))
            .collect();
        urls.join(",")
    }

    /// Whether the cluster has a leader that serves a linearizable read.
    pub fn healthy(&self) -> bool {
        Command::new("etcdctl")
            .args(["--endpoints", &self.endpoints(), "--command-timeout=2s"])
            .args(["get", "health-probe"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }
}

/// One node of a cluster: a daemon with its own state dir.
pub struct Node {
    pub name: String,
    /// The node's `--label KEY=VALUE`s.
    pub labels: Vec<String>,
    pub epu: Epu,
    pub daemon: Option<DaemonGuard>,
}

impl Node {
    /// Starts (or starts again) the node's daemon and waits until it answers.
    pub fn start(&mut self, endpoints: &str, ttl: u64) {
        let ttl = ttl.to_string();
        let mut args = vec![
            "daemon",
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            endpoints,
            "--node",
            &self.name,
            "--cluster-ttl",
            &ttl,
        ];
        for l in &self.labels {
            args.extend(["--label", l.as_str()]);
        }
        let child = self.epu.spawn_with(&args);
        self.daemon = Some(DaemonGuard {
            child,
            state_dir: self.epu.state_dir(),
        });
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.daemon.as_ref().expect("a running node").child.id() as i32
    }

    /// `kill -9`s the node's daemon (its workers live on).
    pub fn kill9(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.kill9();
        }
    }

    /// `epu cluster status --json` through this node.
    pub fn cluster(&self) -> Value {
        serde_json::from_str(&self.epu.ok(&["cluster", "status", "--json"])).unwrap()
    }

    /// `epu ARGS --json` through this node, or `None` if it fails (no etcd, say).
    pub fn try_json(&self, args: &[&str]) -> Option<Value> {
        let out = self.epu.run(args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }
}

/// A cluster of nodes on one etcd.
pub struct Cluster {
    pub etcd: Etcd,
    pub nodes: Vec<Node>,
    pub ttl: u64,
}

impl Cluster {
    /// Starts a 3-member etcd and `n` nodes with a lease TTL of `ttl` seconds.
    pub fn start(n: usize, ttl: u64) -> Cluster {
        Cluster::start_labelled(&vec![vec![]; n], ttl)
    }

    /// Starts a 3-member etcd and a node per entry of `labels`, with those labels.
    pub fn start_labelled(labels: &[Vec<&str>], ttl: u64) -> Cluster {
        let etcd = Etcd::start(3);
        let mut nodes: Vec<Node> = labels
            .iter()
            .enumerate()
            .map(|(i, labels)| Node {
                name: format!("n{i}"),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                epu: Epu::new(),
                daemon: None,
            })
            .collect();
        for node in &mut nodes {
            node.start(&etcd.endpoints(), ttl);
        }
        Cluster { etcd, nodes, ttl }
    }

    /// Starts node `i` again.
    pub fn restart(&mut self, i: usize) {
        let endpoints = self.etcd.endpoints();
        self.nodes[i].start(&endpoints, self.ttl);
    }

    /// A running node, to ask.
    pub fn any(&self) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.daemon.is_some())
            .expect("a running node")
    }

    /// Domain → owner, as the cluster has it (unowned domains are absent).
    pub fn owners(&self) -> BTreeMap<String, String> {
        self.try_owners().expect("cluster status")
    }

    fn try_owners(&self) -> Option<BTreeMap<String, String>> {
        let v = self.any().try_json(&["cluster", "status", "--json"])?;
        let mut out = BTreeMap::new();
        for n in v["nodes"].as_array().unwrap() {
            for d in n["domains"].as_array().unwrap() {
                out.insert(
                    d.as_str().unwrap().into(),
                    n["name"].as_str().unwrap().into(),
                );
            }
        }
        Some(out)
    }

    /// `epu status --json` through any node: every domain of the cluster.
    pub fn status(&self) -> Value {
        self.any().epu.status()
    }

    /// Domain → its live instances as (id, pid, state), through any node.
    pub fn instances(&self) -> Instances {
        self.try_instances().expect("status")
    }

    fn try_instances(&self) -> Option<Instances> {
        let status = self.any().try_json(&["status", "--json"])?;
        let list = status["domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let list = d["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        (
                            i["id"].as_str().unwrap().to_string(),
                            i["pid"].as_i64(),
                            i["state"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                (d["name"].as_str().unwrap().to_string(), list)
            })
            .collect();
        Some(list)
    }

    /// Every live worker process of every node's state dir: instance id → pids.
    pub fn worker_processes(&self) -> HashMap<String, Vec<i32>> {
        let mut out: HashMap<String, Vec<i32>> = HashMap::new();
        for n in &self.nodes {
            for (id, pids) in workers_by_instance(&n.epu.state_dir()) {
                out.entry(id).or_default().extend(pids);
            }
        }
        out
    }

    /// Waits until every one of `domains` is owned and runs `n` started workers, each a
    /// live process, with no other worker process anywhere. Returns domain → pids.
    pub fn wait_settled(
        &self,
        domains: &[String],
        n: usize,
        within: Duration,
    ) -> BTreeMap<String, Vec<i64>> {
        let mut last = String::new();
        let mut out = BTreeMap::new();
        let ok = wait_for(within, || {
            let (Some(owners), Some(all)) = (self.try_owners(), self.try_instances()) else {
                last = "the cluster does not answer".into();
                return false;
            };
            let processes = self.worker_processes();
            out.clear();
            let mut good = processes.len() == domains.len() * n;
            for d in domains {
                let list = all.get(d).cloned().unwrap_or_default();
                let pids: Vec<i64> = list
                    .iter()
                    .filter(|(id, pid, state)| {
                        state == "started" && pid.is_some() && processes.contains_key(id)
                    })
                    .filter_map(|(_, pid, _)| *pid)
                    .collect();
                good &= owners.contains_key(d) && list.len() == n && pids.len() == n;
                out.insert(d.clone(), pids);
            }
            last = format!("owners {owners:?}\ninstances {all:?}\nprocesses {processes:?}");
            good
        });
        assert!(ok, "the cluster did not settle:\n{last}");
        out
    }
}

impl Drop for Cluster {
    /// Kills every node and every worker: nothing outlives the test.
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        for pids in self.worker_processes().values() {
            for pid in pids {
                super::signal(*pid, super::Signal::SIGKILL);
            }
        }
    }
}
