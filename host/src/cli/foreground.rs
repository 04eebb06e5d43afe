//! The commands that are, or start, the daemon: `daemon`, `run`, `boot`; and event streaming.

use super::client::Client;
use super::print;
use crate::api;
use crate::daemon::{Daemon, DaemonOptions};
use crate::plan;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Waits for Ctrl-C or SIGTERM.
async fn stop_signal() -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// `epu daemon`: serve the state dir until a signal or `epu terminate`. Workers outlive a
/// signal; the next daemon adopts them.
pub async fn daemon(state_dir: &Path, options: DaemonOptions) -> Result<()> {
    let daemon = Daemon::start(state_dir, options).await?;
    eprintln!(
        "epu daemon serving {} (pid {})",
        daemon.state_dir.display(),
        std::process::id()
    );
    if let Some(line) = dashboard_line(&daemon.state_dir) {
        eprintln!("{line}");
    }
    let server = tokio::spawn(api::serve(daemon.clone()));
    tokio::select! {
        r = stop_signal() => r?,
        _ = daemon.stopping() => {}
    }
    daemon.request_shutdown();
    daemon.leave_cluster().await;
    server.await??;
    Ok(())
}

/// `epu run PLAN`: the daemon in the foreground; boots the plan as a run and streams the
/// event log. Ctrl-C (or a failed boot) terminates the run, every worker, and the daemon.
pub async fn run(
    state_dir: &Path,
    plan_path: &Path,
    name: Option<String>,
    options: DaemonOptions,
) -> Result<()> {
    let plan = plan::load(plan_path)?;
    let run = name.unwrap_or_else(|| plan.name.clone());
    plan::check_name(&run)?;
    let daemon = Daemon::start(state_dir, options).await?;
    if let Some(line) = dashboard_line(&daemon.state_dir) {
        eprintln!("{line}");
    }
    let server = tokio::spawn(api::serve(daemon.clone()));
    let mut after = *daemon.services.store.subscribe().borrow();
    let mut boot = {
        let d = daemon.clone();
        let (file, run) = (plan.file.clone(), run.clone());
        Some(tokio::spawn(
            async move { d.boot_run(&file, Some(&run)).await },
        ))
    };
    let mut seq = daemon.services.store.subscribe();
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut failed = None;
    loop {
        for e in daemon.services.store.events_after(after, None, 1000)? {
            after = e.seq;
            print::event(&serde_json::to_value(&e)?);
        }
        if failed.is_some() {
            break;
        }
        tokio::select! {
            r = &mut stop => { r?; break; }
            _ = seq.changed() => {}
            done = async { boot.as_mut().expect("guarded").await }, if boot.is_some() => {
                boot = None;
                match done? {
                    Ok(_) => eprintln!(
                        "epu: run '{run}' is booted on {} (Ctrl-C terminates it and its workers)",
                        daemon.state_dir.display()
                    ),
                    Err(e) => failed = Some(anyhow::anyhow!(e)),
                }
            }
            // `epu terminate` from another shell ends the run too.
            _ = daemon.stopping() => return server.await?,
        }
    }
    if let Some(task) = boot {
        // Ctrl-C during the boot: what it started is terminated below.
        task.abort();
    }
    if failed.is_none() {
        eprintln!("epu: terminating every worker, then the services");
    }
    daemon.terminate().await?;
    server.await??;
    match failed {
        Some(e) => Err(e),
        None => {
            eprintln!("epu: done");
            Ok(())
        }
    }
}

/// Where the dashboard is and how to log in, when the daemon of `state_dir` serves TCP.
pub(super) fn dashboard_line(state_dir: &Path) -> Option<String> {
    let addr = std::fs::read_to_string(state_dir.join("listen.addr")).ok()?;
    let token = match std::env::var_os(crate::tokens::TOKEN_VAR) {
        Some(_) => format!("${}", crate::tokens::TOKEN_VAR),
        None => state_dir.join("api-token").display().to_string(),
    };
    Some(format!(
        "dashboard: http://{}/ (log in with the API token in {token})",
        addr.trim()
    ))
}

/// Starts `epu daemon` in its own process group with its output in `daemon.log` (serving
/// TCP on `listen` if given), and waits until it answers, or until it exits 0 (a daemon that
/// finished an interrupted terminate stops by itself).
pub(super) async fn start_detached(
    state_dir: &Path,
    client: &Client,
    listen: Option<&str>,
) -> Result<()> {
    let state_dir = crate::statedir::prepare(state_dir)?;
    let log_path = state_dir.join("daemon.log");
    let log = crate::statedir::open_append(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    if let Some(addr) = listen {
        command.env("EPU_LISTEN", addr);
    }
    let mut child = command
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .context("starting the daemon")?;
    for _ in 0..600 {
        if client.is_up().await {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            if status.success() {
                // It stopped by itself: it finished a terminate that a crash interrupted.
                return Ok(());
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "the daemon exited ({status}): {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "the daemon did not answer within 30 s; see {}",
        log_path.display()
    )
}

/// `epu events`: print the log (`filter` is `&domain=D`, `&run=R` or empty), and with
/// `follow` keep printing as events arrive.
pub async fn events(
    client: &Client,
    as_json: bool,
    follow: bool,
    filter: &str,
    mut after: i64,
) -> Result<()> {
    loop {
        let wait = if follow { 10_000 } else { 0 };
        let path = format!("/v1/events?after={after}&wait_ms={wait}{filter}");
        let v = match client.get(&path).await {
            Ok(v) => v,
            // The daemon stopped (`epu terminate`, or a crash): a follower cannot go on.
            Err(e) if follow && after > 0 => {
                anyhow::bail!("the daemon went away; no more events to follow ({e:#})")
            }
            Err(e) => return Err(e),
        };
        let events = v["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            after = e["seq"].as_i64().unwrap_or(after);
            if as_json {
                println!("{}", json!(e));
            } else {
                print::event(e);
            }
        }
        if !follow && events.len() < 1000 {
            return Ok(());
        }
    }
}
