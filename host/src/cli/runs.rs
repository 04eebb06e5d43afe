//! The run commands that go through the daemon: `boot` (with its progress), `status RUN`,
//! `terminate RUN` and `clean`.

use super::client::Client;
use super::foreground::start_detached;
use super::{print, print_json};
use crate::plan::{self, Plan};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;

/// What `epu boot` was asked to do.
pub struct BootOptions {
    pub name: Option<String>,
    pub validate: bool,
    pub dry_run: bool,
    pub json: bool,
    /// The TCP address a daemon started for the boot serves the API and dashboard on.
    pub listen: Option<String>,
}

/// `epu boot PLAN`: check the plan; unless only asked to validate or to show what it would
/// do, boot it on a detached daemon (started if needed), showing each level and service as
/// it comes up.
pub async fn boot(state_dir: &Path, plan_path: &Path, opts: BootOptions) -> Result<()> {
    let plan = plan::load(plan_path)?;
    let run = opts.name.clone().unwrap_or_else(|| plan.name.clone());
    plan::check_name(&run)?;
    if opts.validate || opts.dry_run {
        let mut outline = outline(&plan, &run);
        let tried = match opts.validate {
            true => try_engines(state_dir, &plan).await?,
            false => Vec::new(),
        };
        if opts.json {
            if opts.validate {
                outline["engines"] = json!(tried);
            }
            print_json(&outline);
        } else if opts.validate {
            println!(
                "{}: plan '{}' is valid: {}, {}, {}",
                plan.file.display(),
                plan.name,
                print::count(plan.levels.len(), "level"),
                print::count(plan.service_count(), "service"),
                print::count(plan.domains.len(), "domain")
            );
            for t in &tried {
                match t["tried"].as_bool() {
                    Some(true) => println!(
                        "  domain '{}': engine {} accepts its config",
                        print::s(t, "domain"),
                        print::s(t, "engine")
                    ),
                    _ => println!(
                        "  domain '{}': its engine or config takes a service's attributes, so \
                         it is tried at boot",
                        print::s(t, "domain")
                    ),
                }
            }
        } else {
            print_outline(&outline);
        }
        return Ok(());
    }
    let client = Client::new(state_dir);
    if !client.is_up().await {
        start_detached(state_dir, &client, opts.listen.as_deref()).await?;
    } else if opts.listen.is_some() && !state_dir.join("listen.addr").exists() {
        eprintln!(
            "epu: the daemon already runs without --listen; `epu daemon stop` and boot again \
             to serve the dashboard"
        );
    }
    if !opts.json {
        if let Some(line) = super::foreground::dashboard_line(state_dir) {
            println!("{line}");
        }
    }
    let mut after = client.get("/v1/events?after=9223372036854775807").await?["last_seq"]
        .as_i64()
        .unwrap_or(0);
    if !opts.json {
        println!("booting run '{run}' from {}", plan.file.display());
    }
    let body = json!({"plan": plan.file, "name": run});
    let request = {
        let client = Client::new(state_dir);
        tokio::spawn(async move { client.post("/v1/runs", &body).await })
    };
    tokio::pin!(request);
    let result = loop {
        let poll = format!("/v1/events?run={run}&after={after}&wait_ms=500");
        tokio::select! {
            done = &mut request => break done?,
            polled = client.get(&poll) => {
                for e in polled?["events"].as_array().into_iter().flatten() {
                    after = e["seq"].as_i64().unwrap_or(after);
                    if !opts.json {
                        progress(e);
                    }
                }
            }
        }
    };
    // What happened after the last poll.
    if !opts.json {
        let v = client
            .get(&format!("/v1/events?run={run}&after={after}"))
            .await?;
        for e in v["events"].as_array().into_iter().flatten() {
            progress(e);
        }
    }
    let status = result?;
    if opts.json {
        print_json(&status);
        return Ok(());
    }
    if status["already_booted"] == true {
        let added = status["added_domains"].as_array().map_or(0, Vec::len);
        println!(
            "run '{run}' was already booted; added {}",
            print::count(added, "missing domain")
        );
    } else {
        println!(
            "run '{run}' booted: {}, {}, {}",
            print::count(plan.levels.len(), "level"),
            print::count(plan.service_count(), "service"),
            print::count(plan.domains.len(), "domain")
        );
    }
    println!("watch with: epu status {run}   |   stop with: epu terminate {run}");
    Ok(())
}

/// Tries each domain's engine on its config (initialize, and a trial decide for a bundled
/// engine), as the boot will; the compiled code is kept in the state dir for the boot. A
/// domain whose engine or config takes a service's attributes is left to the boot.
async fn try_engines(state_dir: &Path, plan: &Plan) -> Result<Vec<Value>> {
    let dir = crate::statedir::prepare(state_dir)?;
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || {
        let host = crate::engine::EngineHost::new(&dir)?;
        let mut out = Vec::new();
        for (i, d) in plan.domains.iter().enumerate() {
            let tried = plan.engine_known_before_boot(i);
            if tried {
                crate::controller::trial::try_plan_domain(&host, &plan, i)?;
            }
            let engine = crate::engine::engine_name(&d.engine);
            out.push(json!({"domain": d.name, "engine": engine, "tried": tried}));
        }
        Ok(out)
    })
    .await?
}

/// The plan as it would boot, level by level, with references unfilled.
fn outline(plan: &Plan, run: &str) -> Value {
    json!({
        "run": run,
        "plan": plan.file,
        "levels": plan.levels.iter().enumerate().map(|(i, services)| json!({
            "level": i + 1,
            "services": services,
        })).collect::<Vec<_>>(),
        "domains": plan.domains,
    })
}

fn print_outline(outline: &Value) {
    println!(
        "run '{}' would boot from {}:",
        outline["run"].as_str().unwrap_or("-"),
        outline["plan"].as_str().unwrap_or("-")
    );
    for level in outline["levels"].as_array().into_iter().flatten() {
        println!("  level {}: in parallel", level["level"]);
        for s in level["services"].as_array().into_iter().flatten() {
            println!(
                "    service {}: {}",
                print::s(s, "name"),
                words(&s["start"])
            );
            if let Some(ready) = s["ready"].as_object() {
                println!(
                    "      ready when `{}` exits 0 (up to {} tries)",
                    words(&ready["command"]),
                    ready["retries"]
                );
            }
            if let Some(p) = s["publishes"].as_array().filter(|p| !p.is_empty()) {
                let names: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
                println!("      publishes {}", names.join(", "));
            }
        }
    }
    println!("  then the domains:");
    for d in outline["domains"].as_array().into_iter().flatten() {
        println!(
            "    domain {}: engine {}, workers run {}",
            print::s(d, "name"),
            print::s(d, "engine"),
            words(&d["deployable"]["command"])
        );
    }
}

fn words(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of boot or terminate progress.
fn progress(e: &Value) {
    let d = &e["detail"];
    let service = e["instance"].as_str().unwrap_or("-");
    let line = match e["kind"].as_str().unwrap_or_default() {
        "level-booting" => format!("level {}: starting {}", d["level"], words(&d["services"])),
        "service-starting" => format!("  {service}: started (pid {})", d["pid"]),
        "service-ready" => {
            let attrs = d["attrs"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            format!(
                "  {service}: ready in {:.1} s {attrs}",
                d["seconds"].as_f64().unwrap_or(0.0)
            )
        }
        "service-failed" => format!(
            "  {service}: FAILED: {}",
            d["error"].as_str().unwrap_or("-")
        ),
        "level-ready" => format!("level {}: ready", d["level"]),
        "level-failed" => format!("level {}: FAILED", d["level"]),
        "service-terminated" => format!("  {service}: stopped"),
        "domain-added" => format!(
            "domain {}: added (engine {})",
            e["domain"].as_str().unwrap_or("-"),
            d["engine"].as_str().unwrap_or("-")
        ),
        "domain-removed" => format!("domain {}: removed", e["domain"].as_str().unwrap_or("-")),
        _ => return,
    };
    println!("{line}");
}

/// Whether `name` is a run the daemon knows.
pub async fn is_run(client: &Client, name: &str) -> Result<bool> {
    match client.get(&format!("/v1/runs/{name}")).await {
        Ok(_) => Ok(true),
        Err(e) if e.to_string().starts_with("unknown run") => Ok(false),
        Err(e) => Err(e),
    }
}

/// `epu status RUN`: the run's services (re-checked) and its domains.
pub async fn status(client: &Client, run: &str, as_json: bool) -> Result<()> {
    let v = client.get(&format!("/v1/runs/{run}?check=true")).await?;
    if as_json {
        print_json(&v);
        return Ok(());
    }
    let r = &v["run"];
    print!("run {}  {}", print::s(r, "name"), print::s(r, "state"));
    if let Some(e) = r["error"].as_str() {
        print!("  ({})", e.lines().next().unwrap_or_default());
    }
    println!("  plan {}", print::s(r, "plan"));
    for s in v["services"].as_array().into_iter().flatten() {
        let ready = match s["ready"]["ok"].as_bool() {
            Some(true) => "ready".to_string(),
            Some(false) => format!(
                "NOT READY: {}",
                s["ready"]["output"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
            None => "-".into(),
        };
        println!(
            "  level {} service {:<14} {:<11} pid {:<8} {} {}",
            s["level"],
            print::s(s, "name"),
            print::s(s, "state"),
            match (s["pid"].as_i64(), s["alive"].as_bool()) {
                (Some(p), Some(true)) => p.to_string(),
                (Some(p), _) => format!("{p}(gone)"),
                _ => "-".into(),
            },
            ready,
            s["attrs"]
                .as_object()
                .map(|m| m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        );
    }
    super::print::status(&json!({"domains": v["domains"]}));
    Ok(())
}

/// `epu terminate RUN`.
pub async fn terminate(client: &Client, state_dir: &Path, run: &str, json: bool) -> Result<()> {
    ensure_daemon(client, state_dir).await?;
    let v = client
        .post(&format!("/v1/runs/{run}/terminate"), &json!({}))
        .await?;
    if json {
        print_json(&v);
        return Ok(());
    }
    if v["already"] == true {
        println!("run '{run}' was already terminated");
        return Ok(());
    }
    let count = |k: &str| v[k].as_array().map_or(0, Vec::len);
    println!(
        "run '{run}' terminated: {} and their workers, then {}, are gone",
        print::count(count("domains"), "domain"),
        print::count(count("services"), "service")
    );
    Ok(())
}

/// `epu clean`.
pub async fn clean(client: &Client, state_dir: &Path, as_json: bool) -> Result<()> {
    ensure_daemon(client, state_dir).await?;
    let v = client.post("/v1/clean", &json!({})).await?;
    if as_json {
        print_json(&v);
        return Ok(());
    }
    for d in v["removed_domains"].as_array().into_iter().flatten() {
        println!(
            "removed domain {} (its run is gone) and its workers",
            d.as_str().unwrap_or("-")
        );
    }
    for s in v["stopped_services"].as_array().into_iter().flatten() {
        println!(
            "stopped service {} (its run is not live)",
            s.as_str().unwrap_or("-")
        );
    }
    for k in v["killed"].as_array().into_iter().flatten() {
        let what = k["worker"]
            .as_str()
            .map(|w| format!("worker {w}"))
            .or_else(|| k["service"].as_str().map(|s| format!("service {s}")))
            .unwrap_or_default();
        println!("killed stray pid {} ({what})", k["pid"]);
    }
    let total = ["removed_domains", "stopped_services", "killed"]
        .iter()
        .map(|k| v[k].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    if total == 0 {
        println!("nothing to clean");
    }
    Ok(())
}

/// Starts a daemon to act on the store when none runs (a daemon that died leaves its
/// workers and services running; the new one adopts them before it answers).
pub async fn ensure_daemon(client: &Client, state_dir: &Path) -> Result<()> {
    if client.is_up().await {
        return Ok(());
    }
    if !state_dir.join("epu.db").exists() {
        bail!("{} holds no epu state", state_dir.display());
    }
    start_detached(state_dir, client, None).await
}
