//! The checks of a plan's services: their files, their references to other services, the
//! graph of those references, and the commands they run.

use super::load::Levels;
use super::spec::{PlanLevel, ServiceSpec};
use super::template::{self, Ref};
use crate::model::{within, within_f64, GRACE_RANGE};
use anyhow::{bail, Result};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// A service error, with the text to find its line by.
pub(super) struct ServiceError {
    pub(super) needle: String,
    pub(super) what: String,
}

/// Resolves a service's paths and checks its numbers.
pub(super) fn check_service(dir: &Path, s: &mut ServiceSpec) -> Result<(), ServiceError> {
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
pub(super) fn check_ref(r: &Ref, from: Option<usize>, level_of: &Levels) -> Result<()> {
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
pub(super) fn service_graph(levels: &[PlanLevel]) -> Result<BTreeMap<String, Vec<String>>> {
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
pub(super) fn find_cycle(graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
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
pub(super) fn resolve_command(
    dir: &Path,
    command: &mut [String],
    cwd: &mut Option<PathBuf>,
) -> Result<()> {
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
