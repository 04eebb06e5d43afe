//! Drives the real `epu` binary against a temporary state dir, with real worker processes.

#![allow(dead_code)]

pub mod amqp;
pub mod components;
pub mod http;
#[cfg(feature = "ec2")]
pub mod moto;
pub mod seeded;

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

    pub fn command(&self) -> Command {
        let mut c = Command::new(EPU);
        c.env("EPU_STATE_DIR", self.state_dir())
            .env_remove("EPU_NODE_ID");
        c
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

    /// Starts `epu daemon` on the state dir and waits until it answers.
    pub fn start_daemon(&self) -> std::process::Child {
        self.spawn_daemon(self.command().arg("daemon"))
    }

    /// Starts `epu ARGS` (a daemon command, such as `daemon --listen …`) and waits until it
    /// answers.
    pub fn spawn_with(&self, args: &[&str]) -> std::process::Child {
        self.spawn_daemon(self.command().args(args))
    }

    /// Spawns a daemon command and waits until it answers.
    pub fn spawn_daemon(&self, command: &mut Command) -> std::process::Child {
        let child = command.stderr(std::process::Stdio::null()).spawn().unwrap();
        let up = wait_for(Duration::from_secs(20), || {
            self.run(&["status"]).status.success()
        });
        assert!(up, "the daemon did not come up");
        child
    }

    /// Starts `epu daemon` like [`Epu::start_daemon`]; the daemon is terminated (workers
    /// included) and reaped when the guard drops.
    pub fn daemon(&self) -> DaemonGuard {
        DaemonGuard {
            child: self.start_daemon(),
            state_dir: self.state_dir(),
        }
    }

    /// Asserts that none of `instances` nor any other worker of this state dir is alive.
    pub fn assert_no_workers_left(&self, instances: &[Instance]) {
        let alive: Vec<_> = instances
            .iter()
            .filter(|i| is_alive(i.pid.unwrap()))
            .collect();
        assert!(alive.is_empty(), "still alive: {alive:?}");
        let left = self.worker_processes();
        assert!(left.is_empty(), "worker processes left: {left:?}");
    }

    /// Boots the quickstart plan.
    pub fn boot_quickstart(&self) -> Vec<Instance> {
        let plan = repo().join("launch-plans/quickstart");
        self.ok(&["boot", plan.to_str().unwrap()]);
        self.wait_running("workers", 3)
    }

    /// Starts `epu daemon --listen ADDR` (with test AWS credentials in its env); returns its
    /// guard and the address it listens on (`127.0.0.1:0` picks a port).
    pub fn listening_daemon(&self, listen: &str) -> (DaemonGuard, String) {
        let child = self.spawn_daemon(
            self.command()
                .args(["daemon", "--listen", listen])
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing"),
        );
        let addr = std::fs::read_to_string(self.state_dir().join("listen.addr")).unwrap();
        let guard = DaemonGuard {
            child,
            state_dir: self.state_dir(),
        };
        (guard, addr.trim().to_string())
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

    /// `epu domain add NAME`, to build up: the engine is npreserving and the workers
    /// `/bin/sleep 1000` unless set.
    pub fn add_domain(&self, name: &str) -> DomainAdd<'_> {
        DomainAdd {
            epu: self,
            name: name.to_string(),
            engine: "npreserving".into(),
            options: Vec::new(),
            command: vec!["/bin/sleep".into(), "1000".into()],
        }
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

    /// Live worker processes (not zombies) launched from this state dir, found through /proc.
    pub fn worker_processes(&self) -> Vec<i32> {
        self.processes_with("EPU_NODE_ID=")
    }

    /// Live processes of runs' services launched from this state dir (and their children).
    pub fn service_processes(&self) -> Vec<i32> {
        self.processes_with("EPU_SERVICE_ID=")
    }

    /// Live processes whose environment names this state dir and has a variable starting
    /// with `var`.
    fn processes_with(&self, var: &str) -> Vec<i32> {
        our_processes(&self.state_dir())
            .into_iter()
            .filter(|(_, vars)| vars.iter().any(|v| v.starts_with(var.as_bytes())))
            .map(|(pid, _)| pid)
            .collect()
    }
}

/// Live processes (not zombies) whose environment names `state_dir`, with their environment.
fn our_processes(state_dir: &Path) -> Vec<(i32, Vec<Vec<u8>>)> {
    let want = format!(
        "EPU_STATE_DIR={}",
        state_dir
            .canonicalize()
            .unwrap_or(state_dir.to_path_buf())
            .display()
    );
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<Vec<u8>> = env.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
        if vars.iter().any(|v| v == want.as_bytes()) && is_alive(pid) {
            out.push((pid, vars));
        }
    }
    out
}

/// The live worker processes launched from `state_dir`: instance id → pids.
pub fn workers_by_instance(state_dir: &Path) -> std::collections::HashMap<String, Vec<i32>> {
    let mut out: std::collections::HashMap<String, Vec<i32>> = Default::default();
    for (pid, vars) in our_processes(state_dir) {
        if let Some(id) = vars.iter().find_map(|v| v.strip_prefix(b"EPU_NODE_ID=")) {
            out.entry(String::from_utf8_lossy(id).into_owned())
                .or_default()
                .push(pid);
        }
    }
    out
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

/// `epu domain add`, built up; see [`Epu::add_domain`].
pub struct DomainAdd<'a> {
    epu: &'a Epu,
    name: String,
    engine: String,
    options: Vec<String>,
    command: Vec<String>,
}

impl DomainAdd<'_> {
    /// A bundled engine's name or a `.wasm` path.
    pub fn engine(mut self, engine: impl AsRef<std::ffi::OsStr>) -> Self {
        self.engine = engine.as_ref().to_string_lossy().into_owned();
        self
    }

    /// One `-c KEY=VALUE`.
    pub fn config(self, setting: &str) -> Self {
        self.flag("-c", setting)
    }

    /// An option and its value, such as `--pulse-ms 100`.
    pub fn flag(mut self, option: &str, value: &str) -> Self {
        self.options.extend([option.to_string(), value.to_string()]);
        self
    }

    /// An option without a value, such as `--dry-run`.
    pub fn switch(mut self, option: &str) -> Self {
        self.options.push(option.to_string());
        self
    }

    /// The worker's program and arguments.
    pub fn command<S: AsRef<std::ffi::OsStr>>(mut self, argv: &[S]) -> Self {
        self.command = argv
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        self
    }

    /// The command line, after `epu`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["domain".to_string(), "add".into(), self.name.clone()];
        args.extend(["--engine".to_string(), self.engine.clone()]);
        args.extend(self.options.iter().cloned());
        args.push("--".into());
        args.extend(self.command.iter().cloned());
        args
    }

    /// Runs it; its output.
    pub fn run(&self) -> Output {
        let args = self.args();
        self.epu
            .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Runs it and asserts it succeeds; its stdout.
    pub fn ok(&self) -> String {
        let args = self.args();
        self.epu
            .ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Runs it and asserts it fails; its stderr.
    pub fn fails(&self) -> String {
        let args = self.args();
        self.epu
            .fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// A daemon started by a test; see [`Epu::daemon`].
pub struct DaemonGuard {
    pub child: std::process::Child,
    pub state_dir: PathBuf,
}

impl DaemonGuard {
    /// `kill -9`s the daemon (its workers live on) and reaps it.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new(EPU)
            .env("EPU_STATE_DIR", &self.state_dir)
            .arg("terminate")
            .output();
        let exited = wait_for(Duration::from_secs(15), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
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

/// Whether a process is alive and not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
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

/// Sends a signal to one process; false if it is gone.
pub fn signal(pid: i32, sig: Signal) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok()
}

pub fn kill9(pid: i32) {
    assert!(signal(pid, Signal::SIGKILL), "kill -9 {pid}");
}

/// The wall clock, in seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
