//! `epu domain`'s subcommands and the groups of flags `epu domain add` takes, as clap parses
//! them.

use super::parse::finite;
use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
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
        /// Print the result as JSON.
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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the domains.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Destroy a domain's workers and remove it.
    Remove {
        name: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}
