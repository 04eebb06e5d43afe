//! Launch plans: a directory under `launch-plans/` with a `plan.toml`. A plan has ordered
//! bootlevels of services (started in parallel within a level, each level ready before the next
//! starts) and the domains that are created once the last level is ready. Services publish
//! attributes that later services and domains use as `${service.attr}`.
//!
//! A plan is checked whole (syntax, unknown keys, types, files, references and their order)
//! before anything starts; an error names the file, the line and the key.

pub mod template;

use crate::engine::bundled;
use crate::model::sensor::SensorSpec;
use crate::model::{
    check_domain_name, within, within_f64, Deployable, DomainSpec, Ec2Deployable, EngineLimits,
    HealthSettings, ProcessDeployable, DEFAULT_MAX_INSTANCES, DEFAULT_PULSE_MS, GRACE_RANGE,
};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use template::Ref;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    name: String,
    #[serde(default, rename = "level")]
    levels: Vec<PlanLevel>,
    #[serde(default, rename = "domain")]
    domains: Vec<Spanned<PlanDomain>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanLevel {
    #[serde(default, rename = "service")]
    services: Vec<Spanned<ServiceSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanDomain {
    name: String,
    engine: String,
    #[serde(default)]
    config: Map<String, Value>,
    /// The deployable: exactly one of these, by driver.
    #[serde(default)]
    process: Option<ProcessDeployable>,
    #[serde(default)]
    ec2: Option<Ec2Deployable>,
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
    #[serde(default)]
    dry_run: bool,
}

fn default_max() -> u32 {
    DEFAULT_MAX_INSTANCES
}

fn default_pulse() -> u32 {
    DEFAULT_PULSE_MS
}

/// A base service of a bootlevel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// The program that starts the service: it may keep running (the service's process) or
    /// exit 0 once the service is up.
    pub start: Vec<String>,
    /// The check that the service is ready; without one, it is ready once it has published
    /// every attribute it declares.
    #[serde(default)]
    pub ready: Option<Readiness>,
    /// The program that stops the service, run before its start process is signalled.
    #[serde(default)]
    pub terminate: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Env vars for the service's programs, from `${service.attr}` of earlier levels.
    #[serde(default)]
    pub deps: BTreeMap<String, String>,
    /// The attributes the service publishes: keys of the JSON object it writes to
    /// `$EPU_SERVICE_OUTPUT`.
    #[serde(default)]
    pub publishes: Vec<String>,
    /// The working dir, relative to the plan's directory (default: the plan's directory).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when the service's process is stopped.
    #[serde(default = "crate::model::default_grace")]
    pub grace_seconds: f64,
    /// The daemon's env vars the service's programs get (see the process deployable's).
    #[serde(default = "crate::model::default_inherit_env")]
    pub inherit_env: Vec<String>,
}

/// How a service's readiness is checked: `command` must exit 0 within `timeout_seconds`; it
/// is tried up to `retries` times, `interval_ms` apart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    pub command: Vec<String>,
    #[serde(default = "default_ready_timeout")]
    pub timeout_seconds: f64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
}

fn default_ready_timeout() -> f64 {
    10.0
}

fn default_retries() -> u32 {
    60
}

fn default_interval() -> u64 {
    500
}

/// A checked plan, with every path made absolute. References are still unfilled: they are
/// filled as the run boots.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub file: PathBuf,
    /// The bootlevels in order, each with its services.
    pub levels: Vec<Vec<ServiceSpec>>,
    pub domains: Vec<DomainSpec>,
}

impl Plan {
    /// The plan's domains that still have to be created, given the domains that exist as
    /// `(name, run)`. A domain this run created already is left as it is (booting twice, or
    /// again after a crash, carries on); a name taken by anything else is an error.
    pub fn domains_to_add<'a>(
        &'a self,
        run: &str,
        existing: &[(String, Option<String>)],
    ) -> Result<Vec<&'a DomainSpec>> {
        let mut out = Vec::new();
        for d in &self.domains {
            match existing.iter().find(|(name, _)| *name == d.name) {
                None => out.push(d),
                Some((_, Some(owner))) if owner == run => {}
                Some(_) => bail!(
                    "domain '{}' already exists and does not belong to run '{run}'",
                    d.name
                ),
            }
        }
        Ok(out)
    }

    /// The plan's domains as run `run` creates them.
    pub fn with_run(mut self, run: &str) -> Plan {
        for d in &mut self.domains {
            d.run = Some(run.to_string());
        }
        self
    }

    /// How many services the plan has.
    pub fn service_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }
}

/// Where errors point: the plan file and its text.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    /// An error at the line of `needle` in the table that starts at `span` (up to the next
    /// `[[` header), or at the table's start.
    fn err(&self, span: &std::ops::Range<usize>, needle: &str, what: String) -> anyhow::Error {
        let start = span.start.min(self.text.len());
        let rest = &self.text[start..];
        let end = rest[1.min(rest.len())..]
            .find("\n[[")
            .map_or(rest.len(), |i| i + 1);
        let at = rest[..end]
            .find(needle)
            .filter(|_| !needle.is_empty())
            .map_or(start, |i| start + i);
        let line = self.text[..at].matches('\n').count() + 1;
        anyhow::anyhow!("{}: line {line}: {what}", self.file.display())
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
    let src = Source {
        file: &file,
        text: &text,
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    refuse_non_finite(&src, &table)?;
    let parsed: PlanFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    check_name(&parsed.name)
        .map_err(|e| src.err(&(0..text.len()), "name", format!("name: {e}")))?;
    if parsed.levels.is_empty() && parsed.domains.is_empty() {
        bail!(
            "{}: the plan declares no [[level]] and no [[domain]]",
            file.display()
        );
    }

    // Services: names, files, and where each one boots.
    let mut level_of: HashMap<String, (usize, Vec<String>)> = HashMap::new();
    let mut levels = Vec::new();
    for (i, level) in parsed.levels.iter().enumerate() {
        if level.services.is_empty() {
            bail!(
                "{}: level {} has no [[level.service]]",
                file.display(),
                i + 1
            );
        }
        let mut services = Vec::new();
        for spanned in &level.services {
            let span = spanned.span();
            let mut s = spanned.get_ref().clone();
            let name = s.name.clone();
            let at = |needle: &str, what: String| {
                src.err(
                    &span,
                    needle,
                    format!("level {} service '{name}': {what}", i + 1),
                )
            };
            check_name(&s.name).map_err(|e| at("name", format!("name: {e}")))?;
            if level_of.contains_key(&s.name) {
                return Err(at("name", "name: the service is declared twice".into()));
            }
            check_service(&dir, &mut s).map_err(|e| {
                let needle = e.needle.clone();
                at(&needle, e.what)
            })?;
            level_of.insert(s.name.clone(), (i, s.publishes.clone()));
            services.push(s);
        }
        levels.push(services);
    }

    // References between services: to declared attributes of earlier levels only.
    let graph = service_graph(&parsed.levels)?;
    if let Some(cycle) = find_cycle(&graph) {
        let first = &cycle[0];
        let spanned = parsed
            .levels
            .iter()
            .flat_map(|l| &l.services)
            .find(|s| &s.get_ref().name == first)
            .expect("a service of the cycle");
        return Err(src.err(
            &spanned.span(),
            "${",
            format!(
                "service '{first}': deps form a cycle: {}",
                cycle.join(" -> ")
            ),
        ));
    }
    for (i, level) in parsed.levels.iter().enumerate() {
        for spanned in &level.services {
            let s = spanned.get_ref();
            let value = serde_json::to_value(s)?;
            let refs = template::refs_in(&value).map_err(|e| {
                src.err(
                    &spanned.span(),
                    "${",
                    format!("level {} service '{}': {e}", i + 1, s.name),
                )
            })?;
            for (key, r) in refs {
                check_ref(&r, Some(i), &level_of).map_err(|e| {
                    src.err(
                        &spanned.span(),
                        &r.to_string(),
                        format!("level {} service '{}': {key}: {e}", i + 1, s.name),
                    )
                })?;
            }
        }
    }

    // Domains.
    let mut names = HashSet::new();
    let mut domains = Vec::new();
    for spanned in parsed.domains {
        let span = spanned.span();
        let d = spanned.into_inner();
        let at = |needle: &str, what: String| {
            src.err(&span, needle, format!("domain '{}': {what}", d.name))
        };
        check_domain_name(&d.name).map_err(|e| at("name", e.to_string()))?;
        if !names.insert(d.name.clone()) {
            return Err(at("name", "the domain is declared twice".into()));
        }
        let engine = if bundled::get(&d.engine).is_some() {
            d.engine.clone()
        } else {
            let p = dir.join(&d.engine);
            if !p.is_file() {
                let known: Vec<_> = bundled::names().collect();
                return Err(at(
                    &d.engine,
                    format!(
                        "engine: '{}' is not a bundled engine ({}) and {} does not exist",
                        d.engine,
                        known.join(", "),
                        p.display()
                    ),
                ));
            }
            p.display().to_string()
        };
        let deployable = match (d.process, d.ec2) {
            (Some(mut process), None) => {
                resolve_command(&dir, &mut process.command, &mut process.cwd)
                    .map_err(|e| at(&process.command.join(" "), format!("process.command: {e}")))?;
                Deployable::Process(process)
            }
            (None, Some(ec2)) => Deployable::Ec2(ec2),
            _ => {
                return Err(at(
                    "name",
                    "needs exactly one deployable: [domain.process] or [domain.ec2]".into(),
                ))
            }
        };
        let mut sensors = d.sensors;
        for s in &mut sensors {
            if let SensorSpec::Command { command, cwd, .. } = s {
                resolve_command(&dir, command, cwd)
                    .map_err(|e| at("sensor", format!("sensor.command: {e}")))?;
            }
        }
        let spec = DomainSpec {
            name: d.name.clone(),
            engine,
            config: d.config,
            deployable,
            health: d.health,
            max_instances: d.max_instances,
            pulse_ms: d.pulse_ms,
            run: Some(parsed.name.clone()),
            limits: d.limits,
            sensors,
            dry_run: d.dry_run,
        };
        // Sensors are checked once their references are filled, at boot.
        let refs = template::refs_in(&serde_json::to_value(&spec)?)
            .map_err(|e| at("${", e.to_string()))?;
        let sensors_later = refs.iter().any(|(key, _)| key.starts_with("sensors"));
        let mut checked = spec.clone();
        if sensors_later {
            checked.sensors.clear();
        }
        checked
            .check()
            .map_err(|e| at(&needle_of(&e.to_string()), e.to_string()))?;
        for (key, r) in &refs {
            check_ref(r, None, &level_of).map_err(|e| at(&r.to_string(), format!("{key}: {e}")))?;
        }
        domains.push(spec);
    }
    Ok(Plan {
        name: parsed.name,
        file,
        levels,
        domains,
    })
}

/// The text to find the line of a check's error by: the last part of the key it names
/// (`grace_seconds` of "grace_seconds must be …", `boot_timeout` of "health.boot_timeout …").
fn needle_of(error: &str) -> String {
    let key = error.split([' ', ':']).next().unwrap_or_default();
    let last = key.rsplit('.').next().unwrap_or(key);
    match last {
        "sensor" => "sensor".into(),
        k => k.to_string(),
    }
}

/// Refuses `inf` and `nan` anywhere in a plan: JSON has no such numbers, and no setting takes
/// them. The error names the key and its line.
fn refuse_non_finite(src: &Source, table: &toml::Table) -> Result<()> {
    fn walk(path: &str, v: &toml::Value) -> Option<String> {
        match v {
            toml::Value::Float(f) if !f.is_finite() => Some(path.to_string()),
            toml::Value::Array(a) => a.iter().find_map(|x| walk(path, x)),
            toml::Value::Table(t) => t.iter().find_map(|(k, x)| walk(k, x)),
            _ => None,
        }
    }
    for (k, v) in table {
        if let Some(key) = walk(k, v) {
            let at = src
                .text
                .lines()
                .position(|l| {
                    let l = l.trim_start();
                    l.starts_with(&key) && (l.contains("inf") || l.contains("nan"))
                })
                .map_or(0, |i| src.text.lines().take(i).map(|l| l.len() + 1).sum());
            return Err(src.err(
                &(at..src.text.len()),
                "",
                format!("{key}: inf and nan are not allowed: give a finite number"),
            ));
        }
    }
    Ok(())
}

/// Checks a run or service name: it is used in paths and env vars.
pub fn check_name(name: &str) -> Result<()> {
    check_domain_name(name).map_err(|_| {
        anyhow::anyhow!("invalid name '{name}': use 1-64 letters, digits, '-', '_' or '.'")
    })
}

/// A service error, with the text to find its line by.
struct ServiceError {
    needle: String,
    what: String,
}

/// Resolves a service's paths and checks its numbers.
fn check_service(dir: &Path, s: &mut ServiceSpec) -> Result<(), ServiceError> {
    let fail = |needle: &str, what: String| ServiceError {
        needle: needle.to_string(),
        what,
    };
    let cwd = s.cwd.clone();
    let mut c = cwd.clone();
    resolve_command(dir, &mut s.start, &mut c).map_err(|e| {
        fail(
            s.start.first().map_or("start", |p| p),
            format!("start: {e}"),
        )
    })?;
    if let Some(ready) = &mut s.ready {
        let mut c = cwd.clone();
        let needle = ready.command.first().cloned().unwrap_or("ready".into());
        resolve_command(dir, &mut ready.command, &mut c)
            .map_err(|e| fail(&needle, format!("ready.command: {e}")))?;
        let range = |key: &str, r: Result<()>| r.map_err(|e| fail(key, e.to_string()));
        range(
            "timeout_seconds",
            within_f64(
                "ready.timeout_seconds",
                ready.timeout_seconds,
                (0.001, 86_400.0),
            ),
        )?;
        range(
            "retries",
            within("ready.retries", ready.retries, 1, 1_000_000),
        )?;
        range(
            "interval_ms",
            within("ready.interval_ms", ready.interval_ms, 1, 3_600_000),
        )?;
    }
    if let Some(term) = &mut s.terminate {
        let mut c = cwd.clone();
        let needle = term.first().cloned().unwrap_or("terminate".into());
        resolve_command(dir, term, &mut c).map_err(|e| fail(&needle, format!("terminate: {e}")))?;
    }
    within_f64("grace_seconds", s.grace_seconds, GRACE_RANGE)
        .map_err(|e| fail("grace_seconds", e.to_string()))?;
    for key in &s.publishes {
        if key.is_empty() || key.contains(['.', '}', '$']) {
            return Err(fail(
                "publishes",
                format!("publishes: '{key}' is not a valid attribute name"),
            ));
        }
    }
    s.cwd = c;
    Ok(())
}

/// Checks one reference: to a service of an earlier level (or of any level, for a domain,
/// given as `from = None`) that declares the attribute.
fn check_ref(
    r: &Ref,
    from: Option<usize>,
    level_of: &HashMap<String, (usize, Vec<String>)>,
) -> Result<()> {
    let Some((level, publishes)) = level_of.get(&r.service) else {
        let mut known: Vec<&str> = level_of.keys().map(String::as_str).collect();
        known.sort();
        bail!(
            "{r}: unknown service '{}' (services: {})",
            r.service,
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        );
    };
    if let Some(from) = from {
        if *level >= from {
            bail!(
                "{r}: '{}' boots at level {}, not before this service's level {}: a service \
                 can use only the attributes of earlier levels",
                r.service,
                level + 1,
                from + 1
            );
        }
    }
    if !publishes.contains(&r.attr) {
        bail!(
            "{r}: service '{}' does not publish '{}' (publishes = [{}])",
            r.service,
            r.attr,
            publishes.join(", ")
        );
    }
    Ok(())
}

/// Which services each service references.
fn service_graph(levels: &[PlanLevel]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut graph = BTreeMap::new();
    for s in levels.iter().flat_map(|l| &l.services) {
        let s = s.get_ref();
        let refs = template::refs_in(&serde_json::to_value(s)?).unwrap_or_default();
        let mut to: Vec<String> = refs.into_iter().map(|(_, r)| r.service).collect();
        to.dedup();
        graph.insert(s.name.clone(), to);
    }
    Ok(graph)
}

/// A cycle of references, as the names along it (first repeated at the end), if there is one.
fn find_cycle(graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
        done: &mut HashSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = HashSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// Makes a command's program (when it is a path) and working dir absolute, relative to the
/// plan's directory, and checks that the program exists.
fn resolve_command(dir: &Path, command: &mut [String], cwd: &mut Option<PathBuf>) -> Result<()> {
    let Some(program) = command.first_mut() else {
        bail!("must name a program");
    };
    if program.contains('/') && !program.contains("${") {
        let p = dir.join(program.trim_start_matches("./"));
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
        use std::os::unix::fs::PermissionsExt;
        let exec = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(dir.join("w.sh"), exec).unwrap();
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
        let Deployable::Process(p) = &d.deployable else {
            panic!("not a process deployable");
        };
        assert!(p.command[0].starts_with('/'));
        assert!(p.command[0].ends_with("/w.sh"));
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
        assert_eq!(plan.domains_to_add("p", &[]).unwrap().len(), 1);
        let mine = [("workers".to_string(), Some("p".to_string()))];
        assert!(plan.domains_to_add("p", &mine).unwrap().is_empty());
        let foreign = [("workers".to_string(), None)];
        let err = plan.domains_to_add("p", &foreign).unwrap_err().to_string();
        assert!(err.contains("does not belong to run 'p'"), "{err}");
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
            ("name = \"p\"\n", "no [[level]] and no [[domain]]"),
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
