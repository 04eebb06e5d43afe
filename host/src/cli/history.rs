//! The commands that read the store's history directly, with or without a daemon: `list`,
//! `history RUN`, `find-workers RUN`, `events RUN|DOMAIN --summary` and `graph`.

use super::print;
use super::print_json;
use crate::analysis::{self, DomainSummary, Latency};
use crate::store::{Event, Store};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// Opens the state dir's store; it must exist already.
pub(super) fn open(state_dir: &Path) -> Result<Store> {
    let path = state_dir.join("epu.db");
    if !path.exists() {
        bail!("{} holds no epu state", state_dir.display());
    }
    Store::open_read_only(&path)
}

/// The events of a run (its own and its domains') or of a domain, oldest first; and the
/// domains they cover.
fn events_of(store: &Store, target: &str) -> Result<(Vec<String>, Vec<Event>)> {
    let is_run = store.run(target)?.is_some();
    let events = paged(|after, n| {
        if is_run {
            store.run_events(target, after, n)
        } else {
            store.events_after(after, Some(target), n)
        }
    })?;
    let domains = if is_run {
        store.run_domains(target)?
    } else if events.is_empty() && store.domain(target)?.is_none() {
        return Err(super::suggest::unknown_in(store, target));
    } else {
        vec![target.to_string()]
    };
    Ok((domains, events))
}

/// Every event of the log.
fn all_events(store: &Store) -> Result<Vec<Event>> {
    paged(|after, n| store.events_after(after, None, n))
}

/// Every event that `page(after, n)` gives, page after page.
fn paged(mut page: impl FnMut(i64, u32) -> Result<Vec<Event>>) -> Result<Vec<Event>> {
    const PAGE: u32 = 10_000;
    let mut events: Vec<Event> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.seq);
        let got = page(after, PAGE)?;
        let n = got.len();
        events.extend(got);
        if n < PAGE as usize {
            return Ok(events);
        }
    }
}

/// `epu list`: every run with its state and counts.
pub fn list(state_dir: &Path, as_json: bool) -> Result<()> {
    let store = open(state_dir)?;
    let mut rows = Vec::new();
    for r in store.runs()? {
        let services = store.run_services(&r.name)?;
        let domains = store.run_domains(&r.name)?;
        let mut workers = 0;
        for d in &domains {
            workers += store.live_instances(Some(d))?.len();
        }
        rows.push(json!({
            "name": r.name, "state": r.state, "plan": r.plan, "created": r.created,
            "updated": r.updated, "services": services.len(), "domains": domains,
            "live_workers": workers, "error": r.error,
        }));
    }
    if as_json {
        print_json(&Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no runs");
        return Ok(());
    }
    let cells = rows
        .iter()
        .map(|r| {
            vec![
                r["name"].as_str().unwrap_or("-").to_string(),
                r["state"].as_str().unwrap_or("-").to_string(),
                clock(r["created"].as_f64().unwrap_or(0.0)),
                r["services"].to_string(),
                r["domains"].as_array().map_or(0, Vec::len).to_string(),
                r["live_workers"].to_string(),
            ]
        })
        .collect();
    let header = ["RUN", "STATE", "BOOTED", "SERVICES", "DOMAINS", "WORKERS"];
    println!("{}", super::print::table(&header, cells, &[3, 4, 5]));
    Ok(())
}

fn clock(t: f64) -> String {
    let t = std::time::UNIX_EPOCH + crate::model::secs(t);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `epu history RUN`: the run's timeline.
pub fn history(state_dir: &Path, run: &str, as_json: bool) -> Result<()> {
    let store = open(state_dir)?;
    if store.run(run)?.is_none() {
        bail!("unknown run '{run}'");
    }
    let (_, events) = events_of(&store, run)?;
    for e in &events {
        let v = serde_json::to_value(e)?;
        if as_json {
            println!("{v}");
        } else {
            print::event(&v);
        }
    }
    Ok(())
}

/// `epu find-workers RUN`: every worker of the run's domains.
pub fn find_workers(state_dir: &Path, run: &str, as_json: bool) -> Result<()> {
    let store = open(state_dir)?;
    if store.run(run)?.is_none() {
        bail!("unknown run '{run}'");
    }
    let mut workers = Vec::new();
    for d in store.run_domains(run)? {
        for i in store.live_instances(Some(&d))? {
            workers.push(json!({
                "domain": d, "id": i.id, "state": i.state, "health": i.health, "pid": i.pid,
                "cloud_id": i.cloud_id,
                "last_heartbeat": i.last_heartbeat,
                "log": crate::provisioner::process::logs::path(&state_dir.join("logs"), &i.id),
            }));
        }
    }
    if as_json {
        print_json(&Value::Array(workers));
        return Ok(());
    }
    if workers.is_empty() {
        println!("run '{run}' has no live worker");
        return Ok(());
    }
    println!(
        "{:<14} {:<16} {:<12} {:<14} {:<8} LOG",
        "DOMAIN", "WORKER", "STATE", "HEALTH", "PID"
    );
    for w in &workers {
        println!(
            "{:<14} {:<16} {:<12} {:<14} {:<20} {}",
            w["domain"].as_str().unwrap_or("-"),
            w["id"].as_str().unwrap_or("-"),
            w["state"].as_str().unwrap_or("-"),
            w["health"].as_str().unwrap_or("-"),
            w["pid"]
                .as_i64()
                .map(|p| p.to_string())
                .or_else(|| w["cloud_id"].as_str().map(str::to_string))
                .unwrap_or_else(|| "-".into()),
            w["log"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}

/// `epu events RUN|DOMAIN --summary`.
/// `epu events [TARGET] --summary`: per domain of the run or domain, or of every domain.
pub fn summary(state_dir: &Path, target: Option<&str>, as_json: bool) -> Result<()> {
    let store = open(state_dir)?;
    let mut summaries = match target {
        Some(target) => {
            let (domains, events) = events_of(&store, target)?;
            let mut summaries = analysis::summarize(&events);
            summaries.retain(|s| domains.contains(&s.domain));
            summaries
        }
        None => analysis::summarize(&all_events(&store)?),
    };
    summaries.sort_by(|a, b| a.domain.cmp(&b.domain));
    if as_json {
        print_json(&json!({"target": target, "domains": summaries}));
        return Ok(());
    }
    if summaries.is_empty() {
        println!("{}: no domain events yet", target.unwrap_or("epu"));
    }
    for s in &summaries {
        print_summary(s);
    }
    Ok(())
}

fn print_summary(s: &DomainSummary) {
    println!("domain {}", s.domain);
    if let (Some(a), Some(b)) = (s.first_event, s.last_event) {
        println!(
            "  events from {} to {} ({:.0} s)",
            clock(a),
            clock(b),
            b - a
        );
    }
    println!(
        "  launches {}  reached running {}  failures {}  replacements {}",
        s.launches, s.reached_running, s.failures, s.replacements
    );
    latency_lines("launch → running", &s.launch_to_running);
    latency_lines("failure → replacement", &s.failure_to_replacement);
    let faults: Vec<String> = s
        .engine_faults
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "  engine faults: {}  reconfigurations {}  engine swaps {}",
        if faults.is_empty() {
            "none".into()
        } else {
            faults.join(", ")
        },
        s.reconfigurations,
        s.engine_swaps
    );
}

fn latency_lines(name: &str, l: &Latency) {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
    println!(
        "  {name}: {} samples, p50 {}, p90 {}, max {}",
        l.count,
        ms(l.p50_ms),
        ms(l.p90_ms),
        ms(l.max_ms)
    );
    if l.count == 0 {
        return;
    }
    let widest = l.histogram.iter().map(|b| b.1).max().unwrap_or(1).max(1);
    for (bound, n) in &l.histogram {
        let label = match bound {
            Some(b) => format!("≤ {b:>6.0} ms"),
            None => format!(
                ">  {:>6.0} ms",
                analysis::BUCKETS_MS[analysis::BUCKETS_MS.len() - 1]
            ),
        };
        let bar = "#".repeat((n * 40).div_ceil(widest));
        println!("    {label} {n:>5} {bar}");
    }
}

/// `epu graph RUN|DOMAIN --kind K -o FILE`.
pub fn graph(state_dir: &Path, target: &str, kind: crate::graph::Kind, out: &Path) -> Result<()> {
    let store = open(state_dir)?;
    let (domains, events) = events_of(&store, target)?;
    let mut readings = Vec::new();
    for d in &domains {
        for (name, t, v) in store.readings_of(d)? {
            let name = if domains.len() > 1 {
                format!("{d}/{name}")
            } else {
                name
            };
            readings.push((name, t, v));
        }
    }
    readings.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut live = false;
    for d in &domains {
        live |= store.domain(d)?.is_some();
    }
    let mut shadows = Vec::new();
    for d in &domains {
        for s in store.all_shadows(d)? {
            let name = format!("shadow {} ({})", s.id, s.engine_name);
            shadows.push((name, store.shadow_points(s.id)?));
        }
    }
    let data = crate::graph::GraphData {
        title: target.to_string(),
        events,
        readings,
        until: live.then(crate::model::now),
        shadows,
    };
    let series = crate::graph::draw(kind, &data, out)
        .with_context(|| format!("drawing {}", out.display()))?;
    println!("wrote {} ({})", out.display(), series.join(", "));
    Ok(())
}
