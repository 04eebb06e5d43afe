//! A rolling refresh: the instances of a domain that run another version of its deployable
//! are replaced, make-before-break, by instances of the current one.

use serde::{Deserialize, Serialize};

/// The most replacements of one refresh that may fail (exit, or never run healthy) before the
/// refresh stops and waits for the operator.
pub const MAX_REFRESH_FAILURES: u32 = 3;

/// A refresh under way, as the store keeps it (the domain's `refresh` column).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    /// The deployable version that was current when the refresh began (what `--rollback`
    /// goes back to, for a refresh that is not a rollback itself).
    pub from_version: i64,
    /// The version the refresh brings every instance to: the current one.
    pub to_version: i64,
    /// The most replacements under way at once (1 to 100000).
    pub batch: u32,
    /// The healthy instances never fall below this share of the domain's instances when an
    /// old one is retired (0 to 100).
    pub min_healthy_percent: u32,
    /// When it began.
    pub started: f64,
    /// Whether it is a rollback.
    #[serde(default)]
    pub rollback: bool,
    /// Why it stopped, if replacements failed: it launches nothing more until a new refresh
    /// or a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// What `epu domain refresh` asks for.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// Default 1.
    #[serde(default)]
    pub batch: Option<u32>,
    /// Default 100.
    #[serde(default)]
    pub min_healthy_percent: Option<u32>,
    /// Go back to the version before the current one.
    #[serde(default)]
    pub rollback: bool,
}

impl RefreshRequest {
    /// The batch and min-healthy share, checked by key.
    pub fn checked(&self) -> anyhow::Result<(u32, u32)> {
        let batch = self.batch.unwrap_or(1);
        super::within("batch", batch, 1, super::MAX_INSTANCES_CAP)?;
        let min_healthy = self.min_healthy_percent.unwrap_or(100);
        super::within("min_healthy_percent", min_healthy, 0, 100)?;
        Ok((batch, min_healthy))
    }
}
