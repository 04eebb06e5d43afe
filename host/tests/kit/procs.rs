//! Processes as `/proc` shows them: liveness, signals, and the workers and services of a
//! state dir found by their environment.

use super::{Epu, Instance, Signal};
use std::path::Path;

impl Epu {
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

/// Sends a signal to one process; false if it is gone.
pub fn signal(pid: i32, sig: Signal) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok()
}

pub fn kill9(pid: i32) {
    assert!(signal(pid, Signal::SIGKILL), "kill -9 {pid}");
}
