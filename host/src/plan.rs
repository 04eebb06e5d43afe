//! Launch plans: a directory under `launch-plans/` with a `plan.toml` that declares domains.
//! A plan is checked whole (syntax, unknown keys, types, engine and command files) before
//! anything starts.

use crate::engine::bundled;
use crate::model::{
    check_domain_name, DomainSpec, EngineLimits, HealthSettings, ProcessDeployable,
    DEFAULT_MAX_INSTANCES, DEFAULT_PULSE_MS,
};
use crate::sensors::{self, SensorSpec};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    name: String,
    #[serde(default, rename = "domain")]
    domains: Vec<PlanDomain>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanDomain {
    name: String,
    engine: String,
    #[serde(default)]
    config: Map<String, Value>,
    process: ProcessDeployable,
    #[serde(default)]
    health: HealthSettings,
    #[serde(default = "default_max")]
    max_instances: u32,
    #[serde(default = "default_pulse")]
    pulse_ms: u32,
    #[serde(default)]
    limits: EngineLimits,
    #[serde(default, rename = "sensor")]
    sensors: Vec<SensorSpec>,
}

fn default_max() -> u32 {
    DEFAULT_MAX_INSTANCES
}

fn default_pulse() -> u32 {
    DEFAULT_PULSE_MS
}

/// A checked plan, with every path made absolute.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub file: PathBuf,
    pub domains: Vec<DomainSpec>,
}

impl Plan {
    /// The plan's domains that still have to be created, given the domains that exist as
    /// `(name, run)`. A domain this plan created already is left as it is (booting twice, or
    /// again after a crash, carries on); a name taken by anything else is an error.
    pub fn domains_to_add<'a>(
        &'a self,
        existing: &[(String, Option<String>)],
    ) -> Result<Vec<&'a DomainSpec>> {
        let mut out = Vec::new();
        for d in &self.domains {
            match existing.iter().find(|(name, _)| *name == d.name) {
                None => out.push(d),
                Some((_, Some(run))) if *run == self.name => {}
                Some(_) => bail!(
                    "domain '{}' already exists and does not belong to plan '{}'",
                    d.name,
                    self.name
                ),
            }
        }
        Ok(out)
    }
}

/// Loads a plan from a directory holding `plan.toml`, or from the file itself.
pub fn load(path: &Path) -> Result<Plan> {
    let file = if path.is_dir() {
        path.join("plan.toml")
    } else {
        path.to_path_buf()
    };
    let file = file
        .canonicalize()
        .with_context(|| format!("no launch plan at {}", file.display()))?;
    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let parsed: PlanFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let at = |what: String| format!("{}: {what}", file.display());

    let mut names = HashSet::new();
    let mut domains = Vec::new();
    for d in parsed.domains {
        let ctx = |key: &str| at(format!("domain '{}': {key}", d.name));
        check_domain_name(&d.name).map_err(|e| anyhow::anyhow!(at(e.to_string())))?;
        if !names.insert(d.name.clone()) {
            bail!(at(format!("domain '{}' is declared twice", d.name)));
        }
        let engine = if bundled::get(&d.engine).is_some() {
            d.engine.clone()
        } else {
            let p = dir.join(&d.engine);
            if !p.is_file() {
                let known: Vec<_> = bundled::names().collect();
                bail!(ctx(&format!(
                    "engine: '{}' is not a bundled engine ({}) and {} does not exist",
                    d.engine,
                    known.join(", "),
                    p.display()
                )));
            }
            p.display().to_string()
        };
        let mut process = d.process.clone();
        resolve_command(&dir, &mut process.command, &mut process.cwd)
            .map_err(|e| anyhow::anyhow!(ctx(&format!("process.command: {e}"))))?;
        let mut sensors = d.sensors;
        for s in &mut sensors {
            if let SensorSpec::Command { command, cwd, .. } = s {
                resolve_command(&dir, command, cwd)
                    .map_err(|e| anyhow::anyhow!(ctx(&format!("sensor.command: {e}"))))?;
            }
        }
        sensors::check_all(&sensors).map_err(|e| anyhow::anyhow!(ctx(&e.to_string())))?;
        domains.push(DomainSpec {
            name: d.name.clone(),
            engine,
            config: d.config,
            deployable: process,
            health: d.health,
            max_instances: d.max_instances,
            pulse_ms: d.pulse_ms,
            run: Some(parsed.name.clone()),
            limits: d.limits,
            sensors,
        });
    }
    if domains.is_empty() {
        bail!(at("the plan declares no [[domain]]".into()));
    }
    Ok(Plan {
        name: parsed.name,
        file,
        domains,
    })
}

/// Makes a command's program (when it is a path) and working dir absolute, relative to the
/// plan's directory, and checks that the program exists.
fn resolve_command(dir: &Path, command: &mut [String], cwd: &mut Option<PathBuf>) -> Result<()> {
    let Some(program) = command.first_mut() else {
        bail!("must name a program");
    };
    if program.contains('/') {
        let p = dir.join(&*program);
        if !p.is_file() {
            bail!("{} does not exist", p.display());
        }
        *program = p.display().to_string();
    }
    *cwd = Some(match cwd {
        Some(c) => dir.join(c),
        None => dir.to_path_buf(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let f = dir.join("plan.toml");
        std::fs::write(&f, text).unwrap();
        std::fs::write(dir.join("w.sh"), "#!/bin/sh\n").unwrap();
        f
    }

    const GOOD: &str = r#"
name = "p"
[[domain]]
name = "workers"
engine = "npreserving"
config = { preserve_n = 2 }
process = { command = ["./w.sh", "x"] }
"#;

    #[test]
    fn a_good_plan_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), GOOD);
        let plan = load(dir.path()).unwrap();
        let d = &plan.domains[0];
        assert_eq!(d.config["preserve_n"], 2);
        assert!(d.deployable.command[0].starts_with('/'));
        assert!(d.deployable.command[0].ends_with("/w.sh"));
        assert_eq!(d.run.as_deref(), Some("p"));
        assert_eq!(d.max_instances, DEFAULT_MAX_INSTANCES);
    }

    #[test]
    fn limits_are_read_from_the_plan_with_defaults_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{GOOD}[domain.limits]\ntimeout_ms = 20\nfallback = \"preserve\"\n");
        write(dir.path(), &text);
        let limits = &load(dir.path()).unwrap().domains[0].limits;
        assert_eq!(limits.timeout_ms, 20);
        assert_eq!(limits.fallback, crate::model::Fallback::Preserve);
        assert_eq!(limits.memory_mib, EngineLimits::default().memory_mib);
        write(
            dir.path(),
            &format!("{GOOD}[domain.limits]\nfallback = \"retry\"\n"),
        );
        let err = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(err.contains("fallback") || err.contains("retry"), "{err}");
    }

    #[test]
    fn sensors_are_read_with_command_paths_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{GOOD}[[domain.sensor]]\nkind = \"amqp\"\nname = \"queue-length\"\n\
             url = \"amqp://127.0.0.1:5672/%2f\"\nqueue = \"work\"\ninterval_ms = 500\n\
             [[domain.sensor]]\nkind = \"command\"\nname = \"depth\"\ncommand = [\"./w.sh\"]\n"
        );
        write(dir.path(), &text);
        let sensors = &load(dir.path()).unwrap().domains[0].sensors;
        assert_eq!(sensors.len(), 2);
        assert_eq!(sensors[0].name(), "queue-length");
        let SensorSpec::Command { command, cwd, .. } = &sensors[1] else {
            panic!("not a command sensor: {:?}", sensors[1]);
        };
        assert!(command[0].starts_with('/') && command[0].ends_with("/w.sh"));
        assert!(cwd.is_some());
    }

    #[test]
    fn a_plan_booted_again_adds_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), GOOD);
        let plan = load(dir.path()).unwrap();
        assert_eq!(plan.domains_to_add(&[]).unwrap().len(), 1);
        let mine = [("workers".to_string(), Some("p".to_string()))];
        assert!(plan.domains_to_add(&mine).unwrap().is_empty());
        let foreign = [("workers".to_string(), None)];
        let err = plan.domains_to_add(&foreign).unwrap_err().to_string();
        assert!(err.contains("does not belong to plan 'p'"), "{err}");
    }

    #[test]
    fn bad_plans_are_rejected_with_the_file_and_the_key() {
        let cases = [
            ("name = \"p\"\n[[domain]\n", "plan.toml"),
            (
                &GOOD.replace("engine = \"npreserving\"", "engine = \"nope.wasm\""),
                "nope.wasm",
            ),
            (&GOOD.replace("./w.sh", "./missing.sh"), "missing.sh"),
            (
                &GOOD.replace("name = \"workers\"", "name = \"workers\"\nbogus = 1"),
                "bogus",
            ),
            (
                &GOOD.replace("[[domain]]", "[[domain]]\nmax_instances = \"ten\""),
                "max_instances",
            ),
            ("name = \"p\"\n", "no [[domain]]"),
            (
                &format!("{GOOD}[[domain.sensor]]\nkind = \"amqp\"\nname = \"q\"\nurl = \"http://x\"\nqueue = \"w\"\n"),
                "bad AMQP url",
            ),
            (
                &format!("{GOOD}[[domain.sensor]]\nkind = \"command\"\nname = \"c\"\ncommand = [\"./nope.sh\"]\n"),
                "nope.sh",
            ),
        ];
        for (text, needle) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), text);
            let err = format!("{:#}", load(dir.path()).unwrap_err());
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
            assert!(err.contains("plan.toml"), "no file named in: {err}");
        }
    }
}
