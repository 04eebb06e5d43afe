//! The command line: every subcommand and its arguments, as clap parses them.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub(super) use super::daemon_args::DaemonArgs;
pub(super) use super::domain_args::{DomainCommand, LimitArgs};

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
        #[command(subcommand)]
        action: Option<DaemonAction>,
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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// A daemon started for the boot also serves the API and the dashboard on this TCP
        /// address (HOST:PORT; port 0 picks one), as `epu daemon --listen` does.
        #[arg(long, env = "EPU_LISTEN")]
        listen: Option<String>,
    },
    /// Show every domain and its instances; or one run (its services, re-checked, and its
    /// domains) or one domain.
    Status {
        /// A run's or a domain's name.
        target: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The daemon's cluster (a daemon started with --cluster).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// List the runs.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A run's timeline: its levels, services and domains' events.
    History {
        run: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every worker of a run's domains, with its state, health and pid.
    FindWorkers {
        run: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Why a domain did (or did not) scale: its last decides in words, each with what the
    /// engine was shown, what it answered, and what the daemon did and held back, and why.
    Explain {
        domain: String,
        /// How many of the last decides to show (the daemon keeps 20; alike decides in a
        /// row count as one).
        #[arg(long, default_value_t = 5, value_name = "N")]
        last: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The output of a domain's workers (each line after its instance), or of one worker.
    /// The logs of live workers and of the newest 20 ended ones per domain are kept.
    Logs {
        /// A domain's name or an instance's id.
        target: String,
        /// Keep printing new output (for an instance: until it ends).
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines of each worker's log.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
    },
    /// Kill what no live run owns: the workers of domains whose run is gone, services of runs
    /// that failed or were terminated, and stray processes this state dir launched.
    Clean {
        /// Print the result as JSON.
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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the event log, all of it or a run's or a domain's; or analyse it with --summary.
    Events {
        /// A run's or a domain's name.
        target: Option<String>,
        /// Per domain (of the run, the domain, or every domain): launches, failures,
        /// replacements, their latencies, engine faults and reconfigurations.
        #[arg(long, conflicts_with = "follow")]
        summary: bool,
        /// Print the result as JSON.
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
    /// level by level in reverse. Without RUN: terminate every run and domain and stop the daemon
    /// (asking first when stdin is a terminal).
    Terminate {
        run: Option<String>,
        /// Do not ask before terminating everything.
        #[arg(long, short)]
        yes: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script, e.g. `epu completions bash >
    /// /etc/bash_completion.d/epu` or `epu completions zsh > ~/.zfunc/_epu`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `epu man > /usr/local/share/man/man1/epu.1`.
    Man,
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
pub(super) enum DaemonAction {
    /// Stop the running daemon and keep its workers: the next start adopts them.
    Stop {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum ClusterCommand {
    /// The cluster's live nodes, each with the domains it owns, and the domains no node owns
    /// at the moment.
    Status {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A domain's events as the cluster's etcd keeps them, from every node that owned it
    /// (the last 1000, for at most 24 hours); `epu events` shows only this node's own log.
    Events {
        domain: String,
        /// Print the result as JSON.
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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a candidate engine beside the domain's live one, on the same snapshots, without
    /// carrying out its decisions; or, with --stop, end the domain's shadows (or --id's).
    Shadow {
        domain: String,
        /// A bundled engine's name or the path of a .wasm component.
        #[arg(required_unless_present = "stop")]
        engine: Option<String>,
        /// The candidate's config, KEY=VALUE (repeatable); without it, the domain's.
        #[arg(
            short,
            long = "config",
            value_name = "KEY=VALUE",
            conflicts_with = "stop"
        )]
        config: Vec<String>,
        /// End the domain's shadows (only the one of --id, if given).
        #[arg(long, conflicts_with = "engine")]
        stop: bool,
        /// The shadow to stop.
        #[arg(long, requires = "stop")]
        id: Option<i64>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// How each shadow's decisions compared with the live engine's: decides seen, how many
    /// differed and how, the counts both would have kept, and the cost per decide.
    ShadowReport {
        domain: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Swap the domain's shadow in as its engine, with its config (the usual validated swap).
    Promote {
        domain: String,
        /// The shadow to promote, when the domain runs several.
        #[arg(long, value_name = "ID")]
        shadow: Option<i64>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The engines a domain has had, by content hash and time.
    History {
        domain: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Swap back to the engine the domain had before its current one.
    Rollback {
        domain: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift a quarantine: the engine decides again on a fresh instance.
    Resume {
        domain: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Push an engine (a .wasm file or a bundled name) to an OCI registry as a wasm artifact,
    /// after checking it is a component of a contract this epu runs. Prints the manifest's
    /// digest, to pin a plan or a swap to (oci://HOST/REPO@sha256:…).
    Push {
        /// A bundled engine's name or the path of a .wasm component.
        engine: String,
        /// Where to: oci://HOST[:PORT]/REPO:TAG.
        reference: String,
        /// The signature to push beside it (default: the .minisig file beside the engine, if
        /// there is one).
        #[arg(long, value_name = "SIG")]
        signature: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pull an engine from an OCI registry, by tag or by digest, into a file. Its content must
    /// be what its manifest names, and a component of a contract this epu runs.
    Pull {
        /// oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:…
        reference: String,
        /// The file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a minisign key pair for signing engines: the secret key at KEY (mode 0600,
    /// unencrypted) and the public key at KEY.pub. Never overwrites.
    Keygen {
        key: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign an engine file with a minisign secret key; the signature goes beside it
    /// (FILE.minisig), where the daemon, `push` and `minisign -V` find it.
    Sign {
        engine: PathBuf,
        /// The secret key (from `epu engine keygen` or `minisign -G -W`).
        #[arg(long)]
        key: PathBuf,
        /// Where to write the signature (default FILE.minisig).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check an engine's signature with a public key: a file's (FILE.minisig beside it), or an
    /// OCI reference's (pushed beside it). Exits non-zero unless it verifies.
    Verify {
        /// The path of a .wasm component, or an OCI reference.
        engine: String,
        /// The public key (KEY.pub).
        #[arg(long)]
        key: PathBuf,
        /// The signature file (default: the one beside the engine).
        #[arg(long, value_name = "SIG")]
        signature: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What an engine says it is: its name, version, summary and config schema (the keys,
    /// their kinds, ranges, defaults and docs), without a daemon.
    Info {
        /// A bundled engine's name or the path of a .wasm component.
        engine: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay a scenario file (a config, then snapshots in and the decisions they must give)
    /// against an engine, without a daemon. Prints what differs; exits non-zero on any.
    Test {
        /// A bundled engine's name or the path of a .wasm component.
        engine: String,
        scenario: PathBuf,
        /// Print the result as JSON.
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
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(super) enum InstanceCommand {
    /// Keep a live instance from destroys while it is healthy: a decision that names it is
    /// carried out without it (an unhealthy protected instance is still replaced).
    Protect {
        domain: String,
        id: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lift an instance's protection: the engine may destroy it again.
    Unprotect {
        domain: String,
        id: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Destroy a live instance now (SIGTERM, the grace, SIGKILL; protected or not). The
    /// engine sees it leave and decides again at once, so a kept count replaces it.
    Destroy {
        domain: String,
        id: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}
