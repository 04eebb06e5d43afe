//! The `epu` command. Subcommands stay thin: they talk to the daemon through the API, except
//! `daemon` and `run`, which are the daemon.

mod client;
mod foreground;
mod history;
mod print;
mod runs;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use client::Client;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "epu",
    version,
    about = "Elastic processing unit: keeps pools of workers at the right size"
)]
struct Cli {
    /// The state directory (store, socket, logs). Default: $XDG_STATE_HOME/epu or ~/.local/state/epu.
    #[arg(long, global = true, env = "EPU_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground, serving whatever the store holds. Ctrl-C stops the
    /// daemon and leaves the workers running; the next start adopts them.
    Daemon {
        #[command(flatten)]
        options: DaemonArgs,
    },
    /// Run a launch plan in the foreground and stream its events. Ctrl-C terminates the run:
    /// every worker, then its services.
    Run {
        plan: PathBuf,
        /// The run's name (default: the plan's name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        options: DaemonArgs,
    },
    /// Boot a launch plan on a detached daemon (started if needed): its levels in order, each
    /// ready before the next, then its domains. Returns once the run is booted; if a level
    /// fails, what was started is stopped again and the exit is non-zero.
    Boot {
        plan: PathBuf,
        /// The run's name (default: the plan's name).
        #[arg(long)]
        name: Option<String>,
        /// Only check the plan.
        #[arg(long)]
        validate: bool,
        /// Check the plan and show what booting it would do, without doing it.
        #[arg(long, conflicts_with = "validate")]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show every domain and its instances; or one run (its services, re-checked, and its
    /// domains) or one domain.
    Status {
        /// A run's or a domain's name.
        target: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the runs.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A run's timeline: its levels, services and domains' events.
    History {
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Every worker of a run's domains, with its state, health and pid.
    FindWorkers {
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Kill what no live run owns: the workers of domains whose run is gone, services of runs
    /// that failed or were terminated, and stray processes this state dir launched.
    Clean {
        #[arg(long)]
        json: bool,
    },
    /// Draw a run's or a domain's history to an SVG or PNG file.
    Graph {
        /// A run's or a domain's name.
        target: String,
        #[arg(long, value_enum, default_value = "instances")]
        kind: crate::graph::Kind,
        /// The file to write: .svg or .png.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Add, list or remove domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Swap, roll back or resume a domain's engine, and see its history.
    #[command(subcommand)]
    Engine(EngineCommand),
    /// Send readings to a domain's sensors.
    #[command(subcommand)]
    Sensor(SensorCommand),
    /// Change a domain's engine config: KEY=VALUE..., values are JSON or plain strings.
    Reconfigure {
        domain: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// Show the event log, all of it or a run's or a domain's; or analyse it with --summary.
    Events {
        /// A run's or a domain's name.
        target: Option<String>,
        /// Per domain: launches, failures, replacements, their latencies, engine faults and
        /// reconfigurations.
        #[arg(long, requires = "target", conflicts_with = "follow")]
        summary: bool,
        #[arg(long)]
        json: bool,
        /// Keep printing new events.
        #[arg(long, short)]
        follow: bool,
        /// Only this domain's events.
        #[arg(long)]
        domain: Option<String>,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Write what the --domain's engine saw and decided lately to FILE, as a scenario for
        /// `epu engine test` (to try another engine on real history before a swap).
        #[arg(
            long,
            value_name = "FILE",
            requires = "domain",
            conflicts_with = "follow"
        )]
        export_scenario: Option<PathBuf>,
    },
    /// Terminate a run: destroy its workers and wait until they are gone, then stop its services
    /// level by level in reverse. Without RUN: terminate every run and domain and stop the daemon.
    Terminate { run: Option<String> },
    /// Send a heartbeat for a worker (workers get EPU_NODE_ID and EPU_STATE_DIR in their env).
    Heartbeat {
        #[arg(long, env = "EPU_NODE_ID")]
        node_id: String,
        /// ok or process-error.
        #[arg(long, default_value = "ok")]
        state: String,
        /// What went wrong, with --state process-error.
        #[arg(long)]
        error: Option<String>,
    },
}

/// How `epu daemon` and `epu run` serve.
#[derive(clap::Args)]
struct DaemonArgs {
    /// The drop-in directory watched for engines (default: <state dir>/plugins).
    #[arg(long, env = "EPU_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// Also serve the API on this TCP address (HOST:PORT; port 0 picks one, written to
    /// <state dir>/listen.addr). Requests need a bearer token: <state dir>/api-token, or
    /// $EPU_API_TOKEN. Workers on other machines (the ec2 driver) send heartbeats here.
    #[arg(long, env = "EPU_LISTEN")]
    listen: Option<String>,
    /// Serve /metrics on the TCP listener without a token (for a scraper on a trusted
    /// network). Closed by default.
    #[arg(long, env = "EPU_METRICS_OPEN")]
    metrics_open: bool,
    /// The largest engine component accepted, in MiB (default 64; 1 to 1024).
    #[arg(long, env = "EPU_MAX_ENGINE_MIB", value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_engine_mib: Option<u64>,
    /// The most TCP API connections served at once (default 512; 1 to 65536). Fewer when
    /// the fd limit does not leave room for them beside the daemon's own reserve.
    #[arg(long, env = "EPU_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: Option<u32>,
}

impl DaemonArgs {
    fn options(self) -> crate::daemon::DaemonOptions {
        crate::daemon::DaemonOptions {
            plugins_dir: self.plugins_dir,
            listen: self.listen,
            metrics_open: self.metrics_open,
            max_engine_bytes: self.max_engine_mib.map(|m| m << 20),
            max_connections: self.max_connections.map(|n| n as usize),
        }
    }
}

#[derive(Subcommand)]
enum EngineCommand {
    /// Validate ENGINE against the live domain (initialize + canary decide) and swap it in.
    Swap {
        domain: String,
        /// A bundled engine's name or the path of a .wasm component.
        engine: String,
        /// The domain's new config, KEY=VALUE (repeatable), for an engine that takes other
        /// keys. It replaces the whole config; without it the engine gets the current one.
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// The engines a domain has had, by content hash and time.
    History {
        domain: String,
        #[arg(long)]
        json: bool,
    },
    /// Swap back to the engine the domain had before its current one.
    Rollback { domain: String },
    /// Lift a quarantine: the engine decides again on a fresh instance.
    Resume { domain: String },
    /// Check an engine without a daemon: its world and contract version, then a built-in
    /// scenario (empty, growing, failing and shrinking pools, a full snapshot again,
    /// reconfigure, steady decides, dying) with its costs. Exits non-zero if it breaks the
    /// contract.
    Check {
        /// A bundled engine's name or the path of a .wasm component.
        engine: String,
        /// Engine config, KEY=VALUE (repeatable).
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// The domain's max_instances for the check.
        #[arg(long, default_value_t = 100)]
        max_instances: u32,
        /// A sensor reading, NAME=VALUE (repeatable), that arrives anew before every decide.
        #[arg(long = "reading", value_name = "NAME=VALUE")]
        readings: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[arg(long)]
        json: bool,
    },
    /// Replay a scenario file (a config, then snapshots in and the decisions they must give)
    /// against an engine, without a daemon. Prints what differs; exits non-zero on any.
    Test {
        /// A bundled engine's name or the path of a .wasm component.
        engine: String,
        scenario: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SensorCommand {
    /// Record VALUE as the newest reading of the domain's pushed sensor NAME.
    Push {
        domain: String,
        name: String,
        #[arg(allow_negative_numbers = true)]
        value: String,
    },
}

/// The sandbox limits of `epu domain add`.
#[derive(clap::Args)]
struct LimitArgs {
    /// CPU-time budget of one engine call, in ms (default 50).
    #[arg(long)]
    timeout_ms: Option<u32>,
    /// Wall-clock backstop of one engine call, in ms (default 1000; at least --timeout-ms).
    #[arg(long)]
    wall_timeout_ms: Option<u32>,
    /// The engine's memory cap (all its memories and tables), in MiB (default 64).
    #[arg(long)]
    memory_mib: Option<u32>,
    /// The largest decision accepted, in bytes (default 1 MiB).
    #[arg(long)]
    max_decision_bytes: Option<u32>,
    /// Faults within the last --fault-window engine calls that quarantine the engine
    /// (default 3).
    #[arg(long)]
    quarantine_after: Option<u32>,
    /// How many of the latest engine calls the fault count looks at (default: the larger of
    /// 10 and --quarantine-after).
    #[arg(long)]
    fault_window: Option<u32>,
    /// What a quarantined domain does: hold (launch and destroy nothing) or preserve (keep
    /// the last healthy count).
    #[arg(long, value_parser = ["hold", "preserve"])]
    fallback: Option<String>,
}

impl LimitArgs {
    fn to_limits(&self) -> Result<crate::model::EngineLimits> {
        let mut l = crate::model::EngineLimits::default();
        l.timeout_ms = self.timeout_ms.unwrap_or(l.timeout_ms);
        l.wall_timeout_ms = self.wall_timeout_ms.unwrap_or(l.wall_timeout_ms);
        l.fault_window = self.fault_window;
        l.memory_mib = self.memory_mib.unwrap_or(l.memory_mib);
        l.max_decision_bytes = self.max_decision_bytes.unwrap_or(l.max_decision_bytes);
        l.quarantine_after = self.quarantine_after.unwrap_or(l.quarantine_after);
        if let Some(f) = &self.fallback {
            l.fallback = serde_json::from_value(Value::String(f.clone()))?;
        }
        Ok(l)
    }
}

// Parsed once per run: the size of `Add` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum DomainCommand {
    /// Add a domain whose workers run COMMAND [ARGS...].
    Add {
        name: String,
        /// A bundled engine's name (npreserving) or the path of a .wasm component.
        #[arg(long)]
        engine: String,
        /// Engine config, KEY=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        config: Vec<String>,
        #[arg(long, default_value_t = crate::model::DEFAULT_MAX_INSTANCES)]
        max_instances: u32,
        #[arg(long, default_value_t = crate::model::DEFAULT_PULSE_MS)]
        pulse_ms: u32,
        /// Worker env, KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Seconds between SIGTERM and SIGKILL on destroy.
        #[arg(long, default_value_t = 5.0, value_parser = finite)]
        grace: f64,
        /// Seconds a started worker may take to send its first heartbeat (default 300).
        #[arg(long, value_parser = finite)]
        boot_timeout: Option<f64>,
        /// Seconds of heartbeat silence before a worker is missing (default 120).
        #[arg(long, value_parser = finite)]
        missing_timeout: Option<f64>,
        /// Seconds after a destroy from which a heartbeat marks a zombie (default 120).
        #[arg(long, value_parser = finite)]
        zombie_timeout: Option<f64>,
        #[command(flatten)]
        limits: LimitArgs,
        /// A sensor, as comma-separated KEY=VALUE pairs (repeatable):
        /// `kind=amqp,name=queue-length,url=amqp://127.0.0.1:5672/%2f,queue=work[,interval_ms=1000]`,
        /// `kind=pushed,name=load[,stale_after_ms=30000]`, or
        /// `kind=command,name=depth[,interval_ms=..,timeout_ms=..],command=SHELL COMMAND` (command last).
        #[arg(long = "sensor", value_name = "SPEC")]
        sensors: Vec<String>,
        /// Let the engine decide on real inputs and record its decisions, but launch and
        /// destroy nothing (to trial a policy beside the real one).
        #[arg(long)]
        dry_run: bool,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List the domains.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Destroy a domain's workers and remove it.
    Remove { name: String },
}

/// The default state dir.
fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("epu")
}

/// A finite number: JSON has no inf or nan, and no setting takes them.
fn finite(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("{v} is not a finite number")),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `KEY=VALUE` settings into a JSON object; a value that is valid JSON is taken as
/// such (`5`, `true`, `{"a":1}`), anything else as a string.
fn parse_settings(items: &[String]) -> Result<Map<String, Value>> {
    let mut map = Map::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            bail!("'{item}' is not KEY=VALUE");
        };
        if k.is_empty() {
            bail!("'{item}' has an empty key");
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        map.insert(k.to_string(), value);
    }
    Ok(map)
}

/// Parses `epu domain add --sensor` (see its help) into a checked sensor spec. `command=` takes
/// the rest of the text, commas included, and runs it with `sh -c` in `cwd`.
fn parse_sensor(text: &str, cwd: &Path) -> Result<crate::model::sensor::SensorSpec> {
    let mut map = Map::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            bail!("sensor '{text}': '{rest}' is not KEY=VALUE");
        };
        let key = key.trim();
        let (value, next) = match key {
            "command" => (after, ""),
            _ => after.split_once(',').unwrap_or((after, "")),
        };
        let value = match key {
            "command" => json!(["sh", "-c", value]),
            "interval_ms" | "timeout_ms" | "stale_after_ms" => serde_json::from_str(value)
                .map_err(|_| anyhow::anyhow!("sensor '{text}': {key} must be a number"))?,
            _ => Value::String(value.to_string()),
        };
        map.insert(key.to_string(), value);
        rest = next;
    }
    if map.get("kind").and_then(Value::as_str) == Some("command") {
        map.insert("cwd".into(), json!(cwd));
    }
    let spec: crate::model::sensor::SensorSpec = serde_json::from_value(Value::Object(map))
        .map_err(|e| anyhow::anyhow!("sensor '{text}': {e}"))?;
    crate::model::sensor::check_all(std::slice::from_ref(&spec))?;
    Ok(spec)
}

fn parse_env(items: &[String]) -> Result<Map<String, Value>> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Value::String(v.to_string()))),
            _ => bail!("'{i}' is not KEY=VALUE"),
        })
        .collect()
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(std::env::current_dir()?.join(p))
}

/// An engine argument as the daemon needs it: a bundled name as is, a path made absolute.
fn engine_arg(engine: String) -> Result<String> {
    if crate::engine::bundled::get(&engine).is_some() {
        return Ok(engine);
    }
    Ok(absolute(Path::new(&engine))?.display().to_string())
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

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
        Err(e) => {
            eprintln!("error: {}", print::clean_lines(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

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
        Command::Daemon { options } => foreground::daemon(&state_dir, options.options()).await,
        Command::Run {
            plan,
            name,
            options,
        } => foreground::run(&state_dir, &plan, name, options.options()).await,
        Command::Boot {
            plan,
            name,
            validate,
            dry_run,
            json,
        } => {
            let opts = runs::BootOptions {
                name,
                validate,
                dry_run,
                json,
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
            let v = client.get(&path).await?;
            if json {
                print_json(&v);
            } else {
                print::status(&v);
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
            });
            client.post("/v1/domains", &spec).await?;
            println!("added domain {name}");
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
        Command::Domain(DomainCommand::Remove { name }) => {
            client.delete(&format!("/v1/domains/{name}")).await?;
            println!("removed domain {name}");
            Ok(())
        }
        Command::Engine(cmd) => engine_command(&client, &state_dir, cmd).await,
        Command::Sensor(SensorCommand::Push {
            domain,
            name,
            value,
        }) => {
            let value: f64 = match value.trim().parse() {
                Ok(v) if f64::is_finite(v) => v,
                _ => bail!("VALUE must be a finite number, got '{value}'"),
            };
            client
                .post(
                    &format!("/v1/domains/{domain}/sensors/{name}"),
                    &json!({ "value": value }),
                )
                .await?;
            println!("{domain}: {name} = {value}");
            Ok(())
        }
        Command::Reconfigure { domain, settings } => {
            let config = parse_settings(&settings)?;
            let v = client
                .post(
                    &format!("/v1/domains/{domain}/reconfigure"),
                    &json!({ "config": config }),
                )
                .await?;
            println!("{domain}: config version {}", v["config_version"]);
            Ok(())
        }
        Command::List { json } => history::list(&state_dir, json),
        Command::History { run, json } => history::history(&state_dir, &run, json),
        Command::FindWorkers { run, json } => history::find_workers(&state_dir, &run, json),
        Command::Clean { json } => runs::clean(&client, &state_dir, json).await,
        Command::Graph {
            target,
            kind,
            output,
        } => history::graph(&state_dir, &target, kind, &output),
        Command::Events {
            target: Some(target),
            summary: true,
            json,
            ..
        } => history::summary(&state_dir, &target, json),
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
                (Some(d), _) | (None, Some(d)) => format!("&domain={d}"),
                (None, None) => String::new(),
            };
            foreground::events(&client, json, follow, &filter, after).await
        }
        Command::Terminate { run: Some(run) } => runs::terminate(&client, &state_dir, &run).await,
        Command::Terminate { run: None } => {
            if !client.is_up().await {
                if !state_dir.join("epu.db").exists() {
                    bail!(
                        "nothing to terminate: {} holds no epu state",
                        state_dir.display()
                    );
                }
                // A daemon that died leaves its workers running: start one to adopt them.
                foreground::start_detached(&state_dir, &client).await?;
                if !client.is_up().await {
                    println!(
                        "terminated: the daemon finished the terminate a crash had cut short, \
                         and has stopped"
                    );
                    return Ok(());
                }
            }
            client.post("/v1/terminate", &json!({})).await?;
            println!("terminated: every worker is gone and the daemon has stopped");
            Ok(())
        }
        Command::Heartbeat {
            node_id,
            state,
            error,
        } => {
            client
                .post(
                    "/v1/heartbeat",
                    &json!({"node_id": node_id, "state": state, "error": error}),
                )
                .await?;
            Ok(())
        }
    }
}

async fn engine_command(client: &Client, state_dir: &Path, cmd: EngineCommand) -> Result<()> {
    match cmd {
        EngineCommand::Swap {
            domain,
            engine,
            config,
        } => {
            let engine = engine_arg(engine)?;
            let config = (!config.is_empty())
                .then(|| parse_settings(&config))
                .transpose()?;
            let v = client
                .post(
                    &format!("/v1/domains/{domain}/engine"),
                    &json!({ "engine": engine, "config": config }),
                )
                .await?;
            println!("{domain}: engine version {} is live", v["engine_version"]);
        }
        EngineCommand::History { domain, json } => {
            let v = client
                .get(&format!("/v1/domains/{domain}/engine/history"))
                .await?;
            if json {
                print_json(&v["versions"]);
            } else {
                print::engine_history(&v["versions"]);
            }
        }
        EngineCommand::Rollback { domain } => {
            let v = client
                .post(&format!("/v1/domains/{domain}/engine/rollback"), &json!({}))
                .await?;
            println!(
                "{domain}: rolled back; engine version {} is live",
                v["engine_version"]
            );
        }
        EngineCommand::Resume { domain } => {
            client
                .post(&format!("/v1/domains/{domain}/engine/resume"), &json!({}))
                .await?;
            println!("{domain}: quarantine lifted");
        }
        EngineCommand::Check {
            engine,
            config,
            max_instances,
            readings,
            limits,
            json,
        } => {
            let readings = readings
                .iter()
                .map(|r| {
                    let (name, value) = r
                        .split_once('=')
                        .filter(|(n, _)| !n.is_empty())
                        .ok_or_else(|| anyhow::anyhow!("--reading '{r}' is not NAME=VALUE"))?;
                    match value.trim().parse::<f64>() {
                        Ok(v) if v.is_finite() => Ok((name.to_string(), v)),
                        _ => bail!("--reading {name}: '{value}' is not a finite number"),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let options = crate::conformance::CheckOptions {
                config: Value::Object(parse_settings(&config)?).to_string(),
                max_instances,
                limits: limits.to_limits()?,
                readings,
            };
            check_engine(state_dir, engine, options, json).await?
        }
        EngineCommand::Test {
            engine,
            scenario,
            json,
        } => test_engine(state_dir, engine, scenario, json).await?,
    }
    Ok(())
}

/// `epu engine check`: runs off the async runtime, as engine calls must. The state dir keeps
/// the compiled code, as the daemon's does.
async fn check_engine(
    state_dir: &Path,
    engine: String,
    options: crate::conformance::CheckOptions,
    json: bool,
) -> Result<()> {
    let max = crate::engine::DEFAULT_MAX_ENGINE_BYTES;
    let bytes = crate::engine::EngineHost::read_engine(&engine, Path::new("."), max)?;
    let dir = crate::statedir::prepare(state_dir)?;
    let report =
        tokio::task::spawn_blocking(move || crate::conformance::check(&bytes, &dir, &options))
            .await??;
    if json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        print::check_report(&engine, &report);
    }
    match &report.failure {
        Some(why) => bail!("{engine} fails the check at {why}"),
        None => Ok(()),
    }
}

/// `epu engine test`: runs off the async runtime, as engine calls must. The state dir keeps
/// the compiled code, as the daemon's does.
async fn test_engine(
    state_dir: &Path,
    engine: String,
    scenario: PathBuf,
    json: bool,
) -> Result<()> {
    let loaded = crate::scenario::Scenario::load(&scenario)?;
    let max = crate::engine::DEFAULT_MAX_ENGINE_BYTES;
    let bytes = crate::engine::EngineHost::read_engine(&engine, Path::new("."), max)?;
    let dir = crate::statedir::prepare(state_dir)?;
    let results = tokio::task::spawn_blocking(move || -> Result<_> {
        let host = crate::engine::EngineHost::new(&dir)?;
        let component = host.prepare(&bytes)?;
        let results = crate::scenario::run(&host, &component, &loaded)?;
        // The compiled code is kept for the next run only if the engine passed.
        if results.iter().all(|r| r.mismatches.is_empty()) {
            host.keep(&component)?;
        }
        Ok(results)
    })
    .await??;
    let failed = results.iter().filter(|r| !r.mismatches.is_empty()).count();
    if json {
        print_json(&json!({"steps": results, "failed": failed}));
    } else {
        for r in &results {
            match r.mismatches.as_slice() {
                [] => println!("step {:>3}  ok", r.step),
                lines => {
                    println!("step {:>3}  FAIL", r.step);
                    for l in lines {
                        println!("           {l}");
                    }
                }
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} steps of {} differ",
            results.len(),
            scenario.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_json_values_or_strings() {
        let m =
            parse_settings(&["n=5".into(), "s=abc".into(), "b=true".into(), "e=".into()]).unwrap();
        assert_eq!(m["n"], 5);
        assert_eq!(m["s"], "abc");
        assert_eq!(m["b"], true);
        assert_eq!(m["e"], "");
        assert!(parse_settings(&["novalue".into()]).is_err());
        assert!(parse_settings(&["=1".into()]).is_err());
    }

    #[test]
    fn sensor_specs_parse_from_the_command_line() {
        use crate::model::sensor::SensorSpec;
        let cwd = Path::new("/tmp");
        let a = parse_sensor(
            "kind=amqp,name=q,url=amqp://127.0.0.1:5672/%2f,queue=work,interval_ms=200",
            cwd,
        )
        .unwrap();
        assert!(
            matches!(a, SensorSpec::Amqp { interval_ms: 200, ref queue, .. } if queue == "work")
        );
        let c = parse_sensor("kind=command,name=c,command=echo 1,2 | cut -d, -f1", cwd).unwrap();
        let SensorSpec::Command {
            command, cwd: dir, ..
        } = c
        else {
            panic!("not a command sensor");
        };
        assert_eq!(command, ["sh", "-c", "echo 1,2 | cut -d, -f1"]);
        assert_eq!(dir.as_deref(), Some(cwd));
        for (bad, needle) in [
            ("kind=pushed", "name"),
            ("kind=amqp,name=q,queue=w", "url"),
            ("kind=pushed,name=p,stale_after_ms=soon", "must be a number"),
            ("kind=pushed,name=p,junk", "KEY=VALUE"),
            ("kind=pushed,name=p,colour=red", "colour"),
        ] {
            let err = format!("{:#}", parse_sensor(bad, cwd).unwrap_err());
            assert!(err.contains(needle), "{bad}: expected '{needle}' in {err}");
        }
    }
}
