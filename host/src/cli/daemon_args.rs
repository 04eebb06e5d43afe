//! How `epu daemon` and `epu run` serve: their flags, as clap parses them, and the daemon
//! options they make.

use std::path::PathBuf;

/// How `epu daemon` and `epu run` serve.
#[derive(clap::Args)]
pub(super) struct DaemonArgs {
    /// The drop-in directory watched for engines (default: <state dir>/plugins).
    #[arg(long, env = "EPU_PLUGINS_DIR")]
    pub(super) plugins_dir: Option<PathBuf>,
    /// Also serve the API on this TCP address (HOST:PORT; port 0 picks one, written to
    /// <state dir>/listen.addr). Requests need a bearer token: <state dir>/api-token, or
    /// $EPU_API_TOKEN. Workers on other machines (the ec2 driver) send heartbeats here.
    #[arg(long, env = "EPU_LISTEN")]
    pub(super) listen: Option<String>,
    /// Serve /metrics on the TCP listener without a token (for a scraper on a trusted
    /// network). Closed by default.
    #[arg(long, env = "EPU_METRICS_OPEN")]
    pub(super) metrics_open: bool,
    /// The largest engine component accepted, in MiB (default 64; 1 to 1024).
    #[arg(long, env = "EPU_MAX_ENGINE_MIB", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(super) max_engine_mib: Option<u64>,
    /// Require every engine given to the daemon (by a file, an OCI reference, a plan or the
    /// drop-in directory; the bundled ones excepted) to carry a minisign signature that
    /// verifies with this public key: a `.minisig` file beside the file, or the signature
    /// pushed beside it in its registry.
    #[arg(long, env = "EPU_REQUIRE_SIGNED", value_name = "KEY.pub")]
    pub(super) require_signed: Option<PathBuf>,
    /// The most TCP API connections served at once (default 512; 1 to 65536). Fewer when
    /// the fd limit does not leave room for them beside the daemon's own reserve.
    #[arg(long, env = "EPU_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub(super) max_connections: Option<u32>,
    /// The size in MiB past which a worker's log file is rotated, keeping that much of its
    /// end in `<id>.log.1` (default 16; 1 to 1024).
    #[arg(long, env = "EPU_WORKER_LOG_MIB", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(super) worker_log_mib: Option<u64>,
    /// How many ended workers' log files are kept per domain, the newest (default 20; 0 to
    /// 10000).
    #[arg(long, env = "EPU_KEEP_WORKER_LOGS", value_parser = clap::value_parser!(u32).range(0..=10000))]
    pub(super) keep_worker_logs: Option<u32>,
    /// Join a cluster of daemons on etcd at these endpoints (comma-separated URLs). The
    /// cluster's etcd keeps every domain; this node runs its fair share (cargo feature
    /// `cluster`).
    #[arg(
        long,
        env = "EPU_CLUSTER",
        value_delimiter = ',',
        value_name = "ENDPOINT,..."
    )]
    pub(super) cluster: Vec<String>,
    /// This node's name in the cluster, unique among its live nodes (default: the host name).
    #[arg(long, env = "EPU_NODE")]
    pub(super) node: Option<String>,
    /// How long the node's lease outlives its last keep-alive, in seconds (default 5; 2 to
    /// 60): a dead node's domains move after this long, and a node that cannot reach etcd
    /// holds after two thirds of it.
    #[arg(long, env = "EPU_CLUSTER_TTL", value_parser = clap::value_parser!(u64).range(2..=60))]
    pub(super) cluster_ttl: Option<u64>,
    /// The cluster's key prefix in etcd (default /epu/): clusters with other prefixes share
    /// the etcd without seeing each other.
    #[arg(long, env = "EPU_CLUSTER_PREFIX")]
    pub(super) cluster_prefix: Option<String>,
    /// A label of this node, KEY=VALUE (repeatable; EPU_NODE_LABELS is comma-separated):
    /// a domain's placement may require it (at most 32).
    #[arg(
        long = "label",
        env = "EPU_NODE_LABELS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub(super) labels: Vec<String>,
}

impl DaemonArgs {
    pub(super) fn options(self) -> anyhow::Result<crate::daemon::DaemonOptions> {
        #[cfg(feature = "cluster")]
        let cluster = self.cluster_options()?;
        #[cfg(not(feature = "cluster"))]
        anyhow::ensure!(
            self.cluster.is_empty(),
            "this epu was built without the cluster (cargo feature `cluster`)"
        );
        let log_retention = self.log_retention();
        Ok(crate::daemon::DaemonOptions {
            plugins_dir: self.plugins_dir,
            listen: self.listen,
            metrics_open: self.metrics_open,
            max_engine_bytes: self.max_engine_mib.map(|m| m << 20),
            require_signed: self.require_signed,
            max_connections: self.max_connections.map(|n| n as usize),
            log_retention,
            #[cfg(feature = "cluster")]
            cluster,
        })
    }

    fn log_retention(&self) -> crate::provisioner::process::logs::Retention {
        let mut r = crate::provisioner::process::logs::Retention::default();
        if let Some(mib) = self.worker_log_mib {
            r.max_bytes = mib << 20;
        }
        if let Some(n) = self.keep_worker_logs {
            r.keep_ended = n as usize;
        }
        r
    }

    #[cfg(feature = "cluster")]
    fn cluster_options(&self) -> anyhow::Result<Option<crate::cluster::ClusterOptions>> {
        use crate::cluster::{DEFAULT_PREFIX, DEFAULT_TTL};
        let endpoints: Vec<String> = self
            .cluster
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            anyhow::ensure!(
                self.node.is_none()
                    && self.cluster_ttl.is_none()
                    && self.cluster_prefix.is_none()
                    && self.labels.is_empty(),
                "--node, --label, --cluster-ttl and --cluster-prefix need --cluster \
                 ENDPOINT[,ENDPOINT...]"
            );
            return Ok(None);
        }
        let node = match &self.node {
            Some(n) => n.clone(),
            None => crate::daemon::host_name(),
        };
        crate::model::check_domain_name(&node).map_err(|_| {
            anyhow::anyhow!("invalid node name '{node}': use 1-64 letters, digits, '-', '_' or '.'")
        })?;
        let prefix = self.cluster_prefix.clone().unwrap_or(DEFAULT_PREFIX.into());
        anyhow::ensure!(
            prefix.starts_with('/') && prefix.ends_with('/'),
            "--cluster-prefix must start and end with '/', got '{prefix}'"
        );
        Ok(Some(crate::cluster::ClusterOptions {
            endpoints,
            node,
            ttl: self
                .cluster_ttl
                .map_or(DEFAULT_TTL, std::time::Duration::from_secs),
            prefix,
            labels: crate::model::parse_labels("--label", &self.labels)?,
        }))
    }
}
