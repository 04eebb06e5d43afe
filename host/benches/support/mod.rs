//! What the benches share beyond the test kit (`host/tests/kit`, which runs the real `epu`
//! binary): sizes from the environment, and reporting against targets.

// Each bench uses a part of this module.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A count from the env var `var`, or `default`.
pub fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A comma-separated list of counts from the environment, or `default`.
#[allow(dead_code)] // Not every bench takes a list.
pub fn env_counts(var: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(var) {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}: '{n}' is not a count"))
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// A bench's results: each metric with its target, printed as a table with pass/fail and
/// written as JSON to `target/bench/<bench>.json`.
pub struct Report {
    bench: &'static str,
    rows: Vec<Value>,
}

impl Report {
    pub fn new(bench: &'static str) -> Report {
        Report {
            bench,
            rows: Vec::new(),
        }
    }

    /// A metric that must be at most `target` (in the same unit).
    pub fn at_most(&mut self, metric: &str, value: f64, unit: &str, target: f64) {
        let pass = value <= target;
        self.rows
            .push(json!({"metric": metric, "value": value, "unit": unit,
            "target": format!("<= {target} {unit}"), "pass": pass}));
    }

    /// A metric that must be at least `target`.
    pub fn at_least(&mut self, metric: &str, value: f64, unit: &str, target: f64) {
        let pass = value >= target;
        self.rows
            .push(json!({"metric": metric, "value": value, "unit": unit,
            "target": format!(">= {target} {unit}"), "pass": pass}));
    }

    /// A metric measured for the record, with no target.
    pub fn info(&mut self, metric: &str, value: f64, unit: &str) {
        self.rows
            .push(json!({"metric": metric, "value": value, "unit": unit}));
    }

    /// Prints the table and writes the JSON; returns the JSON file's path. A smoke run
    /// (EPU_BENCH_SMOKE set: sizes too small to judge, a debug build) gives no verdicts.
    pub fn finish(mut self) -> PathBuf {
        let smoke = std::env::var_os("EPU_BENCH_SMOKE").is_some();
        if smoke {
            for r in &mut self.rows {
                if let Some(o) = r.as_object_mut() {
                    o.remove("pass");
                }
            }
            println!();
            println!("a smoke run: the sizes are too small to judge, so no verdicts");
        }
        println!();
        println!(
            "{:<52} {:>12} {:<6} {:>16} {:>6}",
            "metric", "value", "unit", "target", ""
        );
        for r in &self.rows {
            let verdict = match r["pass"].as_bool() {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "",
            };
            println!(
                "{:<52} {:>12.2} {:<6} {:>16} {:>6}",
                r["metric"].as_str().unwrap_or_default(),
                r["value"].as_f64().unwrap_or_default(),
                r["unit"].as_str().unwrap_or_default(),
                r["target"].as_str().unwrap_or("-"),
                verdict
            );
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("bench");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.json", self.bench));
        let doc = json!({"bench": self.bench, "smoke": smoke, "results": self.rows});
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        println!("written to {}", path.display());
        path
    }
}
