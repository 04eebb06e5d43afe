//! Range checks of everything a user sets on a domain. Every entry (a plan, `epu domain add`,
//! the API) and every start (a stored domain) goes through [`DomainSpec::check`], so a value
//! that would break the daemon later is refused at once, with its key and range named.

use super::{
    check_domain_name, Deployable, DomainSpec, Ec2Deployable, HealthSettings, ProcessDeployable,
};
use anyhow::{ensure, Result};
use std::path::Path;

/// The most instances one domain may ask for.
pub const MAX_INSTANCES_CAP: u32 = 100_000;
/// The range of `pulse_ms`: at most 100 decides a second, at least one a day.
pub const PULSE_MS_RANGE: (u32, u32) = (10, 86_400_000);
/// The range of the boot and missing timeouts, in seconds (up to 30 days).
pub const HEALTH_TIMEOUT_RANGE: (f64, f64) = (0.1, 2_592_000.0);
/// The range of the zombie timeout: 0 makes any heartbeat after a destroy a zombie's.
pub const ZOMBIE_TIMEOUT_RANGE: (f64, f64) = (0.0, 2_592_000.0);
/// The range of `grace_seconds`, the time between SIGTERM and SIGKILL.
pub const GRACE_RANGE: (f64, f64) = (0.0, 3600.0);
/// The largest EC2 user data, in bytes (EC2's own cap).
pub const MAX_USER_DATA: usize = 16 << 10;
/// The most env vars and args of one deployable.
pub const MAX_ENV_VARS: usize = 256;
pub const MAX_ARGS: usize = 4096;

/// Checks that an integer `key` is within `lo..=hi`; the error names the key and the range.
pub fn within<T: PartialOrd + std::fmt::Display>(key: &str, value: T, lo: T, hi: T) -> Result<()> {
    ensure!(
        value >= lo && value <= hi,
        "{key} must be from {lo} to {hi}, got {value}"
    );
    Ok(())
}

/// Checks that a number `key` is finite and within `lo..=hi`.
pub fn within_f64(key: &str, value: f64, (lo, hi): (f64, f64)) -> Result<()> {
    ensure!(
        value.is_finite() && (lo..=hi).contains(&value),
        "{key} must be a number from {lo} to {hi}, got {value}"
    );
    Ok(())
}

impl DomainSpec {
    /// Checks every value of the domain: [`DomainSpec::check_values`], and that the
    /// deployable's program and working dir exist (unless they hold a plan's `${…}`
    /// reference, filled at boot).
    pub fn check(&self) -> Result<()> {
        self.check_values()?;
        match &self.deployable {
            Deployable::Process(p) => p.check_paths(),
            Deployable::Ec2(_) => Ok(()),
        }
    }

    /// Checks the domain's name, numbers, limits, sensors and deployable settings, without
    /// looking at the file system (as for a stored domain at start).
    pub fn check_values(&self) -> Result<()> {
        check_domain_name(&self.name)?;
        within("max_instances", self.max_instances, 1, MAX_INSTANCES_CAP)?;
        let (lo, hi) = PULSE_MS_RANGE;
        within("pulse_ms", self.pulse_ms, lo, hi)?;
        self.health.check()?;
        self.limits.check()?;
        super::sensor::check_all(&self.sensors)?;
        self.placement.check()?;
        self.budget.check()?;
        if let Some(t) = self.drain_timeout_seconds {
            let (lo, hi) = super::DRAIN_TIMEOUT_RANGE;
            within("drain_timeout_seconds", t, lo, hi)?;
        }
        match &self.deployable {
            Deployable::Process(p) => p.check(),
            Deployable::Ec2(e) => e.check(),
        }
    }
}

impl HealthSettings {
    /// Checks the three timeouts against their ranges.
    pub fn check(&self) -> Result<()> {
        within_f64(
            "health.boot_timeout",
            self.boot_timeout,
            HEALTH_TIMEOUT_RANGE,
        )?;
        within_f64(
            "health.missing_timeout",
            self.missing_timeout,
            HEALTH_TIMEOUT_RANGE,
        )?;
        within_f64(
            "health.zombie_timeout",
            self.zombie_timeout,
            ZOMBIE_TIMEOUT_RANGE,
        )
    }
}

/// Whether a value still holds a plan reference, which is checked once it is filled.
fn templated(s: &str) -> bool {
    s.contains("${")
}

impl ProcessDeployable {
    /// Checks the command's and env's text and the grace.
    pub fn check(&self) -> Result<()> {
        within_f64("grace_seconds", self.grace_seconds, GRACE_RANGE)?;
        ensure!(
            self.command.first().is_some_and(|p| !p.is_empty()),
            "command: the deployable's command must name a program"
        );
        ensure!(
            self.command.len() <= MAX_ARGS,
            "command: at most {MAX_ARGS} arguments, got {}",
            self.command.len()
        );
        ensure!(
            self.command.iter().all(|a| !a.contains('\0')),
            "command: an argument holds a NUL byte"
        );
        ensure!(
            self.env.len() <= MAX_ENV_VARS,
            "env: at most {MAX_ENV_VARS} vars, got {}",
            self.env.len()
        );
        for (k, v) in &self.env {
            check_env_name("env", k)?;
            ensure!(!v.contains('\0'), "env.{k}: the value holds a NUL byte");
        }
        for k in &self.inherit_env {
            check_env_name("inherit_env", k)?;
        }
        Ok(())
    }

    /// Checks that the working dir and the program exist.
    pub fn check_paths(&self) -> Result<()> {
        if let Some(cwd) = &self.cwd {
            let text = cwd.to_string_lossy();
            if !templated(&text) {
                ensure!(cwd.is_dir(), "cwd: {} is not a directory", cwd.display());
            }
        }
        let program = self.command.first().map_or("", String::as_str);
        if !templated(program) {
            self.find_program(program)?;
        }
        Ok(())
    }

    /// Where `program` is: a path (relative to `cwd`) or a name looked up on the worker's
    /// PATH. It must be an executable file.
    fn find_program(&self, program: &str) -> Result<std::path::PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let executable = |p: &Path| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if program.contains('/') {
            let base = self.cwd.clone().unwrap_or_else(|| ".".into());
            let p = base.join(program);
            ensure!(p.exists(), "command: {} does not exist", p.display());
            ensure!(
                executable(&p),
                "command: {} is not an executable file",
                p.display()
            );
            return Ok(p);
        }
        let path = self
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| executable(p))
            .ok_or_else(|| {
                anyhow::anyhow!("command: '{program}' is not an executable on PATH ({path})")
            })
    }
}

/// Checks an env var's name: not empty, and no `=` or NUL.
fn check_env_name(key: &str, name: &str) -> Result<()> {
    ensure!(
        !name.is_empty() && !name.contains(['=', '\0']),
        "{key}: '{}' is not a valid env var name (it must be non-empty, without '=' or NUL)",
        name.escape_debug()
    );
    Ok(())
}

impl Ec2Deployable {
    /// Checks the driver's numbers and the user data's size.
    pub fn check(&self) -> Result<()> {
        ensure!(!self.region.is_empty(), "ec2.region is empty");
        ensure!(!self.image_id.is_empty(), "ec2.image_id is empty");
        ensure!(!self.instance_type.is_empty(), "ec2.instance_type is empty");
        within("ec2.poll_ms", self.poll_ms, 100, 3_600_000)?;
        within_f64("ec2.missing_after_s", self.missing_after_s, (1.0, 86_400.0))?;
        within_f64("ec2.reap_after_s", self.reap_after_s, (0.0, 86_400.0))?;
        within("ec2.max_attempts", self.max_attempts, 1, 100)?;
        within("ec2.call_timeout_ms", self.call_timeout_ms, 100, 600_000)?;
        ensure!(
            self.user_data.len() <= MAX_USER_DATA,
            "ec2.user_data is {} bytes, over EC2's cap of {MAX_USER_DATA}",
            self.user_data.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EngineLimits, DEFAULT_MAX_INSTANCES, DEFAULT_PULSE_MS};

    fn spec() -> DomainSpec {
        DomainSpec {
            name: "d".into(),
            engine: "npreserving".into(),
            config: Default::default(),
            deployable: Deployable::Process(ProcessDeployable {
                command: vec!["/bin/sleep".into(), "1".into()],
                env: Default::default(),
                cwd: None,
                grace_seconds: 5.0,
                inherit_env: super::super::default_inherit_env(),
            }),
            health: Default::default(),
            max_instances: DEFAULT_MAX_INSTANCES,
            pulse_ms: DEFAULT_PULSE_MS,
            run: None,
            limits: EngineLimits::default(),
            sensors: vec![],
            dry_run: false,
            placement: Default::default(),
            budget: Default::default(),
            drain_timeout_seconds: None,
        }
    }

    fn process(s: &mut DomainSpec) -> &mut ProcessDeployable {
        match &mut s.deployable {
            Deployable::Process(p) => p,
            Deployable::Ec2(_) => unreachable!(),
        }
    }

    #[test]
    fn every_bad_value_is_refused_with_its_key() {
        assert!(spec().check().is_ok());
        type Change = Box<dyn Fn(&mut DomainSpec)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "grace_seconds",
                Box::new(|s| process(s).grace_seconds = 1e300),
            ),
            (
                "grace_seconds",
                Box::new(|s| process(s).grace_seconds = f64::NAN),
            ),
            (
                "grace_seconds",
                Box::new(|s| process(s).grace_seconds = -1.0),
            ),
            ("pulse_ms", Box::new(|s| s.pulse_ms = 0)),
            ("max_instances", Box::new(|s| s.max_instances = 0)),
            (
                "health.boot_timeout",
                Box::new(|s| s.health.boot_timeout = f64::INFINITY),
            ),
            (
                "health.zombie_timeout",
                Box::new(|s| s.health.zombie_timeout = -1.0),
            ),
            (
                "env",
                Box::new(|s| {
                    process(s).env.insert("A=B".into(), "x".into());
                }),
            ),
            (
                "env",
                Box::new(|s| {
                    process(s).env.insert("A\0".into(), "x".into());
                }),
            ),
            (
                "env.A",
                Box::new(|s| {
                    process(s).env.insert("A".into(), "x\0".into());
                }),
            ),
            (
                "command",
                Box::new(|s| process(s).command = vec!["/no/such/program".into()]),
            ),
            (
                "command",
                Box::new(|s| process(s).command = vec!["/tmp".into()]),
            ),
            (
                "command",
                Box::new(|s| process(s).command = vec!["no-such-program-here".into()]),
            ),
            (
                "cwd",
                Box::new(|s| process(s).cwd = Some("/no/such/dir".into())),
            ),
            ("cwd", Box::new(|s| process(s).cwd = Some("/bin/sh".into()))),
            ("limits.timeout_ms", Box::new(|s| s.limits.timeout_ms = 0)),
        ];
        for (key, change) in cases {
            let mut s = spec();
            change(&mut s);
            let err = s.check().expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn templated_paths_wait_for_their_values() {
        let mut s = spec();
        process(&mut s).command = vec!["${svc.bin}".into()];
        process(&mut s).cwd = Some("${svc.dir}".into());
        assert!(s.check().is_ok());
    }
}
