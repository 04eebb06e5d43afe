//! The operating-system side of the `process` driver: spawning workers in their own process
//! group, signalling groups, and finding workers through `/proc`.

use crate::model::ProcessDeployable;
use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::fs::File;
use std::path::Path;
use std::process::Stdio;

/// The env var that names a worker's instance id; `/proc` scans look for it.
pub const NODE_ID_VAR: &str = "EPU_NODE_ID";
/// The env var that names the state dir of the daemon that launched the worker.
pub const STATE_DIR_VAR: &str = "EPU_STATE_DIR";

/// A freshly spawned worker.
pub struct Spawned {
    pub pid: i32,
    /// Its start time in clock ticks since boot, which tells it apart from a later user of the pid.
    pub start: u64,
    pub child: tokio::process::Child,
}

/// Spawns a worker as the leader of a new process group, with stdout and stderr appended to
/// `log`. The group lets a destroy reach the worker's children too, and keeps the terminal's
/// Ctrl-C away from it.
pub fn spawn(dep: &ProcessDeployable, env: &[(String, String)], log: &Path) -> Result<Spawned> {
    let (program, args) = dep
        .command
        .split_first()
        .context("the deployable's command is empty")?;
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(&dep.env)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cwd) = &dep.cwd {
        cmd.current_dir(cwd);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning {program:?}"))?;
    let pid = child.id().context("the spawned process has no pid")? as i32;
    // The process exists until it is reaped, which only the exit watcher does.
    let start = start_time(pid).unwrap_or(0);
    Ok(Spawned { pid, start, child })
}

/// The start time of a live process, or None when it is gone or a zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process `pid` is still the one that started at `start`.
pub fn is_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Sends `signal` to the process group led by `pid`. A group that is gone is not an error.
pub fn signal_group(pid: i32, signal: Signal) {
    // 0 and 1 would mean our own group and init: never a worker.
    if pid <= 1 {
        return;
    }
    let _ = killpg(Pid::from_raw(pid), signal);
}

/// A worker found in `/proc`.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundWorker {
    pub instance_id: String,
    pub pid: i32,
    pub start: u64,
}

/// The env var that names a run's service as `RUN/SERVICE`; the service's processes and
/// their children carry it.
pub const SERVICE_ID_VAR: &str = "EPU_SERVICE_ID";

/// Finds the live workers launched from `state_dir`: process-group leaders whose environment
/// names that state dir and an instance id.
pub fn scan_workers(state_dir: &Path) -> Vec<FoundWorker> {
    scan(state_dir, NODE_ID_VAR, true)
        .into_iter()
        .map(|(pid, start, instance_id)| FoundWorker {
            instance_id,
            pid,
            start,
        })
        .collect()
}

/// Finds the live processes of runs' services from `state_dir` (any process, not only group
/// leaders, as a service may leave children behind): `(pid, start, "RUN/SERVICE")`.
pub fn scan_services(state_dir: &Path) -> Vec<(i32, u64, String)> {
    scan(state_dir, SERVICE_ID_VAR, false)
}

/// The live processes whose environment names `state_dir` and sets `var`, with its value.
fn scan(state_dir: &Path, var: &str, leaders_only: bool) -> Vec<(i32, u64, String)> {
    let want = format!("{STATE_DIR_VAR}={}", state_dir.display());
    let prefix = format!("{var}=");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if leaders_only
            && nix::unistd::getpgid(Some(Pid::from_raw(pid))).ok() != Some(Pid::from_raw(pid))
        {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if !vars.contains(&want.as_bytes()) {
            continue;
        }
        let value = vars
            .iter()
            .find_map(|v| v.strip_prefix(prefix.as_bytes()))
            .and_then(|v| std::str::from_utf8(v).ok());
        if let (Some(value), Some(start)) = (value, start_time(pid)) {
            found.push((pid, start, value.to_string()));
        }
    }
    found
}

/// Kills one process (not its group).
pub fn kill(pid: i32) {
    if pid > 1 {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_read_and_a_wrong_one_is_not_alive() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("our own stat");
        assert!(start > 0);
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1));
        assert_eq!(start_time(i32::MAX), None);
    }
}
