//! The operating-system side of the `process` driver: spawning workers in their own process
//! group, signalling groups, and finding workers through `/proc`.

use crate::model::ProcessDeployable;
use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
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
/// Ctrl-C away from it. The worker's environment is clean: the daemon's vars that
/// `inherit_env` names, then the deployable's `env`, then `env` (the `EPU_*` vars).
pub fn spawn(dep: &ProcessDeployable, env: &[(String, String)], log: &Path) -> Result<Spawned> {
    let (program, args) = dep
        .command
        .split_first()
        .context("the deployable's command is empty")?;
    let out = crate::statedir::open_append(log)
        .with_context(|| format!("opening {} (a symlink is refused)", log.display()))?;
    let mut cmd = tokio::process::Command::new(program);
    let inherited = dep
        .inherit_env
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| (k.clone(), v)));
    cmd.args(args)
        .env_clear()
        .envs(inherited)
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
    let mask = nix::sys::stat::Mode::from_bits_truncate(crate::statedir::worker_umask());
    // SAFETY: umask is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::stat::umask(mask);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning {program:?}"))?;
    let pid = child.id().context("the spawned process has no pid")? as i32;
    // The process exists until it is reaped, which only the exit watcher does.
    let start = start_time(pid).unwrap_or(0);
    Ok(Spawned { pid, start, child })
}

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z` (exited, not reaped yet), …
    pub state: char,
    /// Its process group.
    pub pgrp: i32,
    /// Its start time in clock ticks since boot.
    pub start: u64,
}

/// Reads a process's stat: `Ok(None)` when there is no such process, an error when `/proc`
/// could not be read (out of fds, say), which says nothing about the process.
pub fn stat(pid: i32) -> std::io::Result<Option<Stat>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(3) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let bad = || std::io::Error::other(format!("/proc/{pid}/stat does not parse"));
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let rest = &text[text.rfind(')').ok_or_else(bad)? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(bad)?;
    let pgrp = fields.get(2).and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let start = fields
        .get(19)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    Ok(Some(Stat { state, pgrp, start }))
}

/// Whether a recorded process still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Definitely gone: no such process, exited, or its pid now names another process.
    Gone,
    /// `/proc` could not be read. Unknown is never taken as gone: nothing is replaced on it.
    Unknown,
}

/// Whether the process `pid` that started at `start` still runs.
pub fn liveness(pid: i32, start: u64) -> Liveness {
    match stat(pid) {
        Ok(Some(s)) if s.start == start && !matches!(s.state, 'Z' | 'X') => Liveness::Alive,
        Ok(_) => Liveness::Gone,
        Err(_) => Liveness::Unknown,
    }
}

/// The start time of a live process, or None when it is gone, a zombie, or unreadable.
pub fn start_time(pid: i32) -> Option<u64> {
    match stat(pid) {
        Ok(Some(s)) if !matches!(s.state, 'Z' | 'X') => Some(s.start),
        _ => None,
    }
}

/// A pidfd of process `pid` (Linux 5.3 and later): it becomes readable when the process
/// ends, whoever its parent is. `None` where the kernel has no `pidfd_open`, or the process
/// is gone.
pub fn pidfd(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; nothing is borrowed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative answer is a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process `pid` is definitely still the one that started at `start`.
pub fn is_alive(pid: i32, start: u64) -> bool {
    liveness(pid, start) == Liveness::Alive
}

/// Sends `signal` to every process of the worker whose leader is `pid` (started at `start`):
/// its process group, whether the leader still runs or not. While any member is left, the
/// kernel keeps the group's number from being reused, so a group without its leader is still
/// the worker's, provided no other process holds the leader's pid. Returns how many
/// processes were signalled (the group counts as one while its leader lives).
pub fn signal_worker(pid: i32, start: u64, signal: Signal) -> usize {
    if pid <= 1 {
        return 0;
    }
    match stat(pid) {
        Ok(Some(s)) if s.start == start && !matches!(s.state, 'Z' | 'X') => {
            signal_group(pid, signal);
            1
        }
        // The pid is another process's now: the group, if any, is not the worker's.
        Ok(Some(s)) if s.start != start => 0,
        Err(_) => 0,
        _ => {
            let members: Vec<i32> = all_pids()
                .filter(|&q| {
                    stat(q).ok().flatten().is_some_and(|s| {
                        s.pgrp == pid && s.start >= start && !matches!(s.state, 'Z' | 'X')
                    })
                })
                .collect();
            for &m in &members {
                let _ = nix::sys::signal::kill(Pid::from_raw(m), signal);
            }
            members.len()
        }
    }
}

/// The pids in `/proc`.
fn all_pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
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
    scan(state_dir, NODE_ID_VAR)
        .into_iter()
        .filter(|p| p.leader)
        .map(|p| FoundWorker {
            instance_id: p.owner,
            pid: p.pid,
            start: p.start,
        })
        .collect()
}

/// Finds every live process a worker from `state_dir` started, its children too (wherever
/// they moved, as long as they kept the environment): `(pid, start, instance id)`.
pub fn scan_worker_processes(state_dir: &Path) -> Vec<(i32, u64, String)> {
    scan(state_dir, NODE_ID_VAR)
        .into_iter()
        .map(|p| (p.pid, p.start, p.owner))
        .collect()
}

/// Finds the live processes of runs' services from `state_dir` (any process, not only group
/// leaders, as a service may leave children behind): `(pid, start, "RUN/SERVICE")`.
pub fn scan_services(state_dir: &Path) -> Vec<(i32, u64, String)> {
    scan(state_dir, SERVICE_ID_VAR)
        .into_iter()
        .map(|p| (p.pid, p.start, p.owner))
        .collect()
}

/// A process found by its environment.
struct Marked {
    pid: i32,
    start: u64,
    leader: bool,
    /// The value of the var looked for.
    owner: String,
}

/// The live processes whose environment names `state_dir` and sets `var`, with its value.
fn scan(state_dir: &Path, var: &str) -> Vec<Marked> {
    let want = format!("{STATE_DIR_VAR}={}", state_dir.display());
    let prefix = format!("{var}=");
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for pid in all_pids().filter(|&p| p != me) {
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
        let (Some(value), Ok(Some(s))) = (value, stat(pid)) else {
            continue;
        };
        if matches!(s.state, 'Z' | 'X') {
            continue;
        }
        found.push(Marked {
            pid,
            start: s.start,
            leader: s.pgrp == pid,
            owner: value.to_string(),
        });
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
        assert_eq!(liveness(me, start + 1), Liveness::Gone);
        assert_eq!(liveness(i32::MAX, 1), Liveness::Gone);
        assert_eq!(start_time(i32::MAX), None);
    }
}
