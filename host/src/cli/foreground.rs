//! The commands that are, or start, the daemon: `daemon`, `run`, `boot`; and event streaming.

use super::client::Client;
use super::print;
use crate::api;
use crate::daemon::Daemon;
use crate::plan;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
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
pub async fn daemon(state_dir: &Path, plugins_dir: Option<PathBuf>) -> Result<()> {
    let daemon = Daemon::start(state_dir, plugins_dir).await?;
    eprintln!(
        "epu daemon serving {} (pid {})",
        daemon.state_dir.display(),
        std::process::id()
    );
    let server = tokio::spawn(api::serve(daemon.clone()));
    tokio::select! {
        r = stop_signal() => r?,
        _ = daemon.stopping() => {}
    }
    daemon.request_shutdown();
    server.await??;
    Ok(())
}

/// `epu run PLAN`: the daemon in the foreground with the plan's domains, streaming events;
/// Ctrl-C terminates every worker.
pub async fn run(state_dir: &Path, plan_path: &Path, plugins_dir: Option<PathBuf>) -> Result<()> {
    let plan = plan::load(plan_path)?;
    let daemon = Daemon::start(state_dir, plugins_dir).await?;
    let server = tokio::spawn(api::serve(daemon.clone()));
    let mut after = *daemon.services.store.subscribe().borrow();
    let existing: Vec<_> = daemon
        .status(None)
        .await?
        .into_iter()
        .map(|d| (d.name, d.run))
        .collect();
    let mut added = Vec::new();
    let result = async {
        for spec in plan.domains_to_add(&existing)? {
            daemon
                .add_domain(spec.clone())
                .await
                .with_context(|| format!("domain '{}'", spec.name))?;
            added.push(spec.name.clone());
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        // Undo what this run added; anything else stays for the next daemon.
        for name in added.iter().rev() {
            daemon.remove_domain(name).await?;
        }
        daemon.request_shutdown();
        server.await??;
        return Err(e);
    }
    eprintln!(
        "epu: running plan '{}' on {} (Ctrl-C terminates it and its workers)",
        plan.name,
        daemon.state_dir.display()
    );
    let mut seq = daemon.services.store.subscribe();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        for e in daemon.services.store.events_after(after, None, 1000)? {
            after = e.seq;
            print::event(&serde_json::to_value(&e)?);
        }
        tokio::select! {
            r = &mut stop => { r?; break; }
            _ = seq.changed() => {}
            // `epu terminate` from another shell ends the run too.
            _ = daemon.stopping() => return server.await?,
        }
    }
    eprintln!("epu: terminating every worker");
    daemon.terminate().await?;
    server.await??;
    eprintln!("epu: done");
    Ok(())
}

/// `epu boot PLAN`: make sure a detached daemon serves the state dir, then add the plan's
/// domains. If one is refused, the ones this boot added are removed again.
pub async fn boot(state_dir: &Path, plan_path: &Path) -> Result<()> {
    let plan = plan::load(plan_path)?;
    let client = Client::new(state_dir);
    if !client.is_up().await {
        start_detached(state_dir, &client).await?;
    }
    let status = client.get("/v1/status").await?;
    let existing: Vec<(String, Option<String>)> = status["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or_default().to_string(),
                d["run"].as_str().map(str::to_string),
            )
        })
        .collect();
    let mut added = Vec::new();
    for spec in plan.domains_to_add(&existing)? {
        if let Err(e) = client
            .post("/v1/domains", &serde_json::to_value(spec)?)
            .await
        {
            for name in added.iter().rev() {
                let _ = client.delete(&format!("/v1/domains/{name}")).await;
            }
            bail!("domain '{}': {e:#}", spec.name);
        }
        added.push(spec.name.clone());
    }
    if added.is_empty() {
        println!(
            "plan '{}' is already booted on {}",
            plan.name,
            state_dir.display()
        );
        return Ok(());
    }
    println!(
        "booted plan '{}': domains {} on {}",
        plan.name,
        added.join(", "),
        state_dir.display()
    );
    println!("watch with: epu status   |   stop with: epu terminate");
    Ok(())
}

/// Starts `epu daemon` in its own process group with its output in `daemon.log`, and waits
/// until it answers.
pub(super) async fn start_detached(state_dir: &Path, client: &Client) -> Result<()> {
    let state_dir = crate::daemon::prepare_state_dir(state_dir)?;
    let log_path = state_dir.join("daemon.log");
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
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

/// `epu events`: print the log, and with `follow` keep printing as events arrive.
pub async fn events(
    client: &Client,
    as_json: bool,
    follow: bool,
    domain: Option<&str>,
    mut after: i64,
) -> Result<()> {
    loop {
        let wait = if follow { 10_000 } else { 0 };
        let mut path = format!("/v1/events?after={after}&wait_ms={wait}");
        if let Some(d) = domain {
            path.push_str(&format!("&domain={d}"));
        }
        let v = match client.get(&path).await {
            Ok(v) => v,
            // The daemon stopped (e.g. `epu terminate`): a follower ends quietly.
            Err(_) if follow && after > 0 => return Ok(()),
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
