//! The `epu` command. Subcommands stay thin: they talk to the daemon through the API, except
//! `daemon` and `run`, which are the daemon. `args` declares them; this file dispatches.

mod args;
mod client;
mod daemon_args;
mod deployables;
mod distribution;
mod domain_args;
mod engine;
mod explain;
mod foreground;
mod history;
mod instances;
mod logs;
mod parse;
mod print;
mod runs;
mod shadows;
mod suggest;

use anyhow::{bail, Context, Result};
use args::*;
use clap::Parser;
use client::Client;
use engine::engine_command;
use parse::*;
use print::{print_json, report};
use serde_json::{json, Value};

/// Runs the command line; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Daemon { .. } | Command::Run { .. }) {
        quiet_on_closed_pipe();
    }
    let filter = std::env::var("EPU_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<ExitWith>() => {
            std::process::ExitCode::from(e.downcast_ref::<ExitWith>().map_or(1, |c| c.0))
        }
        Err(e) => {
            eprintln!("error: {}", print::clean_lines(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Asks on the terminal before `epu terminate` ends every run and domain; an answer other
/// than yes is an error, and nothing is terminated.
async fn confirm_terminate(client: &Client) -> Result<()> {
    let v = client.get("/v1/status").await?;
    let domains = v["domains"].as_array().map_or(0, Vec::len);
    let workers: usize = v["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["instances"].as_array().map_or(0, Vec::len))
        .sum();
    eprint!(
        "terminate {} with {}, every run, and the daemon? [y/N] ",
        print::count(domains, "domain"),
        print::count(workers, "worker")
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not terminated (give --yes to skip the question)");
    }
    Ok(())
}

/// The exit code of `epu heartbeat` when the instance is draining.
pub const DRAIN_EXIT_CODE: u8 = 3;

/// A command's outcome that is not an error but a documented exit code, with nothing printed.
#[derive(Debug, thiserror::Error)]
#[error("exit code {0}")]
struct ExitWith(u8);

/// A client command whose output goes to a pipe that closes (`epu events | head`) ends quietly
/// with status 141, as a Unix tool killed by SIGPIPE does, instead of panicking on the failed
/// write. (SIGPIPE itself stays ignored: a write to the daemon's socket after the daemon went
/// away must be an error the client reports, not a silent death.)
fn quiet_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

async fn dispatch(cli: Cli) -> Result<()> {
    let state_dir = absolute(&cli.state_dir.unwrap_or_else(default_state_dir))?;
    let client = Client::new(&state_dir);
    match cli.command {
        Command::Daemon {
            action: Some(DaemonAction::Stop { json }),
            ..
        } => {
            let v = client.post("/v1/stop", &json!({})).await?;
            let gone = async {
                while client.is_up().await {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            };
            if tokio::time::timeout(std::time::Duration::from_secs(30), gone)
                .await
                .is_err()
            {
                bail!("the daemon did not stop within 30 s");
            }
            report(json, &v, || {
                "stopped the daemon; its workers run on, and the next start adopts them".into()
            });
            Ok(())
        }
        Command::Daemon { options, .. } => foreground::daemon(&state_dir, options.options()?).await,
        Command::Run {
            plan,
            name,
            options,
        } => foreground::run(&state_dir, &plan, name, options.options()?).await,
        Command::Boot {
            plan,
            name,
            validate,
            dry_run,
            json,
            listen,
        } => {
            let opts = runs::BootOptions {
                name,
                validate,
                dry_run,
                json,
                listen,
            };
            runs::boot(&state_dir, &plan, opts).await
        }
        Command::Status {
            target: Some(run),
            json,
        } if runs::is_run(&client, &run).await? => runs::status(&client, &run, json).await,
        Command::Status {
            target: domain,
            json,
        } => {
            let path = match &domain {
                Some(d) => format!("/v1/status?domain={d}"),
                None => "/v1/status".into(),
            };
            let v = match (client.get(&path).await, &domain) {
                (Err(e), Some(d)) if e.to_string().contains("unknown domain") => {
                    return Err(suggest::unknown_target(&state_dir, d));
                }
                (v, _) => v?,
            };
            if json {
                print_json(&v);
            } else {
                print::status(&v);
            }
            Ok(())
        }
        Command::Cluster(ClusterCommand::Status { json }) => {
            let v = client.get("/v1/cluster").await?;
            if json {
                print_json(&v);
            } else {
                print::cluster(&v);
            }
            Ok(())
        }
        Command::Cluster(ClusterCommand::Events { domain, json }) => {
            let v = client.get(&format!("/v1/cluster/events/{domain}")).await?;
            for e in v["events"].as_array().cloned().unwrap_or_default() {
                if json {
                    println!("{e}");
                } else {
                    print::cluster_event(&e);
                }
            }
            Ok(())
        }
        Command::Domain(DomainCommand::Add {
            name,
            engine,
            config,
            max_instances,
            pulse_ms,
            env,
            grace,
            boot_timeout,
            missing_timeout,
            zombie_timeout,
            limits,
            sensors,
            dry_run,
            budget,
            drain_timeout,
            nodes,
            labels,
            json,
            command,
        }) => {
            let engine = engine_arg(engine)?;
            let cwd = std::env::current_dir()?;
            let sensors = sensors
                .iter()
                .map(|s| parse_sensor(s, &cwd))
                .collect::<Result<Vec<_>>>()?;
            let mut health = crate::model::HealthSettings::default();
            health.boot_timeout = boot_timeout.unwrap_or(health.boot_timeout);
            health.missing_timeout = missing_timeout.unwrap_or(health.missing_timeout);
            health.zombie_timeout = zombie_timeout.unwrap_or(health.zombie_timeout);
            let spec = json!({
                "name": name,
                "engine": engine,
                "config": parse_settings(&config)?,
                "deployable": {
                    "command": command,
                    "env": parse_env(&env)?,
                    "cwd": std::env::current_dir()?,
                    "grace_seconds": grace,
                },
                "health": health,
                "max_instances": max_instances,
                "pulse_ms": pulse_ms,
                "run": null,
                "limits": limits.to_limits()?,
                "sensors": sensors,
                "dry_run": dry_run,
                "budget": budget.to_budget(),
                "drain_timeout_seconds": drain_timeout,
                "placement": {
                    "nodes": nodes,
                    "labels": crate::model::parse_labels("--label", &labels)?,
                },
            });
            let v = client.post("/v1/domains", &spec).await?;
            report(json, &v, || format!("added domain {name}"));
            Ok(())
        }
        Command::Domain(DomainCommand::List { json }) => {
            let v = client.get("/v1/status").await?;
            let domains = v["domains"].as_array().cloned().unwrap_or_default();
            if json {
                let list: Vec<Value> = domains
                    .iter()
                    .map(|d| json!({"name": d["name"], "engine": d["engine"], "config": d["config"], "instances": d["instances"].as_array().map(|a| a.len())}))
                    .collect();
                print_json(&Value::Array(list));
            } else {
                for d in &domains {
                    println!("{}", d["name"].as_str().unwrap_or("-"));
                }
            }
            Ok(())
        }
        Command::Domain(cmd @ (DomainCommand::Update { .. } | DomainCommand::Refresh { .. })) => {
            deployables::command(&client, cmd).await
        }
        Command::Domain(DomainCommand::Remove { name, json }) => {
            let v = client.delete(&format!("/v1/domains/{name}")).await?;
            report(json, &v, || format!("removed domain {name}"));
            Ok(())
        }
        Command::Engine(cmd) => engine_command(&client, &state_dir, cmd).await,
        Command::Instance(cmd) => instances::instance_command(&client, cmd).await,
        Command::Sensor(SensorCommand::Push {
            domain,
            name,
            value,
            json,
        }) => {
            let value: f64 = match value.trim().parse() {
                Ok(v) if f64::is_finite(v) => v,
                _ => bail!("VALUE must be a finite number, got '{value}'"),
            };
            let v = client
                .post(
                    &format!("/v1/domains/{domain}/sensors/{name}"),
                    &json!({ "value": value }),
                )
                .await?;
            report(json, &v, || format!("{domain}: {name} = {value}"));
            Ok(())
        }
        Command::Reconfigure {
            domain,
            settings,
            json,
        } => {
            let config = parse_settings(&settings)?;
            let v = client
                .post(
                    &format!("/v1/domains/{domain}/reconfigure"),
                    &json!({ "config": config }),
                )
                .await?;
            report(json, &v, || {
                format!("{domain}: config version {}", v["config_version"])
            });
            Ok(())
        }
        Command::List { json } => history::list(&state_dir, json),
        Command::History { run, json } => history::history(&state_dir, &run, json),
        Command::FindWorkers { run, json } => history::find_workers(&state_dir, &run, json),
        Command::Explain { domain, last, json } => {
            explain::explain(&client, &domain, last, json).await
        }
        Command::Logs {
            target,
            follow,
            tail,
        } => logs::logs(&state_dir, &target, follow, tail).await,
        Command::Clean { json } => runs::clean(&client, &state_dir, json).await,
        Command::Graph {
            target,
            kind,
            output,
        } => history::graph(&state_dir, &target, kind, &output),
        Command::Events {
            target,
            domain,
            summary: true,
            json,
            ..
        } => history::summary(&state_dir, target.or(domain).as_deref(), json),
        Command::Events {
            export_scenario: Some(file),
            domain: Some(domain),
            ..
        } => {
            let v = client
                .get(&format!("/v1/domains/{domain}/scenario"))
                .await?;
            let text = v["scenario"].as_str().unwrap_or_default();
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
            println!(
                "wrote {} steps of '{domain}' to {}",
                v["steps"],
                file.display()
            );
            Ok(())
        }
        Command::Events {
            target,
            json,
            follow,
            domain,
            after,
            ..
        } => {
            let filter = match (target, domain) {
                (Some(t), _) if runs::is_run(&client, &t).await? => format!("&run={t}"),
                (Some(d), _) | (None, Some(d)) => {
                    // A domain that is gone still has its history; one that never was is an
                    // error, as for `epu status`.
                    let live = client.get(&format!("/v1/status?domain={d}")).await.is_ok();
                    let past = client
                        .get(&format!("/v1/events?domain={d}&limit=1"))
                        .await?["events"]
                        .as_array()
                        .is_some_and(|e| !e.is_empty());
                    if !live && !past {
                        return Err(suggest::unknown_target(&state_dir, &d));
                    }
                    format!("&domain={d}")
                }
                (None, None) => String::new(),
            };
            foreground::events(&client, json, follow, &filter, after).await
        }
        Command::Terminate {
            run: Some(run),
            json,
            ..
        } => runs::terminate(&client, &state_dir, &run, json).await,
        Command::Terminate {
            run: None,
            json,
            yes,
        } => {
            use std::io::IsTerminal;
            if !yes && std::io::stdin().is_terminal() && client.is_up().await {
                confirm_terminate(&client).await?;
            }
            if !client.is_up().await {
                if !state_dir.join("epu.db").exists() {
                    bail!(
                        "nothing to terminate: {} holds no epu state",
                        state_dir.display()
                    );
                }
                // A daemon that died leaves its workers running: start one to adopt them.
                foreground::start_detached(&state_dir, &client, None).await?;
                if !client.is_up().await {
                    let v = json!({ "terminated": true, "finished_after_a_crash": true });
                    report(json, &v, || {
                        "terminated: the daemon finished the terminate a crash had cut short, \
                         and has stopped"
                            .into()
                    });
                    return Ok(());
                }
            }
            let v = client.post("/v1/terminate", &json!({})).await?;
            report(json, &v, || {
                "terminated: every worker is gone and the daemon has stopped".into()
            });
            Ok(())
        }
        Command::Completions { shell } => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cli, "epu", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            page.render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Heartbeat {
            node_id,
            state,
            error,
            domain,
            peers,
            protect,
            unprotect,
            drained,
        } => {
            let mut body =
                json!({"node_id": node_id, "state": state, "error": error, "domain": domain});
            if protect || unprotect {
                body["protect"] = json!(protect);
            }
            if drained {
                body["drained"] = json!(true);
            }
            // In a cluster, the worker's node may be gone: another node on the host passes
            // the heartbeat on to the domain's owner.
            let mut peer = None;
            if !client.reachable().await {
                for socket in peers.iter().filter(|p| !p.is_empty()) {
                    let other = Client::at_socket(socket.into());
                    if other.reachable().await {
                        peer = Some(other);
                        break;
                    }
                }
            }
            let answer = peer
                .as_ref()
                .unwrap_or(&client)
                .post("/v1/heartbeat", &body)
                .await?;
            if answer["drain"] == true {
                return Err(ExitWith(DRAIN_EXIT_CODE).into());
            }
            Ok(())
        }
    }
}
