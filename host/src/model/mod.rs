//! The words of the domain model shared by every module: instance states, health, domain specs.

mod budget;
mod check;
mod deployable;
mod placement;
mod refresh;
pub mod sensor;
pub mod shadow;

pub use budget::Budget;
pub use check::{within, within_f64, GRACE_RANGE, MAX_INSTANCES_CAP, PULSE_MS_RANGE};
pub use deployable::{
    default_grace, default_inherit_env, Deployable, Ec2Deployable, ProcessDeployable,
};
pub use placement::{check_labels, parse_labels, Placement, MAX_PLACEMENT_ITEMS};
pub use refresh::{Refresh, RefreshRequest, MAX_REFRESH_FAILURES};
use serde::{Deserialize, Serialize};

/// Ordered instance states. They only move forward: an update to an earlier state is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Requesting,
    Requested,
    ErrorRetrying,
    Pending,
    Started,
    Running,
    RunningFailed,
    Terminating,
    Terminated,
    Failed,
    Rejected,
}

impl InstanceState {
    pub const ALL: [InstanceState; 11] = [
        Self::Requesting,
        Self::Requested,
        Self::ErrorRetrying,
        Self::Pending,
        Self::Started,
        Self::Running,
        Self::RunningFailed,
        Self::Terminating,
        Self::Terminated,
        Self::Failed,
        Self::Rejected,
    ];

    /// The kebab-case name used in the store, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requesting => "requesting",
            Self::Requested => "requested",
            Self::ErrorRetrying => "error-retrying",
            Self::Pending => "pending",
            Self::Started => "started",
            Self::Running => "running",
            Self::RunningFailed => "running-failed",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Terminated, failed or rejected: the instance is gone for good.
    pub fn is_final(self) -> bool {
        self >= Self::Terminated
    }
}

/// Health as judged from heartbeats and their timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Unknown,
    Ok,
    ProcessError,
    MonitorError,
    Missing,
    Zombie,
    OutOfContact,
}

impl Health {
    pub const ALL: [Health; 7] = [
        Self::Unknown,
        Self::Ok,
        Self::ProcessError,
        Self::MonitorError,
        Self::Missing,
        Self::Zombie,
        Self::OutOfContact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Ok => "ok",
            Self::ProcessError => "process-error",
            Self::MonitorError => "monitor-error",
            Self::Missing => "missing",
            Self::Zombie => "zombie",
            Self::OutOfContact => "out-of-contact",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// A health other than ok or unknown: the monitor or the worker saw something wrong.
    pub fn is_bad(self) -> bool {
        !matches!(self, Self::Ok | Self::Unknown)
    }
}

/// Unhealthy, by the original EPU's rule that the engines apply too: a zombie at any state;
/// otherwise, while the instance counts (below `terminating`), running-failed or a bad health.
/// The daemon and the engines judge an instance alike with it.
pub fn is_unhealthy(state: InstanceState, health: Health) -> bool {
    health == Health::Zombie
        || (state < InstanceState::Terminating
            && (state == InstanceState::RunningFailed || health.is_bad()))
}

/// Heartbeat timeouts, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// A started instance with no heartbeat after this long is missing.
    pub boot_timeout: f64,
    /// An instance whose last heartbeat is older than this is missing.
    pub missing_timeout: f64,
    /// A heartbeat this long after a destroy marks the instance a zombie.
    pub zombie_timeout: f64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            boot_timeout: 300.0,
            missing_timeout: 120.0,
            zombie_timeout: 120.0,
        }
    }
}

/// What a domain does while its engine is quarantined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Launch and destroy nothing.
    #[default]
    Hold,
    /// Keep replacing failed instances to hold the last healthy count.
    Preserve,
}

/// The sandbox limits of a domain's engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineLimits {
    /// CPU-time budget of one engine call, in milliseconds.
    pub timeout_ms: u32,
    /// Wall-clock backstop of one engine call, in milliseconds (at least `timeout_ms`).
    pub wall_timeout_ms: u32,
    /// Cap on everything an engine instance holds (all its memories and tables), in MiB.
    pub memory_mib: u32,
    /// The largest decision accepted (memo, launches, vars and handles), in bytes.
    pub max_decision_bytes: u32,
    /// Faults within the last `fault_window` engine calls after which the engine is
    /// quarantined.
    pub quarantine_after: u32,
    /// How many of the latest engine calls the fault count looks at; by default the larger
    /// of 10 and `quarantine_after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_window: Option<u32>,
    pub fallback: Fallback,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            timeout_ms: 50,
            wall_timeout_ms: 1000,
            memory_mib: 64,
            max_decision_bytes: 1 << 20,
            quarantine_after: 3,
            fault_window: None,
            fallback: Fallback::Hold,
        }
    }
}

impl EngineLimits {
    /// The calls the fault count looks at.
    pub fn window(&self) -> u32 {
        self.fault_window
            .unwrap_or_else(|| self.quarantine_after.max(10))
    }

    /// Checks every limit against its range; the error names the key and the range.
    pub fn check(&self) -> anyhow::Result<()> {
        within("limits.timeout_ms", self.timeout_ms, 1, 60_000)?;
        within(
            "limits.wall_timeout_ms",
            self.wall_timeout_ms,
            self.timeout_ms,
            600_000,
        )?;
        within("limits.memory_mib", self.memory_mib, 1, 4096)?;
        within(
            "limits.max_decision_bytes",
            self.max_decision_bytes,
            1024,
            64 << 20,
        )?;
        within("limits.quarantine_after", self.quarantine_after, 1, 100_000)?;
        within(
            "limits.fault_window",
            self.window(),
            self.quarantine_after,
            100_000,
        )
    }
}

/// Everything needed to create a domain, as given by a plan or `epu domain add`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    pub name: String,
    /// A bundled engine's name, or the path of a `.wasm` component.
    pub engine: String,
    /// The engine config: a JSON object.
    pub config: serde_json::Map<String, serde_json::Value>,
    pub deployable: Deployable,
    pub health: HealthSettings,
    pub max_instances: u32,
    /// Milliseconds between decides when nothing happens.
    pub pulse_ms: u32,
    /// The run (booted plan) this domain belongs to, if any.
    pub run: Option<String>,
    #[serde(default)]
    pub limits: EngineLimits,
    /// The sensors whose readings the engine sees.
    #[serde(default)]
    pub sensors: Vec<sensor::SensorSpec>,
    /// A dry run: the engine decides on real inputs and its decisions are recorded, but
    /// nothing is launched or destroyed.
    #[serde(default)]
    pub dry_run: bool,
    /// Where in a cluster the domain may run (refused outside a cluster).
    #[serde(default, skip_serializing_if = "Placement::is_empty")]
    pub placement: Placement,
    /// How much disruption the daemon lets the engine cause ([`Budget`]).
    #[serde(default, skip_serializing_if = "Budget::is_empty")]
    pub budget: Budget,
    /// How long a destroyed, healthy instance may drain (finish its work) before it is
    /// stopped, in seconds; none stops it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout_seconds: Option<u32>,
}

pub const DEFAULT_MAX_INSTANCES: u32 = 1000;
/// The range of `drain_timeout_seconds`.
pub const DRAIN_TIMEOUT_RANGE: (u32, u32) = (1, 86_400);
pub const DEFAULT_PULSE_MS: u32 = 5000;

/// Checks a domain name: it is used in paths, URLs and env vars.
pub fn check_domain_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    anyhow::ensure!(
        ok,
        "invalid domain name '{name}': use 1-64 letters, digits, '-', '_' or '.'"
    );
    Ok(())
}

/// Seconds as a duration, for a value that may be out of range (a time read back from the
/// store, say): negative and NaN are 0, and anything past [`MAX_SECS`] (or infinite) is
/// [`MAX_SECS`]. Never a panic, unlike `Duration::from_secs_f64`.
pub fn secs(value: f64) -> std::time::Duration {
    let v = if value.is_nan() { 0.0 } else { value };
    std::time::Duration::from_secs_f64(v.clamp(0.0, MAX_SECS))
}

/// The largest duration [`secs`] gives: about 317 years, which a `SystemTime` from the epoch
/// and an `Instant` from now both hold.
pub const MAX_SECS: f64 = 1e10;

/// Seconds since the Unix epoch, from the wall clock.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_ordered_and_round_trip() {
        for w in InstanceState::ALL.windows(2) {
            assert!(w[0] < w[1]);
        }
        for s in InstanceState::ALL {
            assert_eq!(InstanceState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for h in Health::ALL {
            assert_eq!(Health::parse(h.as_str()), Some(h));
        }
    }

    #[test]
    fn seconds_never_panic() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300, -5.0] {
            let _ = std::time::UNIX_EPOCH + secs(v);
        }
        assert_eq!(secs(1.5).as_millis(), 1500);
    }

    #[test]
    fn domain_names_are_checked() {
        assert!(check_domain_name("workers-1").is_ok());
        for bad in ["", "a/b", "../x", ".hidden", "sp ace"] {
            assert!(check_domain_name(bad).is_err(), "{bad}");
        }
    }
}
