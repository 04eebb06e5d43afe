//! Loading a plan file: its syntax, then its services and their references, then its
//! domains. Every error names the file and the line.

use super::services::{check_ref, check_service, find_cycle, resolve_command, service_graph};
use super::spec::{Plan, PlanDomain, PlanFile, ServiceSpec};
use super::template;
use crate::engine::bundled;
use crate::model::sensor::SensorSpec;
use crate::model::{check_domain_name, Deployable, DomainSpec};
use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use toml::Spanned;

/// Each service's level and the attributes it publishes, by name.
pub(super) type Levels = HashMap<String, (usize, Vec<String>)>;

/// Where errors point: the plan file and its text.
pub(super) struct Source<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
}

impl Source<'_> {
    /// An error at the line of `needle` in the table that starts at `span` (up to the next
    /// `[[` header), or at the table's start.
    pub(super) fn err(
        &self,
        span: &std::ops::Range<usize>,
        needle: &str,
        what: String,
    ) -> anyhow::Error {
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
    let parsed = parse(&src)?;
    let (levels, level_of) = load_levels(&src, &dir, &parsed)?;
    check_service_refs(&src, &parsed, &level_of)?;
    let mut names = HashSet::new();
    let domain_spans = parsed.domains.iter().map(|d| d.span()).collect();
    let domains = parsed
        .domains
        .into_iter()
        .map(|d| load_domain(&src, &dir, &parsed.name, d, &level_of, &mut names))
        .collect::<Result<Vec<_>>>()?;
    Ok(Plan {
        name: parsed.name,
        file: file.clone(),
        levels,
        domains,
        text,
        domain_spans,
    })
}

/// The plan file's syntax, keys and types; no infinite or NaN number; a name; something to do.
pub(super) fn parse(src: &Source) -> Result<PlanFile> {
    let (file, text) = (src.file, src.text);
    let table: toml::Table =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    refuse_non_finite(src, &table)?;
    let parsed: PlanFile =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    check_name(&parsed.name)
        .map_err(|e| src.err(&(0..text.len()), "name", format!("name: {e}")))?;
    if parsed.levels.is_empty() && parsed.domains.is_empty() {
        bail!(
            "{}: the plan declares no [[level]] and no [[domain]]",
            file.display()
        );
    }
    Ok(parsed)
}

/// The services of every level, checked (names, files), and the level and attributes of each.
pub(super) fn load_levels(
    src: &Source,
    dir: &Path,
    parsed: &PlanFile,
) -> Result<(Vec<Vec<ServiceSpec>>, Levels)> {
    let file = src.file;
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
            check_service(dir, &mut s).map_err(|e| {
                let needle = e.needle.clone();
                at(&needle, e.what)
            })?;
            level_of.insert(s.name.clone(), (i, s.publishes.clone()));
            services.push(s);
        }
        levels.push(services);
    }

    Ok((levels, level_of))
}

/// References between services: to declared attributes of earlier levels only, and no cycle.
pub(super) fn check_service_refs(src: &Source, parsed: &PlanFile, level_of: &Levels) -> Result<()> {
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
                check_ref(&r, Some(i), level_of).map_err(|e| {
                    src.err(
                        &spanned.span(),
                        &r.to_string(),
                        format!("level {} service '{}': {key}: {e}", i + 1, s.name),
                    )
                })?;
            }
        }
    }

    Ok(())
}

/// One domain of the plan, checked, with its engine and commands resolved against `dir`.
pub(super) fn load_domain(
    src: &Source,
    dir: &Path,
    plan_name: &str,
    spanned: Spanned<PlanDomain>,
    level_of: &Levels,
    names: &mut HashSet<String>,
) -> Result<DomainSpec> {
    let span = spanned.span();
    let d = spanned.into_inner();
    let at =
        |needle: &str, what: String| src.err(&span, needle, format!("domain '{}': {what}", d.name));
    check_domain_name(&d.name).map_err(|e| at("name", e.to_string()))?;
    if !names.insert(d.name.clone()) {
        return Err(at("name", "the domain is declared twice".into()));
    }
    let engine = if bundled::get(&d.engine).is_some() || crate::oci::is_oci(&d.engine) {
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
            resolve_command(dir, &mut process.command, &mut process.cwd)
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
            resolve_command(dir, command, cwd)
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
        run: Some(plan_name.to_string()),
        limits: d.limits,
        sensors,
        dry_run: d.dry_run,
        placement: Default::default(),
        budget: d.budget,
        drain_timeout_seconds: d.drain_timeout_seconds,
    };
    // Sensors are checked once their references are filled, at boot.
    let refs =
        template::refs_in(&serde_json::to_value(&spec)?).map_err(|e| at("${", e.to_string()))?;
    let sensors_later = refs.iter().any(|(key, _)| key.starts_with("sensors"));
    let mut checked = spec.clone();
    if sensors_later {
        checked.sensors.clear();
    }
    checked
        .check()
        .map_err(|e| at(&needle_of(&e.to_string()), e.to_string()))?;
    for (key, r) in &refs {
        check_ref(r, None, level_of).map_err(|e| at(&r.to_string(), format!("{key}: {e}")))?;
    }
    Ok(spec)
}

/// The text to find the line of a check's error by: the last part of the key it names
/// (`grace_seconds` of "grace_seconds must be …", `boot_timeout` of "health.boot_timeout …").
pub(super) fn needle_of(error: &str) -> String {
    let key = error.split([' ', ':']).next().unwrap_or_default();
    let last = key.rsplit('.').next().unwrap_or(key);
    match last {
        "sensor" => "sensor".into(),
        k => k.to_string(),
    }
}

/// Refuses `inf` and `nan` anywhere in a plan: JSON has no such numbers, and no setting takes
/// them. The error names the key and its line.
pub(super) fn refuse_non_finite(src: &Source, table: &toml::Table) -> Result<()> {
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
