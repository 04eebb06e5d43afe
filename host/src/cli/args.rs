//! The command line: every subcommand and its arguments, as clap parses them.

use super::parse::finite;
use anyhow::Result;
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;

pub(super) use super::daemon_args::DaemonArgs;

#[derive(Parser)]
#[command(
    name = "epu",
    version,
    about = "Elastic processing unit: keeps pools of workers at the right size"
)]
pub(super) struct Cli {
    /// The state directory (store, socket, logs). Default: $XDG_STATE_HOME/epu or ~/.local/state/epu.
    #[arg(long, global = true, env = "EPU_STATE_DIR")]
    pub(super) state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand)]
pub(super) enum Command {
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
    /// The daemon's cluster (a daemon started with --cluster).
    #[command(subcommand)]
    Cluster(ClusterCommand),
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
    /// Protect an instance from destroys, or lift that.
    #[command(subcommand)]
    Instance(InstanceCommand),
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
    /// Exits 0, or 3 when the instance is draining: finish the work in hand, take no more,
    /// then exit or send `--drained`.
    Heartbeat {
        #[arg(long, env = "EPU_NODE_ID")]
        node_id: String,
        /// ok or process-error.
        #[arg(long, default_value = "ok")]
        state: String,
        /// What went wrong, with --state process-error.
        #[arg(long)]
        error: Option<String>,
        /// The instance's domain (workers get EPU_DOMAIN): in a cluster, a node that does not
        /// own it passes the heartbeat on to the owner.
        #[arg(long, env = "EPU_DOMAIN")]
        domain: Option<String>,
        /// Other nodes' API sockets to try, in turn, when the worker's own node does not
        /// answer (workers in a cluster get EPU_API_SOCKETS).
        #[arg(long = "peer-socket", env = "EPU_API_SOCKETS", value_delimiter = ':')]
        peers: Vec<String>,
        /// Protect this instance from destroys while it is healthy (while it holds a job, say).
        #[arg(long, conflicts_with = "unprotect")]
        protect: bool,
        /// Lift the protection.
        #[arg(long)]
        unprotect: bool,
        /// Say that this draining worker is done: the daemon stops it now.
        #[arg(long)]
        drained: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum ClusterCommand {
    /// The cluster's live nodes, each with the domains it owns, and the domains no node owns
    /// at the moment.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// A domain's events as the cluster's etcd keeps them, from every node that owned it
    /// (the last 1000, for at most 24 hours); `epu events` shows only this node's own log.
    Events {
        domain: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum EngineCommand {
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
pub(super) enum SensorCommand {
    /// Record VALUE as the newest reading of the domain's pushed sensor NAME.
    Push {
        domain: String,
        name: String,
        #[arg(allow_negative_numbers = true)]
        value: String,
    },
}

#[derive(Subcommand)]
pub(super) enum InstanceCommand {
    /// Keep a live instance from destroys while it is healthy: a decision that names it is
    /// carried out without it (an unhealthy protected instance is still replaced).
    Protect {
        domain: String,
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Lift an instance's protection: the engine may destroy it again.
    Unprotect {
        domain: String,
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// The disruption budget of `epu domain add`.
#[derive(clap::Args)]
pub(super) struct BudgetArgs {
    /// The most launches the daemon carries out in any window (default: no cap).
    #[arg(long)]
    pub(super) max_launches: Option<u32>,
    /// The most destroys the daemon carries out in any window (default: no cap).
    #[arg(long)]
    pub(super) max_destroys: Option<u32>,
    /// The budget's sliding window, in seconds (default 60; 1 to 86400).
    #[arg(long, value_parser = finite)]
    pub(super) budget_window: Option<f64>,
    /// Destroys never take the healthy instances below this percentage of the engine's
    /// highest target in the window (0 to 100).
    #[arg(long)]
    pub(super) min_healthy_percent: Option<u32>,
}

impl BudgetArgs {
    pub(super) fn to_budget(&self) -> crate::model::Budget {
        crate::model::Budget {
            max_launches: self.max_launches,
            max_destroys: self.max_destroys,
            window_seconds: self.budget_window,
            min_healthy_percent: self.min_healthy_percent,
        }
    }
}

/// The sandbox limits of `epu domain add`.
#[derive(clap::Args)]
pub(super) struct LimitArgs {
    /// CPU-time budget of one engine call, in ms (default 50).
    #[arg(long)]
    pub(super) timeout_ms: Option<u32>,
    /// Wall-clock backstop of one engine call, in ms (default 1000; at least --timeout-ms).
    #[arg(long)]
    pub(super) wall_timeout_ms: Option<u32>,
    /// The engine's memory cap (all its memories and tables), in MiB (default 64).
    #[arg(long)]
    pub(super) memory_mib: Option<u32>,
    /// The largest decision accepted, in bytes (default 1 MiB).
    #[arg(long)]
    pub(super) max_decision_bytes: Option<u32>,
    /// Faults within the last --fault-window engine calls that quarantine the engine
    /// (default 3).
    #[arg(long)]
    pub(super) quarantine_after: Option<u32>,
    /// How many of the latest engine calls the fault count looks at (default: the larger of
    /// 10 and --quarantine-after).
    #[arg(long)]
    pub(super) fault_window: Option<u32>,
    /// What a quarantined domain does: hold (launch and destroy nothing) or preserve (keep
    /// the last healthy count).
    #[arg(long, value_parser = ["hold", "preserve"])]
    pub(super) fallback: Option<String>,
}

impl LimitArgs {
    pub(super) fn to_limits(&self) -> Result<crate::model::EngineLimits> {
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
pub(super) enum DomainCommand {
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
        #[command(flatten)]
        budget: BudgetArgs,
        /// Let a destroyed, healthy worker drain (finish its work) for up to this many
        /// seconds before it is stopped (1 to 86400; default: stop it at once).
        #[arg(long = "drain-timeout", value_name = "SECONDS")]
        drain_timeout: Option<u32>,
        /// In a cluster: a node that may own the domain (repeatable; default any node).
        #[arg(long = "node", value_name = "NAME")]
        nodes: Vec<String>,
        /// In a cluster: a label KEY=VALUE a node must carry to own the domain (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Make a new version of a domain's deployable, which new instances run from now on
    /// (`domain refresh` replaces the running ones): the worker command COMMAND [ARGS...]
    /// with its env and grace, or a whole deployable from a JSON file (any driver).
    Update {
        name: String,
        /// An env var KEY=VALUE of the workers (repeatable).
        #[arg(long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Seconds between SIGTERM and SIGKILL on destroy.
        #[arg(long, default_value_t = 5.0, value_parser = finite)]
        grace: f64,
        /// The deployable as JSON, as `epu status --json` shows it, in place of COMMAND.
        #[arg(long, value_name = "FILE", conflicts_with = "command")]
        deployable: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(last = true, required_unless_present = "deployable")]
        command: Vec<String>,
    },
    /// Replace a domain's instances of other deployable versions by ones of the current
    /// version, make-before-break: each replacement runs healthy before an old one is
    /// retired (drained first when the domain drains).
    Refresh {
        name: String,
        /// Replacements under way at once (1 to 100000; default 1).
        #[arg(long)]
        batch: Option<u32>,
        /// Healthy instances never fall below this share of the domain's instances when an old
        /// one is retired (0 to 100; default 100).
        #[arg(long = "min-healthy", value_name = "PERCENT")]
        min_healthy: Option<u32>,
        /// Go back to the version before the current one (or to where the refresh under way
        /// began), and refresh to it.
        #[arg(long)]
        rollback: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the domains.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Destroy a domain's workers and remove it.
    Remove { name: String },
}
