//! Drives the real `epu` binary against a temporary state dir, with real worker processes.

// Each test module, and each bench, uses a part of the kit.
#![allow(dead_code)]

pub mod amqp;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod components;
mod daemon;
mod domain_add;
pub mod http;
#[cfg(feature = "ec2")]
pub mod moto;
mod procs;
#[cfg(feature = "services")]
pub mod registry;
pub mod seeded;

// Not every user of the kit (a bench) takes each of these.
#[allow(unused_imports)]
pub use {
    daemon::DaemonGuard,
    procs::{is_alive, kill9, signal, workers_by_instance},
};

pub use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const EPU: &str = env!("CARGO_BIN_EXE_epu");

/// The repository root (for the bundled launch plans).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub struct Epu {
    pub dir: tempfile::TempDir,
}

impl Epu {
    pub fn new() -> Epu {
        Epu {
            dir: tempfile::Builder::new()
                .prefix("epu-test")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `epu` with this test's state dir, and its own registry credentials file (in
    /// [`Epu::docker_config`]) rather than the user's.
    pub fn command(&self) -> Command {
        let mut c = Command::new(EPU);
        c.env("EPU_STATE_DIR", self.state_dir())
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env_remove("EPU_NODE_ID");
        c
    }

    /// Where this test's `epu` reads registry credentials: `DOCKER_CONFIG/config.json`.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker").join("config.json")
    }

    /// Runs `epu ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("running epu")
    }

    /// Runs `epu ARGS` and insists that it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "epu {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `epu ARGS` with `env` added, insists that it succeeds, and returns its stdout.
    pub fn ok_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self
            .command()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("running epu");
        assert!(
            out.status.success(),
            "epu {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `epu ARGS`, insists that it fails, and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "epu {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status JSON")
    }

    /// A domain's events (`epu events --json --domain NAME`), of one kind if `kind` is given.
    pub fn events(&self, domain: &str, kind: Option<&str>) -> Vec<Value> {
        self.ok(&["events", "--json", "--domain", domain])
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| kind.is_none_or(|k| e["kind"] == k))
            .collect()
    }

    /// The id of every instance a domain ever had, from its events.
    pub fn instances_ever(&self, domain: &str) -> std::collections::BTreeSet<String> {
        self.events(domain, None)
            .iter()
            .filter_map(|e| e["instance"].as_str().map(str::to_string))
            .collect()
    }

    /// Domain `name` as `epu status --json` shows it (null if there is none).
    pub fn domain(&self, name: &str) -> Value {
        let status = self.status();
        let domains = status["domains"].as_array().cloned().unwrap_or_default();
        domains
            .into_iter()
            .find(|d| d["name"] == name)
            .unwrap_or(Value::Null)
    }

    /// The sensor `name` of `domain` as `epu status --json` shows it (null if there is none).
    pub fn sensor(&self, domain: &str, name: &str) -> Value {
        let status = self.status();
        let domains = status["domains"].as_array().cloned().unwrap_or_default();
        let sensors = domains
            .iter()
            .find(|d| d["name"] == domain)
            .and_then(|d| d["sensors"].as_array().cloned())
            .unwrap_or_default();
        sensors
            .into_iter()
            .find(|s| s["name"] == name)
            .unwrap_or_default()
    }

    /// The live instances of a domain; none while no daemon answers.
    pub fn instances(&self, domain: &str) -> Vec<Instance> {
        let out = self.run(&["status", "--json"]);
        if !out.status.success() {
            return Vec::new();
        }
        let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        let domains = status["domains"].as_array().unwrap();
        let Some(d) = domains.iter().find(|d| d["name"] == domain) else {
            return Vec::new();
        };
        d["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| Instance {
                id: i["id"].as_str().unwrap().to_string(),
                state: i["state"].as_str().unwrap().to_string(),
                health: i["health"].as_str().unwrap().to_string(),
                pid: i["pid"].as_i64().map(|p| p as i32),
            })
            .collect()
    }

    /// Waits until `n` instances of `domain` are running and healthy; returns them.
    pub fn wait_running(&self, domain: &str, n: usize) -> Vec<Instance> {
        let mut last = Vec::new();
        let ok = wait_for(Duration::from_secs(30), || {
            last = self.instances(domain);
            last.len() == n
                && last
                    .iter()
                    .all(|i| i.state == "running" && i.health == "ok")
        });
        assert!(
            ok,
            "expected {n} running instances of {domain}, have {last:#?}"
        );
        last
    }

    /// Boots the quickstart plan.
    pub fn boot_quickstart(&self) -> Vec<Instance> {
        let plan = repo().join("launch-plans/quickstart");
        self.ok(&["boot", plan.to_str().unwrap()]);
        self.wait_running("workers", 3)
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state_dir().join("daemon.lock"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Adds domain `name`: npreserving keeping `n` `sleep` workers, deciding every 100 ms.
    pub fn add_sleepers(&self, name: &str, n: u32) {
        self.add_domain(name)
            .config(&format!("preserve_n={n}"))
            .flag("--pulse-ms", "100")
            .ok();
    }

    /// The pids of a domain's instances, as `epu status` has them, sorted.
    pub fn domain_pids(&self, name: &str) -> Vec<i64> {
        let status = self.status();
        let domain = status["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name);
        let mut pids: Vec<i64> = domain
            .and_then(|d| d["instances"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|i| i["pid"].as_i64())
            .collect();
        pids.sort();
        pids
    }
}

impl Drop for Epu {
    /// Leaves nothing behind, even when a test failed half-way.
    fn drop(&mut self) {
        let _ = self.command().arg("terminate").output();
        if let Some(pid) = self.daemon_pid() {
            if is_alive(pid) {
                signal(pid, Signal::SIGKILL);
            }
        }
        for pid in self
            .worker_processes()
            .into_iter()
            .chain(self.service_processes())
        {
            signal(pid, Signal::SIGKILL);
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub health: String,
    pub pid: Option<i32>,
}

/// A free TCP port of 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The wall clock, in seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
