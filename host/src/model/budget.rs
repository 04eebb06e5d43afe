//! A domain's disruption budget: how many launches and destroys the daemon carries out in any
//! sliding window, and the share of healthy instances destroys may never go below. The daemon
//! enforces it whatever the engine decides.

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The window of a budget when it gives none, in seconds.
pub const DEFAULT_WINDOW_SECONDS: f64 = 60.0;
/// The range of `window_seconds`.
pub const WINDOW_RANGE: (f64, f64) = (1.0, 86_400.0);

/// A domain's budget. Every part is optional; an empty budget holds nothing back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The most launches in any window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_launches: Option<u32>,
    /// The most destroys in any window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_destroys: Option<u32>,
    /// The sliding window of `max_launches` and `max_destroys`, and the span over which
    /// `min_healthy_percent` takes the engine's highest target (default 60 s; 1 to 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
    /// Destroys never take the healthy running instances below this percentage of the
    /// engine's highest target within the window (0 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_percent: Option<u32>,
}

impl Budget {
    pub fn is_empty(&self) -> bool {
        *self == Budget::default()
    }

    /// The window, in seconds.
    pub fn window(&self) -> f64 {
        self.window_seconds.unwrap_or(DEFAULT_WINDOW_SECONDS)
    }

    /// Checks the numbers against their ranges.
    pub fn check(&self) -> Result<()> {
        if let Some(w) = self.window_seconds {
            super::within_f64("budget.window_seconds", w, WINDOW_RANGE)?;
        }
        if let Some(p) = self.min_healthy_percent {
            super::within("budget.min_healthy_percent", p, 0, 100)?;
        }
        for (key, v) in [
            ("budget.max_launches", self.max_launches),
            ("budget.max_destroys", self.max_destroys),
        ] {
            if let Some(v) = v {
                super::within(key, v, 0, super::MAX_INSTANCES_CAP)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_checks_its_ranges_by_key() {
        assert!(Budget::default().check().is_ok());
        let bad = Budget {
            min_healthy_percent: Some(101),
            ..Default::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("budget.min_healthy_percent"), "{e}");
        let bad = Budget {
            window_seconds: Some(0.0),
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("window"));
        let json = r#"{"max_destroys": 2, "window_seconds": 30, "min_healthy_percent": 50}"#;
        let b: Budget = serde_json::from_str(json).unwrap();
        assert_eq!((b.max_destroys, b.window()), (Some(2), 30.0));
        assert!(serde_json::from_str::<Budget>(r#"{"max_destroy": 2}"#).is_err());
    }
}
